"""Benchmark: the chaos run at full size (tests/faults/chaos.py, FULL_PLAN).

    python -m bench.bench_chaos [--no-split]

30 sim minutes of alerts (one per 8 s of sim time) through three relays at time scale 20,
while 5 broker restarts, 5 radio unplugs, 3 `kill -9`s, a 10-sim-minute backhaul cut
between the bridged brokers and a full state disk on one relay are injected. Goals: every
alert shown on every handheld exactly once; every alert that reached the relays put on air;
the full disk surfaces in status `storage_error` (and clears) without a crash.

Missed (alert, handheld) deliveries are split by where they were lost: in the brokers or the
bridge (the alert never reached the relays' broker), at the relays (reached them, never on
air), or on the air (on air, a handheld missed the frame: half duplex while it was itself
repeating, or a rebroadcast dropped on a full transmit queue; the simulator's counters for
both are printed). Baselines in the same run: the same stream at CI size with no fault at all,
so the air's own share is visible; and the same faults with the relays pacing frames by the
firmware's text interval only (`pace_to_air = false`) and no late repeats, as before pacing to
the air; and the same faults with pacing but no late repeats (`late_repeat = "off"`). The
stream is urgent alerts, the ones relays repeat late for handhelds that missed them. Context
(CI size, no goal): the relays split across the two brokers, which docs/scaling.md does not
support for relays that hear each other.
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
        figure(
            "chaos.missed_in_brokers", r.missed_in_brokers, "deliveries", "== 0", r.missed_in_brokers == 0
        ),
        figure(
            "chaos.missed_not_on_air", r.missed_not_on_air, "deliveries", "== 0", r.missed_not_on_air == 0
        ),
        figure("chaos.missed_on_air", r.missed_on_air, "deliveries"),
        figure("chaos.delivered_pct", 100.0 * (deliveries - r.missing) / deliveries, "%"),
        figure("chaos.half_duplex_misses", r.half_duplex_misses, "receptions"),
        figure("chaos.queue_full_drops", r.queue_full_drops, "frames"),
        figure("chaos.late_repeats", r.late_repeats, "frames"),
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
    base = asyncio.run(_run(_fault_free(CI_PLAN)))
    print(f"   baseline, no faults: {base}")
    base_deliveries = base.alerts * base.handhelds
    figures += [
        figure("chaos.baseline_alerts", base.alerts, "alerts"),
        figure("chaos.baseline_missed_on_air", base.missed_on_air, f"of {base_deliveries}"),
        figure("chaos.baseline_duplicate_displays", base.duplicates, "displays"),
        figure("chaos.baseline_half_duplex_misses", base.half_duplex_misses, "receptions"),
    ]
    once = asyncio.run(_run(dataclasses.replace(plan, late_repeat="off")))
    print(f"   no late repeats: {once}")
    figures += [
        figure("chaos.no_repeat_missed_on_air", once.missed_on_air, f"of {once.alerts * once.handhelds}"),
        figure("chaos.no_repeat_duplicate_displays", once.duplicates, "displays"),
        figure("chaos.no_repeat_half_duplex_misses", once.half_duplex_misses, "receptions"),
        figure("chaos.no_repeat_queue_full_drops", once.queue_full_drops, "frames"),
    ]
    interval = asyncio.run(_run(dataclasses.replace(plan, pace_to_air=False, late_repeat="off")))
    print(f"   paced by the text interval only: {interval}")
    figures += [
        figure(
            "chaos.interval_paced_missed_on_air",
            interval.missed_on_air,
            f"of {interval.alerts * interval.handhelds}",
        ),
        figure("chaos.interval_paced_duplicate_displays", interval.duplicates, "displays"),
        figure("chaos.interval_paced_half_duplex_misses", interval.half_duplex_misses, "receptions"),
        figure("chaos.interval_paced_queue_full_drops", interval.queue_full_drops, "frames"),
    ]
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


def _fault_free(plan: ChaosPlan) -> ChaosPlan:
    return dataclasses.replace(
        plan, broker_restarts=0, unplugs=0, kills=0, cut_s=0.0, disk_full_s=0.0, kill_brokers_in_cut=False
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_chaos")
    ap.add_argument("--no-split", action="store_true", help="skip the split-brokers context run")
    ap.add_argument("--ci", action="store_true", help="the CI-size plan")
    args = ap.parse_args(argv)
    print_figures("chaos", run(CI_PLAN if args.ci else FULL_PLAN, split=not args.no_split))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
