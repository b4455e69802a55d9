"""Benchmark: the relay's memory, file descriptors and database over 24 hours of traffic.

    python -m bench.bench_soak [--hours 24] [--time-scale 288]

One relay daemon (`relayd run`, a subprocess) on a simulated radio at time scale 288 (24
sim hours in 5 wall minutes) and a real Mosquitto. Traffic per sim minute: 4 dispatcher
alerts from MQTT (transmitted), 2 alerts heard on RF from a handheld (published), one
handheld report (wrapped, published, acknowledged by DM) and every other minute a junk frame.
Sampled every wall second from /proc/PID: VmRSS and open file descriptors; and the size of
the state directory (SQLite + WAL). History retention is set to 60 s (wall) so that the
history table must stay bounded.

Goals: RSS after 1 sim hour <= 80 MB; RSS growth from sim hour 1 to the end <= 5 %; no file
descriptor growth; history rows bounded by the retention. Caveat: the relay's dedup horizon
(12 h) and dedup generations (6 h) are wall-clock, so in a 5-minute run the dedup ids of all
24 sim hours are still held -- this run is harder on memory than a real day.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from bench.common import Figure, cpu_seconds, dir_size_bytes, fd_count, figure, print_figures, rss_mb
from bench.rig import bench_broker, full_mesh_scenario, relay_config, wait_for
from relayd.core.jsonform import encode_alert
from relayd.core.model import Severity
from relayd.daemon.config import load_config
from relayd.sim.neighborhood import Neighborhood
from relayd.testing.harness import RelayProcess
from relayd.testing.keys import TestNetwork, make_network

GOAL_RSS_MB = 80.0
GOAL_GROWTH = 0.05
TICK_SIM_S = 15.0  # one dispatcher alert per tick
RETENTION_S = 60.0
LIFETIME_S = 60  # alerts expire after a minute of wall time


@dataclass
class Sample:
    sim_h: float
    rss_mb: float
    fds: int
    state_bytes: int


async def _traffic(
    hood: Neighborhood, port: int, net: TestNetwork, *, root: str, ticks: int, tick_wall_s: float
) -> int:
    sent = 0
    async with aiomqtt.Client("127.0.0.1", port) as client:
        t0 = time.perf_counter()
        for i in range(ticks):
            delay = t0 + i * tick_wall_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            alert = net.sign(
                "dispatcher", f"Soak {i}: patrol on Elm", severity=Severity.WARNING, lifetime_s=LIFETIME_S
            )
            await client.publish(f"{root}/outbox", encode_alert(alert), qos=1)
            sent += 1
            if i % 2 == 0:
                rf = net.sign(
                    "verifier", f"Heard {i}: vans on Oak", severity=Severity.ADVISORY, lifetime_s=LIFETIME_S
                )
                hood.handheld_send("hh", rf.onair)
            if i % 4 == 1:
                hood.handheld_send("hh", f"!r report {i}: two cars at Pine", channel_index=1)
            if i % 8 == 3:
                hood.handheld_send("hh", f"junk {i}\nnot-a-token")
    return sent


def _history_rows(db: Path) -> int:
    try:
        conn = sqlite3.connect(db, timeout=5)  # WAL: a reader never blocks the relay
        try:
            return int(conn.execute("SELECT count(*) FROM history").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return -1


async def _measure(hours: float, time_scale: float) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="relayd-bench-soak-") as tmp:
        work = Path(tmp)
        net = make_network(work / "keys")
        broker = bench_broker(work / "mosquitto")
        hood = Neighborhood(full_mesh_scenario(["relay"], ["hh"]), time_scale=time_scale)
        await hood.start()
        cfg = relay_config(
            work / "relay",
            "relay-north",
            net,
            hood=hood,
            radio="relay",
            broker=broker,
            time_scale=time_scale,
            topic_root="soak",
            extra="[airtime]\nduty_cycle = 0.25\n",
        )
        # history_retention lives in [relay]; the harness writes that table first.
        cfg.write_text(
            cfg.read_text().replace("[relay]\n", f'[relay]\nhistory_retention = "{RETENTION_S:.0f}s"\n', 1)
        )
        db_path = load_config(cfg).db_path
        state = db_path.parent
        relay = RelayProcess(cfg, work / "relay.log")
        relay.start()
        samples: list[Sample] = []
        try:
            assert relay.proc is not None
            pid = relay.proc.pid
            ready = await wait_for(lambda: relay.log_text().count(" connected") >= 2, 20)
            assert ready, relay.log_text()[-2000:]
            ticks = int(hours * 3600 / TICK_SIM_S)
            started = time.monotonic()
            cpu0 = cpu_seconds(pid)
            traffic = asyncio.create_task(
                _traffic(
                    hood, broker.port, net, root="soak", ticks=ticks, tick_wall_s=TICK_SIM_S / time_scale
                )
            )
            while not traffic.done():
                sim_h = (time.monotonic() - started) * time_scale / 3600
                samples.append(Sample(sim_h, rss_mb(pid), fd_count(pid), dir_size_bytes(state)))
                await asyncio.sleep(1.0)
            sent = traffic.result()
            await asyncio.sleep(2)
            wall = time.monotonic() - started
            cpu = cpu_seconds(pid) - cpu0
            samples.append(Sample(hours, rss_mb(pid), fd_count(pid), dir_size_bytes(state)))
            history = _history_rows(db_path)
            alive = relay.alive
        finally:
            relay.terminate()
            await hood.stop()
            broker.stop()
    at_1h = next((s for s in samples if s.sim_h >= 1.0), samples[-1])
    end = samples[-1]
    late = [s for s in samples if s.sim_h >= hours * 0.75]
    growth = (end.rss_mb - at_1h.rss_mb) / at_1h.rss_mb
    fd_growth = max(s.fds for s in late) - at_1h.fds
    # Accepted alerts (from MQTT and RF) and reports per retention window, with 50 % slack.
    per_wall_s = (1 + 0.5) / (TICK_SIM_S / time_scale)
    history_bound = int(per_wall_s * (RETENTION_S + 60) * 1.5)  # +60: purge runs once a minute
    return [
        figure("soak.sim_hours", hours, "h"),
        figure("soak.alerts_sent_mqtt", sent, "alerts"),
        figure(
            "soak.rss_at_1h_mb", at_1h.rss_mb, "MB", f"<= {GOAL_RSS_MB:.0f} MB", at_1h.rss_mb <= GOAL_RSS_MB
        ),
        figure("soak.rss_end_mb", end.rss_mb, "MB"),
        figure("soak.rss_max_mb", max(s.rss_mb for s in samples), "MB"),
        figure(
            "soak.rss_growth_1h_to_end",
            growth * 100,
            "%",
            f"<= {GOAL_GROWTH * 100:.0f} %",
            growth <= GOAL_GROWTH,
        ),
        figure("soak.fds_at_1h", at_1h.fds, "fds"),
        figure("soak.fd_growth", fd_growth, "fds", "<= 0", fd_growth <= 0),
        figure("soak.state_dir_at_1h_kb", at_1h.state_bytes / 1024, "KiB"),
        figure("soak.state_dir_end_kb", end.state_bytes / 1024, "KiB"),
        figure(
            "soak.history_rows_end",
            history,
            "rows",
            f"<= {history_bound} (retention)",
            0 <= history <= history_bound,
        ),
        figure("soak.relay_cpu_per_wall_s", cpu / wall * 100, "% of a core"),
        figure("soak.relay_alive_at_end", int(alive), "", "== 1", alive),
    ]


def run(hours: float = 24.0, time_scale: float = 288.0) -> list[Figure]:
    return asyncio.run(_measure(hours, time_scale))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_soak")
    ap.add_argument("--hours", type=float, default=24.0, help="sim hours of traffic")
    ap.add_argument("--time-scale", type=float, default=288.0)
    args = ap.parse_args(argv)
    print_figures("soak", run(args.hours, args.time_scale))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
