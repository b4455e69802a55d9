"""Benchmark: the chaos run at full size (tests/faults/chaos.py, FULL_PLAN).

    python -m bench.bench_chaos [--no-split]

30 sim minutes of alerts (one per 8 s of sim time) through three relays at time scale 20,
while 5 broker restarts, 5 radio unplugs, 3 `kill -9`s, a 10-sim-minute backhaul cut
between the bridged brokers and a full state disk on one relay are injected. Goals: every
alert shown on every handheld exactly once; every alert that reached the relays put on air;
the full disk surfaces in status `storage_error` (and clears) without a crash.

Figures separate where a loss happened: before any relay (the broker bridge), at the relays
(never transmitted), or on RF (transmitted, but a handheld missed it). Context in the same
run (CI size, no goal): the relays split across the two brokers, which docs/scaling.md does
not support for relays that hear each other -- the duplicates it causes are measured.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
from pathlib import Path

from bench.common import Figure, figure, print_figures
from relayd.testing.keys import make_network
from tests.faults.chaos import CI_PLAN, FULL_PLAN, ChaosPlan, ChaosReport, run_chaos


async def _run(plan: ChaosPlan) -> ChaosReport:
    with tempfile.TemporaryDirectory(prefix="relayd-bench-chaos-") as tmp:
        return await run_chaos(Path(tmp), make_network(Path(tmp) / "keys"), plan)


def run(plan: ChaosPlan = FULL_PLAN, split: bool = True) -> list[Figure]:
    r = asyncio.run(_run(plan))
    deliveries = r.alerts * r.handhelds
    figures = [
        figure("chaos.alerts", r.alerts, "alerts"),
        figure("chaos.sim_minutes", r.alerts * plan.interval_s * plan.time_scale / 60, "min"),
        *(figure(f"chaos.faults_{kind}", n, "faults") for kind, n in sorted(r.faults.items())),
        figure("chaos.missing_deliveries", r.missing, f"of {deliveries}", "== 0", r.missing == 0),
        figure("chaos.duplicate_displays", r.duplicates, "displays", "== 0", r.duplicates == 0),
        figure("chaos.lost_before_relays", len(r.lost_before_relays), "alerts"),
        figure("chaos.not_transmitted", len(r.not_transmitted), "alerts", "== 0", not r.not_transmitted),
        figure("chaos.transmitted_by_two_relays", len(r.transmitted_twice), "alerts"),
        figure("chaos.storage_error_surfaced", int(r.storage_error_seen), "", "== 1", r.storage_error_seen),
        figure(
            "chaos.storage_error_cleared", int(r.storage_error_cleared), "", "== 1", r.storage_error_cleared
        ),
        figure(
            "chaos.relay_crashes",
            len(r.unexpected_exits) + len(r.tracebacks),
            "relays",
            "== 0",
            not r.unexpected_exits and not r.tracebacks,
        ),
        figure("chaos.wall_s", r.seconds, "s"),
    ]
    print(f"   {r}")
    if split:
        s = asyncio.run(_run(dataclasses.replace(CI_PLAN, split=True)))
        print(f"   split: {s}")
        figures += [
            figure("chaos.split_brokers_duplicate_displays", s.duplicates, "displays"),
            figure(
                "chaos.split_brokers_transmitted_by_two_relays", len(s.transmitted_twice), f"of {s.alerts}"
            ),
        ]
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_chaos")
    ap.add_argument("--no-split", action="store_true", help="skip the split-brokers context run")
    ap.add_argument("--ci", action="store_true", help="the CI-size plan")
    args = ap.parse_args(argv)
    print_figures("chaos", run(CI_PLAN if args.ci else FULL_PLAN, split=not args.no_split))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
