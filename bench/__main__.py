"""`relayd-bench`: run the benchmarks and regenerate docs/performance.md from what they measure.

    relayd-bench all              every benchmark at full size (about 25 minutes on 2 cores)
    relayd-bench ci               the small subset (a few minutes)
    relayd-bench NAME [NAME ...]  some benchmarks; the other rows of the table are kept
    relayd-bench --list           the names

Each benchmark returns figures (name, value, unit, goal, passed). The table in
docs/performance.md is written from them and from the machine they ran on; the figures
are also kept, machine-readable, in a comment at the end of that file, so that running one
benchmark updates its own rows and keeps the others. Exit status 1 if any goal failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, Figure, figure, format_value, machine, print_figures
from bench.notes import NOTES
from bench.plots import Plot, draw, existing

DOC = REPO / "docs" / "performance.md"
DATA_BEGIN = "<!-- relayd-bench results (generated; do not edit)"
DATA_END = "-->"


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    how: str  # what is measured and against what baseline (one line for the doc)
    full: Callable[[], list[Figure]]
    ci: Callable[[], list[Figure]] | None = None


def _protocol(n: int) -> Callable[[], list[Figure]]:
    def go() -> list[Figure]:
        from bench import bench_protocol  # noqa: PLC0415 - each benchmark imports only what it runs

        return bench_protocol.run(n, 2)

    return go


def _sim(frames: int) -> Callable[[], list[Figure]]:
    def go() -> list[Figure]:
        from bench import bench_sim  # noqa: PLC0415
        from relayd.sim.medium import FloodingMode  # noqa: PLC0415

        out: list[Figure] = []
        for mode in (FloodingMode.MANAGED, FloodingMode.NAIVE, FloodingMode.NONE):
            r = bench_sim.run(mode, frames=frames, width=20, height=10, seed=1)
            tag = f"sim.{r.mode}"
            out += [
                figure(f"{tag}_wall_s", r.wall_s, "s"),
                figure(f"{tag}_frames_tx_per_wall_s", r.transmitted / r.wall_s, "frames/s"),
                figure(f"{tag}_tx_per_injected", r.transmitted / max(r.injected, 1), "frames"),
                figure(f"{tag}_reach_per_injected", r.delivered / max(r.injected, 1), "radios"),
                figure(f"{tag}_peak_mem_mb", r.peak_mem_bytes / 1e6, "MB"),
            ]
        return out

    return go


def _tui(history: int, seconds: float) -> Callable[[], list[Figure]]:
    def go() -> list[Figure]:
        import asyncio  # noqa: PLC0415
        import tempfile  # noqa: PLC0415

        from bench import bench_tui  # noqa: PLC0415

        rate = 50.0
        with tempfile.TemporaryDirectory() as tmp:
            bundle_path, old, new = bench_tui.payloads(Path(tmp) / "keys", history, int(rate * seconds))
            model_mb = bench_tui.model_memory(old, bundle_path)
            ours = asyncio.run(bench_tui.run_case("virtual", bundle_path, old, new, rate, mode="virtual"))
            base = asyncio.run(
                bench_tui.run_case("rebuild", bundle_path, old, new[:50], rate, mode="rebuild")
            )
        goal = bench_tui.GOAL_P99_MS
        return [
            figure("tui.feed_p50_ms", ours.p50_ms, "ms"),
            figure("tui.feed_p99_ms", ours.p99_ms, "ms", f"<= {goal:.0f} ms", ours.p99_ms <= goal),
            figure("tui.feed_missed", ours.missed, "alerts", "== 0", ours.missed == 0),
            figure("tui.history_load_s", ours.load_s, "s"),
            figure("tui.baseline_rebuild_per_msg_p99_ms", base.p99_ms, "ms"),
            figure("tui.model_memory_mb", model_mb, "MB"),
        ]

    return go


def _lazy(module: str, **kwargs: Any) -> Callable[[], list[Figure]]:
    def go() -> list[Figure]:
        import importlib  # noqa: PLC0415

        fn: Callable[..., list[Figure]] = importlib.import_module(f"bench.{module}").run
        return fn(**kwargs)

    return go


BENCHMARKS: list[Benchmark] = [
    Benchmark(
        "protocol",
        "Verification throughput and airtime",
        "Verifier pipeline vs decode-only and raw PyNaCl; on-air time vs unsigned text and the signed floor",
        _protocol(20_000),
        _protocol(2_000),
    ),
    Benchmark(
        "latency",
        "Relay latency",
        "1,000 alerts each way, in-process relay, real Mosquitto, sim radio at x1000; "
        "baseline: naive forwarder",
        _lazy("bench_latency"),
        _lazy("bench_latency", alerts=100, side_alerts=50),
    ),
    Benchmark(
        "flood",
        "Legitimate alerts under a forged-frame flood",
        "forged frames on the outbox from a publisher process + 1 junk RF frame/s; baseline: no flood",
        _lazy("bench_flood"),
        _lazy("bench_flood", seconds=8.0, distinct=40_000),
    ),
    Benchmark(
        "soak",
        "Memory and resources over time",
        "relay subprocess, /proc VmRSS, fds, SQLite size; 1 h and 24 h of traffic at time scale",
        _lazy("bench_soak"),
        _lazy("bench_soak", hours=2.0),
    ),
    Benchmark(
        "suppression",
        "Transmissions per alert",
        "3, 5, 10 relays that all hear each other (ROUTER_LATE radios); baseline: naive forwarding",
        _lazy("bench_suppression"),
        _lazy("bench_suppression", sizes=(3,), alerts=10),
    ),
    Benchmark(
        "backends",
        "Suppression and delivery: the model beside real firmware",
        "3, 5, 10 relays, all hearing each other, 4 alerts, on relayd's firmware model and on "
        "meshtasticd 2.8.0 in one run; the model is the baseline",
        _lazy("bench_backends"),
    ),
    Benchmark(
        "gateway",
        "A peer bridge on the same radio: meshtastic-gateway beside relayd",
        "one meshtasticd radio with its MQTT client proxy on, three handhelds, one broker; "
        "`relayd run`, then meshtastic-gateway 0.3.0 (the `peers` extra), 15 messages each way",
        _lazy("bench_gateway"),
    ),
    Benchmark(
        "city",
        "A city of RF clusters on one broker",
        "K = 1, 3, 10 separate clusters of 3 relays, in-process relays, one Mosquitto; "
        "baseline: ranking among every online relay",
        _lazy("bench_city"),
        _lazy("bench_city", sizes=(1, 3), warmup=3, alerts=3),
    ),
    Benchmark(
        "traffic",
        "MQTT traffic per alert",
        "N = 3, 9, 18, 30 relays in clusters of 3 on one Mosquitto, deliveries to the relays per alert; "
        "baseline: every relay subscribed to every relay's events",
        _lazy("bench_city", traffic_sizes=(1, 3, 6, 10)),
        _lazy("bench_city", traffic_sizes=(1, 3), warmup=2, alerts=2),
    ),
    Benchmark(
        "forgery",
        "Forgery battery",
        "single-byte mutations, splices, replays across restart, revoked key, role escalation, skewed clock",
        _lazy("bench_forgery"),
        _lazy("bench_forgery", frames=20, all_values=True),
    ),
    Benchmark(
        "fuzz",
        "Fuzzing",
        "hypothesis (pytest -m fuzz) + atheris (libFuzzer): decoder, bundle loader, MQTT JSON, device API",
        _lazy("bench_fuzz"),
        _lazy("bench_fuzz", total=20_000, hypothesis_examples=200),
    ),
    Benchmark(
        "chaos",
        "Chaos run",
        "3 relays, bridged brokers; broker restarts, radio unplugs, kill -9, backhaul cut, full disk",
        _lazy("bench_chaos"),
        None,
    ),
    Benchmark(
        "rabbitmq",
        "RabbitMQ cluster",
        "3 RabbitMQ 3.10 nodes on loopback, 3 relays on different nodes, one node restarted "
        "mid-stream; baseline: the broker-feature probes on one Mosquitto",
        _lazy("bench_rabbitmq"),
        None,
    ),
    Benchmark(
        "sim",
        "Simulator",
        "pure medium, 200-radio grid, 1,000 frames at time scale 0; managed vs naive flooding vs one hop",
        _sim(1000),
        _sim(200),
    ),
    Benchmark(
        "tui",
        "Dispatcher console",
        "50 alerts/s over 10,000 in history, headless Textual; baseline: rebuild the table per message",
        _tui(10_000, 10.0),
        _tui(2_000, 2.0),
    ),
]
BY_NAME = {b.name: b for b in BENCHMARKS}


# --- the results document --------------------------------------------------------------------------


def load_results(path: Path = DOC) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    start = text.find(DATA_BEGIN)
    if start < 0:
        return {}
    body = text[start + len(DATA_BEGIN) : text.find(DATA_END, start)]
    try:
        data: dict[str, Any] = json.loads(body)
    except ValueError:
        return {}
    return data


def _goal_cell(f: Figure) -> str:
    return f["goal"] or ""


def _verdict(f: Figure) -> str:
    if f["passed"] is None:
        return ""
    return "PASS" if f["passed"] else "**FAIL**"


def render(results: dict[str, Any], plots: list[Plot] | None = None) -> str:
    lines = [
        "# Performance",
        "",
        "Every figure below is measured and written by `relayd-bench` (bench/); none is entered",
        "by hand. Regenerate with `relayd-bench all` (all benchmarks, about 25 minutes on 2 cores),",
        "`relayd-bench NAME` (one benchmark; the other rows are kept) or `relayd-bench ci` (the",
        "small subset). Each benchmark prints its figures and measures its baseline in the same",
        "run. Rows without a goal are context: baselines, rates achieved, intermediate values.",
        "The plots are drawn from the same figures (matplotlib, the `plots` extra); `relayd-bench",
        "plots` redraws them and this page from the stored figures without running anything.",
        "",
        "## Summary",
        "",
        "| benchmark | goals met | measured on | date | run time |",
        "|---|---|---|---|---|",
    ]
    for b in BENCHMARKS:
        r = results.get(b.name)
        if r is None:
            lines.append(f"| {b.title} | not run yet | | | |")
            continue
        goals = [f for f in r["figures"] if f["passed"] is not None]
        met = sum(1 for f in goals if f["passed"])
        m = r["machine"]
        size = " (ci size)" if r.get("size") == "ci" else ""
        lines.append(
            f"| [{b.title}](#{b.name}) | {met}/{len(goals)}{size} | {m['cpu']}, {m['cores']} cores, "
            f"{m['ram']}, Python {m['python']} | {m['date']} | {r['seconds']:.0f} s |"
        )
    for b in BENCHMARKS:
        r = results.get(b.name)
        if r is None:
            continue
        m = r["machine"]
        lines += [
            "",
            f'<a id="{b.name}"></a>',
            f"## {b.title} (`relayd-bench {b.name}`)",
            "",
            f"{b.how}. Measured {m['date']} on {m['cpu']} ({m['cores']} cores, {m['ram']} RAM), "
            f"{m['os']}, Python {m['python']}"
            + (", **CI size**" if r.get("size") == "ci" else "")
            + f"; took {r['seconds']:.0f} s.",
            "",
        ]
        lines += [f"![{caption}](plots/{name})\n" for bench, name, caption in plots or () if bench == b.name]
        lines += [
            "| figure | value | unit | goal | result |",
            "|---|---:|---|---|---|",
        ]
        if r.get("error"):
            lines.append(f"| benchmark crashed: `{r['error']}` | | | | **FAIL** |")
        for f in r["figures"]:
            value = format_value(f["value"])
            lines.append(f"| `{f['name']}` | {value} | {f['unit']} | {_goal_cell(f)} | {_verdict(f)} |")
        notes = NOTES.get(b.name)
        if notes:
            lines += ["", notes]
    lines += ["", DATA_BEGIN, json.dumps(results, separators=(",", ":")), DATA_END, ""]
    return "\n".join(lines)


# --- running ---------------------------------------------------------------------------------------


def run_one(b: Benchmark, *, ci: bool) -> dict[str, Any]:
    fn = b.ci if ci and b.ci is not None else b.full
    started = time.monotonic()
    error = None
    try:
        figures = fn()
    except Exception as exc:  # one broken benchmark must not hide the others' figures
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"[:300]
        figures = [figure(f"{b.name}.completed", 0, "", "runs to the end", False)]
    seconds = time.monotonic() - started
    print_figures(f"{b.title} ({seconds:.0f} s)", figures)
    return {
        "figures": figures,
        "machine": machine(),
        "seconds": seconds,
        "size": "ci" if ci and b.ci is not None else "full",
        "error": error,
    }


def write_doc(results: dict[str, Any]) -> None:
    """The results document, with its plots redrawn (or, without matplotlib, those on disk)."""
    plots = draw(results)
    DOC.write_text(render(results, plots if plots is not None else existing()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="relayd-bench", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    ap.add_argument(
        "names", nargs="*", help="all, ci, plots (redraw from stored results), or benchmark names"
    )
    ap.add_argument("--list", action="store_true", help="list the benchmarks")
    ap.add_argument("--no-doc", action="store_true", help=f"do not update {DOC.relative_to(REPO)}")
    args = ap.parse_args(argv)
    if args.list or not args.names:
        for b in BENCHMARKS:
            print(f"{b.name:12} {b.title}: {b.how}")
        return 0 if args.list else 2
    if args.names == ["plots"]:
        results = load_results()
        plots = draw(results)
        if plots is None:
            print("relayd-bench plots: needs matplotlib: pip install -e '.[plots]'", file=sys.stderr)
            return 2
        DOC.write_text(render(results, plots))
        print(f"wrote {DOC} and its plots in {DOC.parent / 'plots'}")
        return 0
    ci = args.names == ["ci"]
    if args.names in (["all"], ["ci"]):
        chosen = [b for b in BENCHMARKS if not ci or b.ci is not None]
    else:
        unknown = [n for n in args.names if n not in BY_NAME]
        if unknown:
            ap.error(f"unknown benchmark(s) {', '.join(unknown)}; try --list")
        chosen = [BY_NAME[n] for n in args.names]
    results = load_results()
    started = time.monotonic()
    failed = 0
    for b in chosen:
        r = run_one(b, ci=ci)
        results[b.name] = r
        failed += sum(1 for f in r["figures"] if f["passed"] is False)
        if not args.no_doc:
            write_doc(results)  # after each benchmark: a crash later keeps these rows
    print(f"\n{len(chosen)} benchmark(s) in {time.monotonic() - started:.0f} s; {failed} goal(s) failed")
    if not args.no_doc:
        print(f"wrote {DOC}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
