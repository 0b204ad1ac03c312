"""Draw the documentation's performance figures (SVG) from saved benchmark results.

    .venv/bin/python bench/plots.py                 # bench/saved/docs-figures.json -> docs/figures/
    .venv/bin/python bench/plots.py --throughput-from bench/results/<timestamp>.json --out /tmp/f

The figures' data is committed in ``bench/saved/docs-figures.json``, transcribed from the runs
the Performance page cites (each figure names its command, revision and machine), because the
raw results in ``bench/results/`` are git-ignored and a clean clone must still build the site.
``--throughput-from`` draws the throughput figure from a results file of ``bench/run.py``
instead (the medians of its CPU per request), and ``--print-data`` prints the data drawn, for
a new run to be saved in place of the old one.

- ``throughput.svg``: for each endpoint, the server CPU per request of Django's ASGI handler and
  of Django's WSGI handler on gunicorn, as multiples of asgi_bridge's (above 1: asgi_bridge is
  cheaper), on uvicorn and on granian.
- ``websockets.svg``: server CPU per WebSocket echo round trip (asgi_bridge's view against a
  Channels consumer) and per broadcast delivery (asgi_bridge on Redis against Channels' two
  Redis layers).

The SVGs carry no date and fixed ids, so drawing them again from the same data gives the same
files. ``scripts/docs`` runs this before building the site.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SAVED = HERE / "saved" / "docs-figures.json"
OUT = HERE.parent / "docs" / "figures"
# The endpoints of bench/throughput.py drawn, and their names in the figure, in order.
THROUGHPUT_ENDPOINTS = {
    "async_hello": "async hello",
    "sync_hello": "sync hello",
    "json": "json, about 1 KB",
    "orm": "ORM query, CONN_MAX_AGE = 0",
    "orm_persistent": "ORM query, CONN_MAX_AGE = 60",
    "stream_sync": "sync stream, 16 x 4 KiB",
}
BASELINES = {"stock": "Django's ASGI handler", "wsgi": "Django's WSGIHandler on gunicorn"}
COLOURS = {"stock": "#b0b0b0", "wsgi": "#4c72b0", "ours": "#dd8452", "others": "#8c8c8c"}


def throughput_from_run(path: Path) -> dict[str, Any]:
    """The throughput figure's data from a bench/run.py results file: median CPU per request."""
    run = json.loads(path.read_text())
    servers: dict[str, dict[str, dict[str, float]]] = {}
    for server, result in run["servers"].items():
        rows: dict[str, dict[str, float]] = {}
        for key, name in THROUGHPUT_ENDPOINTS.items():
            cells = {
                handler: result["handlers"].get(handler, {}).get("throughput", {}).get(key)
                for handler in ("stock", "bridge", "wsgi")
            }
            values = {
                handler: cell["cpu_us_per_request"]
                for handler, cell in cells.items()
                if cell and cell.get("cpu_us_per_request")
            }
            if "bridge" in values:
                rows[name] = values
        if rows:
            servers[server] = rows
    if not servers:
        sys.exit(f"{path} holds no throughput results of asgi_bridge")
    return {
        "title": "Server CPU per request, relative to asgi_bridge",
        "source": {
            "command": run.get("command", ""),
            "revision": run.get("machine", {}).get("git_revision", ""),
            "date": run.get("started_at", ""),
            "statistic": "median over the rounds of the server's CPU time per request, in "
            "microseconds",
        },
        "unit": "us CPU per request",
        "servers": servers,
    }


def caption(source: dict[str, str]) -> str:
    parts = [source.get("command", ""), source.get("revision", ""), source.get("date", "")]
    return "; ".join(part for part in parts if part)


def draw_throughput(data: dict[str, Any], out: Path, plt: Any) -> Path:
    servers = data["servers"]
    figure, axes = plt.subplots(
        1, len(servers), figsize=(5.2 * len(servers), 4.2), sharey=True, squeeze=False
    )
    for axis, (server, rows) in zip(axes[0], servers.items(), strict=True):
        names = list(rows)
        positions = range(len(names))
        height = 0.38
        for offset, baseline in ((-height / 2, "stock"), (height / 2, "wsgi")):
            ratios = [
                rows[name][baseline] / rows[name]["bridge"] if baseline in rows[name] else 0.0
                for name in names
            ]
            bars = axis.barh(
                [position + offset for position in positions],
                ratios,
                height=height,
                color=COLOURS[baseline],
                label=BASELINES[baseline],
            )
            axis.bar_label(bars, labels=[f"{ratio:.2f}x" for ratio in ratios], padding=2, size=8)
        axis.axvline(1.0, color="black", linewidth=0.8)
        axis.set_yticks(list(positions), names)
        axis.set_title(server)
        axis.set_xlabel("CPU per request, as a multiple of asgi_bridge's")
        axis.set_xlim(0, max(8.5, axis.get_xlim()[1]))
    # The axes share theirs: inverted once, the first endpoint on top.
    axes[0][0].invert_yaxis()
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(
        handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.04), ncols=2, frameon=False
    )
    figure.suptitle(data["title"] + " (above 1.00x: asgi_bridge costs less)")
    figure.text(0.01, 0.01, caption(data["source"]), size=7, color="#555555")
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    return save(figure, out / "throughput.svg", plt)


def draw_websockets(data: dict[str, Any], out: Path, plt: Any) -> Path:
    panels = [data["echo"], data["broadcast"]]
    figure, axes = plt.subplots(1, 2, figsize=(10.4, 3.6))
    for axis, panel in zip(axes, panels, strict=True):
        names = list(panel["values"])
        values = [panel["values"][name] for name in names]
        # asgi_bridge first, in its own colour.
        colours = [COLOURS["ours"]] + [COLOURS["others"]] * (len(names) - 1)
        bars = axis.barh(range(len(names)), values, color=colours)
        axis.bar_label(bars, labels=[f"{value:g}" for value in values], padding=2, size=8)
        axis.set_yticks(range(len(names)), names)
        axis.invert_yaxis()
        axis.set_xlabel(panel["unit"].replace("us ", "µs "))
        axis.set_xlim(0, max(values) * 1.18)
        axis.set_title(f"{panel['source']['statistic']}\n({panel['source']['revision']})", size=9)
    figure.suptitle(data["title"] + " (lower is better)")
    figure.tight_layout()
    return save(figure, out / "websockets.svg", plt)


def save(figure: Any, path: Path, plt: Any) -> Path:
    # No date in the file: the same data draws the same bytes.
    figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SAVED, help="the saved figures' data")
    parser.add_argument("--out", type=Path, default=OUT, help="directory for the SVG files")
    parser.add_argument(
        "--throughput-from", type=Path, help="a bench/run.py results file to draw instead"
    )
    parser.add_argument("--print-data", action="store_true", help="print the data drawn")
    args = parser.parse_args()

    data = json.loads(args.data.read_text())
    if args.throughput_from:
        data["throughput"] = throughput_from_run(args.throughput_from)
    if args.print_data:
        print(json.dumps(data, indent=2, ensure_ascii=False))

    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            # Fixed ids, and text kept as text (smaller files, searchable in the page).
            "svg.hashsalt": "asgi_bridge",
            "svg.fonttype": "none",
            "font.size": 9,
        }
    )
    args.out.mkdir(parents=True, exist_ok=True)
    for path in (
        draw_throughput(data["throughput"], args.out, plt),
        draw_websockets(data["websockets"], args.out, plt),
    ):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
