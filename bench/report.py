"""Rendering the side-by-side table and the issue #3 targets (per server) from the raw results.

Works on the same plain dicts that go into the JSON file, so a saved result can be re-rendered
with ``render_server_table`` and ``render_targets``.
"""

import math
import statistics
from dataclasses import dataclass
from typing import Any, NamedTuple

from memory import SCENARIOS
from throughput import ENDPOINTS

COLUMN_TITLES = {"stock": "stock", "bridge": "asgi_bridge", "wsgi": "wsgi (gunicorn)"}
FLAG = "!"
NOTE = "*"
REQUESTS = "requests_per_second"
CPU = "cpu_us_per_request"


class Columns(NamedTuple):
    """The result slots shown: the baseline, the handler compared with it, the WSGI baseline."""

    base: str
    ours: str
    wsgi: str | None


@dataclass(frozen=True)
class Target:
    endpoint: str
    baseline: str  # the handler asgi_bridge is compared with: "stock" or "wsgi"
    factor: float
    wording: str


# Issue #3. Each holds on uvicorn and, as the same ordering, on granian.
ISSUE_TARGETS = (
    Target("async_hello", "stock", 4.0, "async hello: asgi_bridge >= 4x stock ASGI"),
    Target("sync_hello", "wsgi", 1.0, "sync hello: asgi_bridge >= WSGI on gunicorn, 1 sync worker"),
    Target("orm", "stock", 3.0, "ORM query: asgi_bridge >= 3x stock ASGI"),
)


def column_title(handler: str) -> str:
    return COLUMN_TITLES.get(handler, handler)


def ratio_of(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    if math.isnan(numerator) or math.isnan(denominator):
        return None
    return numerator / denominator


def format_ratio(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def unmeasured_cell(outcome: dict[str, Any] | None, notes: list[str], who: str) -> tuple[str, None]:
    """The cell of a scenario this run skipped ("-") or that failed (noted)."""
    if outcome is None:
        return "-", None
    notes.append(f"{FLAG} {who}: {outcome['error']}")
    return f"failed {FLAG}", None


def throughput_cells(
    outcome: dict[str, Any] | None, notes: list[str], who: str
) -> tuple[tuple[str, float | None], tuple[str, float | None]]:
    """The requests/s cell and the CPU µs/request cell of one column, with their values."""
    if outcome is None or "error" in outcome:
        cell = unmeasured_cell(outcome, notes, who)
        return cell, (cell[0].replace(f" {FLAG}", ""), None)
    problems = []
    if outcome.get("errors"):
        problems.append(
            f"{outcome['non_2xx']} non-2xx/3xx, {outcome['socket_errors']} socket errors"
        )
    if outcome.get("check"):
        problems.append(f"pre-check: {outcome['check']}")
    if problems:
        notes.append(f"{FLAG} {who}: " + "; ".join(problems))
    flag = f" {FLAG}" if problems else ""
    rate = float(outcome[REQUESTS])
    cpu = outcome.get(CPU)
    cpu_cell = "n/a" if cpu is None else f"{cpu:,.0f}{spread(outcome, CPU)}{flag}"
    return (f"{rate:,.0f}{spread(outcome, REQUESTS)}{flag}", rate), (cpu_cell, cpu)


def spread_fraction(outcome: dict[str, Any] | None, metric: str) -> float | None:
    """Half the min-max range over rounds, relative to the median; None for a single round."""
    if outcome is None or "error" in outcome or not outcome.get(metric):
        return None
    values = [r[metric] for r in outcome.get("rounds", []) if "error" not in r and r.get(metric)]
    if len(values) < 2:
        return None
    return float((max(values) - min(values)) / 2 / outcome[metric])


def spread(outcome: dict[str, Any], metric: str) -> str:
    fraction = spread_fraction(outcome, metric)
    return "" if fraction is None else f" ±{100 * fraction:.0f}%"


def throughput_verdict(ratio: float | None, spreads: list[float | None]) -> str:
    """met / MISSED, or "within noise" when the rounds' ranges of both handlers overlap."""
    if ratio is None:
        return ""
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
        notes.append(f"{FLAG} {who}: " + "; ".join(outcome["errors"][:3]))
    if not outcome["peak_was_reset"]:
        notes.append(f"{FLAG} {who}: VmHWM could not be reset, growth includes the warm-up peak")
    return f"{value:,.1f} MiB{' ' + FLAG if outcome['errors'] else ''}", value


def verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "MISSED")


def throughput_of(server: dict[str, Any], key: str | None, endpoint: str) -> Any:
    if key is None:
        return None
    return server["handlers"].get(key, {}).get("throughput", {}).get(endpoint)


def render_server_table(server: dict[str, Any], columns: Columns) -> str:
    """One table: two rows per endpoint (req/s, CPU µs/request), a row per memory scenario.

    The columns are the baseline, the compared handler and (unless --no-wsgi) the WSGI baseline,
    then the compared handler's ratios against the other two, oriented so that above 1.00x it
    is better: requests/s ours/theirs, CPU µs/request theirs/ours.
    """
    keys = [key for key in columns if key is not None]
    titles = {key: column_title(key) for key in keys}
    ours = titles[columns.ours]
    header = (
        "scenario",
        "measure",
        *titles.values(),
        f"{ours} vs {titles[columns.base]}",
        *([f"{ours} vs wsgi"] if columns.wsgi else []),
        "target (info)",
        "",
    )
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    runs = server["handlers"]

    for endpoint in ENDPOINTS:
        outcomes = {key: throughput_of(server, key, endpoint.key) for key in keys}
        if all(outcomes[key] is None for key in (columns.base, columns.ours)):
            continue  # not measured in this run (--only)
        rates: dict[str, tuple[str, float | None]] = {}
        cpus: dict[str, tuple[str, float | None]] = {}
        for key in keys:
            who = f"{endpoint.label}, {titles[key]}"
            rates[key], cpus[key] = throughput_cells(outcomes[key], notes, who)
        if columns.wsgi:
            if not endpoint.under_wsgi:
                rates[columns.wsgi] = cpus[columns.wsgi] = ("n/a", None)
            if endpoint.wsgi_note:
                notes.append(
                    f"{NOTE} {titles[columns.wsgi]}, {endpoint.label}: {endpoint.wsgi_note}"
                )
                rates[columns.wsgi] = (f"{rates[columns.wsgi][0]} {NOTE}", rates[columns.wsgi][1])
                cpus[columns.wsgi] = (f"{cpus[columns.wsgi][0]} {NOTE}", cpus[columns.wsgi][1])

        base_outcomes = [outcomes[columns.base], outcomes[columns.ours]]
        for measure, cells, better_is_higher, metric in (
            ("req/s", rates, True, REQUESTS),
            ("µs CPU/req", cpus, False, CPU),
        ):
            ratios = [
                oriented_ratio(cells[columns.ours][1], cells[other][1], better_is_higher)
                for other in (columns.base, columns.wsgi)
                if other is not None
            ]
            spreads = [spread_fraction(outcome, metric) for outcome in base_outcomes]
            rows.append(
                (
                    endpoint.label if measure == "req/s" else "",
                    measure,
                    *(cells[key][0] for key in keys),
                    *(format_ratio(ratio) for ratio in ratios),
                    f"vs {titles[columns.base]} >= 1.00x",
                    throughput_verdict(ratios[0], spreads),
                )
            )

    for scenario in SCENARIOS:
        who = f"{scenario.label} (peak RSS growth)"
        cells = {
            key: memory_cell(
                runs.get(key, {}).get("memory", {}).get(scenario.key),
                notes,
                f"{who}, {titles[key]}",
            )
            for key in keys
        }
        if all(cells[key][0] == "-" for key in (columns.base, columns.ours)):
            continue
        # Lower is better for memory, so this ratio is ours/theirs: below 1.00x uses less.
        ratio = format_ratio(ratio_of(cells[columns.ours][1], cells[columns.base][1]))
        grown = cells[columns.ours][1]
        met = None if grown is None else grown <= scenario.target_mib
        rows.append(
            (
                scenario.label,
                "peak RSS growth",
                *(cells[key][0] for key in keys),
                ratio,
                *(["-"] if columns.wsgi else []),
                f"{ours} <= {scenario.target_mib:g} MiB",
                verdict(met),
            )
        )

    numbers = set(range(2, len(header) - 2))
    return format_table(header, rows, numbers) + "".join(f"\n  {note}" for note in notes)


def oriented_ratio(
    ours: float | None, theirs: float | None, higher_is_better: bool
) -> float | None:
    """ours/theirs for requests/s, theirs/ours for CPU per request: above 1.00x, ours is better."""
    return ratio_of(ours, theirs) if higher_is_better else ratio_of(theirs, ours)


def key_of(server: dict[str, Any], handler: str) -> str | None:
    """The result slot of a handler in this run (in an A/A run, its first one)."""
    runs: dict[str, dict[str, Any]] = server["handlers"]
    return next((key for key, run in runs.items() if run.get("handler") == handler), None)


def target_ratios(
    server: dict[str, Any], endpoint: str, ours: str, theirs: str | None
) -> tuple[float | None, float | None]:
    """(requests/s ratio, CPU ratio), both oriented so that above 1.00x ``ours`` is better."""
    mine, other = throughput_of(server, ours, endpoint), throughput_of(server, theirs, endpoint)
    if mine is None or other is None or "error" in mine or "error" in other:
        return None, None
    return (
        oriented_ratio(mine[REQUESTS], other[REQUESTS], higher_is_better=True),
        oriented_ratio(mine.get(CPU), other.get(CPU), higher_is_better=False),
    )


def paired_ratios(
    server: dict[str, Any], endpoint: str, ours: str, theirs: str | None, metric: str
) -> list[float]:
    """The ratio in each round, ours against theirs measured in that same round, oriented so
    that above 1.00x ``ours`` is better; empty unless both have every round."""
    mine, other = throughput_of(server, ours, endpoint), throughput_of(server, theirs, endpoint)
    if mine is None or other is None:
        return []
    my_rounds, their_rounds = mine.get("rounds", []), other.get("rounds", [])
    if len(my_rounds) < 2 or len(my_rounds) != len(their_rounds):
        return []
    ratios = []
    for my_round, their_round in zip(my_rounds, their_rounds, strict=True):
        if "error" in my_round or "error" in their_round:
            return []
        ratio = oriented_ratio(
            my_round.get(metric), their_round.get(metric), higher_is_better=metric == REQUESTS
        )
        if ratio is None:
            return []
        ratios.append(ratio)
    return ratios


def render_paired(server: dict[str, Any], bridge: str, stock: str, wsgi: str | None) -> list[str]:
    """Per-round ratios of each target: each round measures both sides back to back, so a
    machine that is slower in one round than in another moves both alike."""
    lines = []
    for target in ISSUE_TARGETS:
        theirs = stock if target.baseline == "stock" else wsgi
        by_metric = {
            metric: paired_ratios(server, target.endpoint, bridge, theirs, metric)
            for metric in (REQUESTS, CPU)
        }
        if not all(by_metric.values()):
            continue
        cells = [
            f"{label} median {format_ratio(statistics.median(ratios))} "
            f"({', '.join(format_ratio(ratio) for ratio in ratios)})"
            for label, ratios in (("req/s", by_metric[REQUESTS]), ("CPU", by_metric[CPU]))
        ]
        met = sum(ratio >= target.factor for ratio in by_metric[CPU])
        cells.append(f"met by CPU in {met} of {len(by_metric[CPU])} rounds")
        lines.append(f"  {target.endpoint}: {'; '.join(cells)}")
    if lines:
        lines.insert(0, "  paired by round (the ratio within each round, then their median):")
    return lines


def render_targets(name: str, server: dict[str, Any]) -> str:
    """The issue #3 targets on this server: the ratio by requests/s and by CPU, met or not."""
    title = f"targets (issue #3) on {name}"
    bridge, stock, wsgi = (key_of(server, handler) for handler in ("bridge", "stock", "wsgi"))
    if bridge is None or stock is None:
        return f"{title}: not judged, this run compares no asgi_bridge with stock (--handlers)."
    header = ("target", "needs", "by req/s", "", "by CPU µs/req", "")
    rows: list[tuple[str, ...]] = []
    for target in ISSUE_TARGETS:
        theirs = stock if target.baseline == "stock" else wsgi
        ratios = target_ratios(server, target.endpoint, bridge, theirs)
        cells: list[str] = []
        for ratio in ratios:
            met = None if ratio is None else ratio >= target.factor
            cells += [format_ratio(ratio), "" if met is None else ("met" if met else "not met")]
        rows.append((target.wording, f">= {target.factor:.2f}x", *cells))
    lines = [
        f"{title} (ratios above 1.00x favour asgi_bridge; by CPU = baseline µs / asgi_bridge µs):",
        format_table(header, rows, {1, 2, 4}),
    ]
    lines += render_paired(server, bridge, stock, wsgi)
    if wsgi is None:
        lines.append("  the sync hello target needs the wsgi column: run without --no-wsgi.")
    else:
        by_rate, by_cpu = target_ratios(server, "sync_hello", wsgi, stock)
        lines.append(
            f"  for scale: WSGI on gunicorn vs stock ASGI, sync hello: {format_ratio(by_rate)} "
            f"by req/s, {format_ratio(by_cpu)} by CPU (issue #3 expects about 5x)"
        )
    return "\n".join(lines)


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]], numbers: set[int]) -> str:
    """Columns padded to width; those in ``numbers`` right-aligned, the others left-aligned."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        padded = [
            cell.rjust(width) if index in numbers else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths).rstrip()
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
