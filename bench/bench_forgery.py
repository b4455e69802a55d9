"""Benchmark: the forgery battery at full size -- 1,000 genuine frames and single-byte
mutations of every byte of each (its 8 bit flips; with --all-values also 9 chosen values,
as the CI test does on 20 frames), splices, replays across a relay restart, a key revoked
by a new bundle, role escalation and skewed clocks.

    python -m bench.bench_forgery [--frames 1000]

Goal: 0 accepted and every forgery rejected under the reason its category calls for (see
relayd/testing/forgery.py). The baseline is the genuine frames themselves: all of them
must still be accepted after their mutations were tried. Mutations run on every core.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench.common import Figure, figure, print_figures
from bench.rig import BENCH_LIMITS
from relayd.core.trust import TrustBundle
from relayd.testing.forgery import (
    MUTATION_VALUES,
    Outcome,
    genuine_frames,
    mutation_battery,
    relay_battery,
    splice_battery,
)
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import make_network


def _mutate(args: tuple[list[str], TrustBundle, float, tuple[int, ...]]) -> Outcome:
    return mutation_battery(*args)


def run(frames: int = 1000, all_values: bool = False) -> list[Figure]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="relayd-bench-forgery-") as tmp:
        net = make_network(Path(tmp) / "keys")
        now = time.time()
        genuine = genuine_frames(net, frames, now)
        values = MUTATION_VALUES if all_values else ()
        workers = max(1, os.cpu_count() or 1)
        chunks = [genuine[i::workers] for i in range(workers)]
        outcomes: dict[str, Outcome] = {"mutation": Outcome()}
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_mutate, [(c, net.bundle, now, values) for c in chunks]):
                outcomes["mutation"].merge(part)
        outcomes["splice"] = splice_battery(genuine, net.bundle, now)
        config = write_relay_config(
            Path(tmp) / "relay", "relay-north", net, radio_port=9, broker_port=9, extra=BENCH_LIMITS
        )
        outcomes.update(relay_battery(net, config, now))
    elapsed = time.perf_counter() - started
    figures = [figure("forgery.genuine_frames", frames, "frames")]
    total = accepted = wrong = 0
    for name, o in outcomes.items():
        total += o.tried
        accepted += len(o.accepted)
        wrong += len(o.wrong_reason)
        figures += [
            figure(f"forgery.{name}_tried", o.tried, "forgeries"),
            figure(f"forgery.{name}_accepted", len(o.accepted), "forgeries", "== 0", not o.accepted),
            figure(
                f"forgery.{name}_wrong_reason", len(o.wrong_reason), "forgeries", "== 0", not o.wrong_reason
            ),
        ]
        for sample in (o.accepted + o.wrong_reason)[:3]:
            print(f"   {name}: {sample}")
    figures += [
        figure("forgery.total_tried", total, "forgeries"),
        figure("forgery.total_accepted", accepted, "forgeries", "== 0", accepted == 0),
        figure("forgery.total_wrong_reason", wrong, "forgeries", "== 0", wrong == 0),
        figure("forgery.verdicts_per_s", total / elapsed, "forgeries/s"),
    ]
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_forgery")
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--all-values", action="store_true", help="also the 9 chosen byte values")
    args = ap.parse_args(argv)
    print_figures("forgery battery", run(args.frames, args.all_values))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
