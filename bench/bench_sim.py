"""Benchmark: the pure medium on a 200-radio grid with 1,000 injected frames, as fast as possible.

    python -m bench.bench_sim [--frames 1000] [--width 20] [--height 10]

Runs managed flooding (what Meshtastic does) and two baselines in the same process -- naive
flooding (every copy rebroadcast while hop_limit > 0) and a single-hop broadcast -- and prints
wall time, frames per second and peak memory for each.
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc
from dataclasses import dataclass

from meshtastic.protobuf import mesh_pb2

from relayd.meshapi.packets import BROADCAST_NUM, TEXT_MESSAGE_APP
from relayd.sim.medium import AirPacket, Delivery, FloodingMode, SendResult
from relayd.sim.neighborhood import build_medium
from relayd.sim.scenario import grid_scenario

# One frame every this many sim seconds somewhere on the grid: a busy but not saturated
# neighborhood (a 120-byte alert takes ~1.2 s on LONG_FAST).
INJECT_INTERVAL_S = 4.0


@dataclass(frozen=True, slots=True)
class Result:
    mode: str
    wall_s: float
    sim_s: float
    injected: int
    rejected: int
    transmitted: int
    delivered: int
    collisions: int
    peak_mem_bytes: int

    def line(self) -> str:
        return (
            f"{self.mode:<8} wall {self.wall_s:7.2f} s  sim {self.sim_s:8.0f} s  "
            f"tx {self.transmitted:7d} ({self.transmitted / self.wall_s:9.0f}/s)  "
            f"delivered {self.delivered:7d} ({self.delivered / self.wall_s:9.0f}/s)  "
            f"per frame: tx {self.transmitted / max(self.injected, 1):6.1f} "
            f"reach {self.delivered / max(self.injected, 1):6.1f}  "
            f"collisions {self.collisions:6d}  rejected {self.rejected:4d}  "
            f"peak mem {self.peak_mem_bytes / 1e6:6.1f} MB"
        )


def run(mode: FloodingMode, *, frames: int, width: int, height: int, seed: int) -> Result:
    scenario = grid_scenario(width, height, seed=seed)
    names = [n.name for n in scenario.nodes]
    nums = {n.name: n.num for n in scenario.nodes}
    rng = random.Random(seed)
    data = mesh_pb2.Data()
    data.portnum = TEXT_MESSAGE_APP
    data.payload = b"A" * 120
    payload = bytes(data.SerializeToString())

    tracemalloc.start()
    t0 = time.perf_counter()
    medium = build_medium(scenario, flooding=mode)
    delivered = 0
    rejected = 0
    for i in range(frames):
        inject_at = i * INJECT_INTERVAL_S
        while (nxt := medium.next_event_time()) is not None and nxt <= inject_at:
            delivered += sum(1 for e in medium.step() if isinstance(e, Delivery))
        medium.advance_to(inject_at)
        src = rng.choice(names)
        pkt = AirPacket(
            nums[src], BROADCAST_NUM, i + 1, 0, scenario.hop_limit, scenario.hop_limit, False, payload
        )
        if medium.send(src, pkt) is not SendResult.QUEUED:
            rejected += 1
    while medium.next_event_time() is not None:
        delivered += sum(1 for e in medium.step() if isinstance(e, Delivery))
    wall = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    st = medium.stats()
    return Result(
        mode=mode.name.lower(),
        wall_s=wall,
        sim_s=st.now_s,
        injected=frames,
        rejected=rejected,
        transmitted=st.frames_sent,
        delivered=delivered,
        collisions=st.collisions,
        peak_mem_bytes=peak,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_sim")
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--width", type=int, default=20)
    ap.add_argument("--height", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    print(
        f"relayd sim benchmark: {args.width}x{args.height} grid ({args.width * args.height} radios), "
        f"{args.frames} frames, LONG_FAST, hop_limit 3, collisions on, time scale 0"
    )
    for mode in (FloodingMode.MANAGED, FloodingMode.NAIVE, FloodingMode.NONE):
        print(
            run(mode, frames=args.frames, width=args.width, height=args.height, seed=args.seed).line(),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
