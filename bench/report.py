"""Rendering the side-by-side table (one per server) from the raw results run.py collects.

Works on the same plain dicts that go into the JSON file, so a table can be re-rendered from a
saved result with ``render_server_table``.
"""

import math
from typing import Any

from memory import SCENARIOS
from throughput import ENDPOINTS

COLUMN_TITLES = {"stock": "stock", "bridge": "asgi_bridge"}
FLAG = "!"


def column_title(handler: str) -> str:
    return COLUMN_TITLES.get(handler, handler)


def format_ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs <= 0 or math.isnan(ours) or math.isnan(theirs):
        return "n/a"
    return f"{ours / theirs:.2f}x"


def unmeasured_cell(outcome: dict[str, Any] | None, notes: list[str], who: str) -> tuple[str, None]:
    """The cell of a scenario this run skipped ("-") or that failed (noted)."""
    if outcome is None:
        return "-", None
    notes.append(f"{who}: {outcome['error']}")
    return f"failed {FLAG}", None


def throughput_cell(
    outcome: dict[str, Any] | None, notes: list[str], who: str
) -> tuple[str, float | None]:
    if outcome is None or "error" in outcome:
        return unmeasured_cell(outcome, notes, who)
    value = float(outcome["requests_per_second"])
    problems = []
    if outcome.get("errors"):
        problems.append(
            f"{outcome['non_2xx']} non-2xx/3xx, {outcome['socket_errors']} socket errors"
        )
    if outcome.get("check"):
        problems.append(f"pre-check: {outcome['check']}")
    if problems:
        notes.append(f"{who}: " + "; ".join(problems))
    return f"{value:,.0f}{spread(outcome)}{' ' + FLAG if problems else ''}", value


def spread_fraction(outcome: dict[str, Any] | None) -> float | None:
    """Half the min-max range over rounds, relative to the median; None for a single round."""
    if outcome is None or "error" in outcome or not outcome.get("requests_per_second"):
        return None
    rates = [r["requests_per_second"] for r in outcome.get("rounds", []) if "error" not in r]
    if len(rates) < 2:
        return None
    return float((max(rates) - min(rates)) / 2 / outcome["requests_per_second"])


def spread(outcome: dict[str, Any]) -> str:
    fraction = spread_fraction(outcome)
    return "" if fraction is None else f" ±{100 * fraction:.0f}%"


def throughput_verdict(ratio: float, spreads: list[float | None]) -> str:
    """met / MISSED, or "within noise" when the rounds' ranges of both handlers overlap."""
    if all(s is not None for s in spreads):
        combined = sum(s for s in spreads if s is not None)
        if abs(1.0 - ratio) <= combined:
            return "within noise"
    return verdict(ratio >= 1.0)


def memory_cell(
    outcome: dict[str, Any] | None, notes: list[str], who: str
) -> tuple[str, float | None]:
    if outcome is None or "error" in outcome:
        return unmeasured_cell(outcome, notes, who)
    value = float(outcome["growth_mib"])
    if outcome["errors"]:
        notes.append(f"{who}: " + "; ".join(outcome["errors"][:3]))
    if not outcome["peak_was_reset"]:
        notes.append(f"{who}: VmHWM could not be reset, growth includes the warm-up peak")
    return f"{value:,.1f} MiB{' ' + FLAG if outcome['errors'] else ''}", value


def verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "MISSED")


def render_server_table(server: dict[str, Any], handlers: tuple[str, str]) -> str:
    """One table: a row per scenario, the two handlers side by side and their ratio."""
    base, ours = handlers
    titles = (column_title(base), column_title(ours))
    header = ("scenario", *titles, f"ratio {titles[1]}/{titles[0]}", "target (info)", "")
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    runs = server["handlers"]

    for endpoint in ENDPOINTS:
        label = f"{endpoint.label} (req/s)"
        cells = [
            throughput_cell(
                runs.get(handler, {}).get("throughput", {}).get(endpoint.key),
                notes,
                f"{label}, {column_title(handler)}",
            )
            for handler in handlers
        ]
        if all(cell[0] == "-" for cell in cells):
            continue  # not measured in this run (--only)
        ratio = format_ratio(cells[1][1], cells[0][1])
        outcomes = [runs.get(h, {}).get("throughput", {}).get(endpoint.key) for h in handlers]
        judged = (
            ""
            if ratio == "n/a"
            else throughput_verdict(float(ratio[:-1]), [spread_fraction(o) for o in outcomes])
        )
        rows.append((label, cells[0][0], cells[1][0], ratio, "ratio >= 1.00x", judged))

    for scenario in SCENARIOS:
        label = f"{scenario.label} (peak RSS growth)"
        cells = [
            memory_cell(
                runs.get(handler, {}).get("memory", {}).get(scenario.key),
                notes,
                f"{label}, {column_title(handler)}",
            )
            for handler in handlers
        ]
        if all(cell[0] == "-" for cell in cells):
            continue
        ratio = format_ratio(cells[1][1], cells[0][1])
        met = None if cells[1][1] is None else cells[1][1] <= scenario.target_mib
        target = f"{titles[1]} <= {scenario.target_mib:g} MiB"
        rows.append((label, cells[0][0], cells[1][0], ratio, target, verdict(met)))

    return format_table(header, rows) + "".join(f"\n  {FLAG} {note}" for note in notes)


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        numbers = [cell.rjust(width) for cell, width in zip(cells[1:4], widths[1:4], strict=True)]
        rest = [cell.ljust(width) for cell, width in zip(cells[4:], widths[4:], strict=True)]
        return "  ".join([first, *numbers, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
