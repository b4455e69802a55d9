"""Benchmark: relay latency in both directions, with a real Mosquitto and a simulated radio.

    python -m bench.bench_latency [--alerts 1000] [--interval-ms 50]

(a) MQTT -> radio: a signed alert published on the outbox until the simulated radio's
    firmware accepts the ToRadio packet for transmission.
(b) radio -> MQTT: a handheld's signed alert delivered to the relay's radio by the medium
    until an MQTT subscriber receives the relay's publication on `alerts`.

The relay runs in-process (one clock for both timestamps) at time scale 1000 with
suppression off (a suppression hold is a deliberate wait, measured by bench_suppression)
and the dispatcher rate limit raised; one alert every 50 ms each way, 20x more than a
LongFast channel can carry. Each alert is signed just before it is sent, as a dispatcher's
client does (an alert issued seconds earlier counts as backlog and is held a slot longer).

The relay commits each acceptance with an fsync (`synchronous=FULL`), on its storage's
writer thread, before the broker's delivery is acknowledged; the other writes of an alert
need none (docs/daemon.md, "Persistence and crashes"). The same run is repeated with the
state directory on tmpfs (fsync is free there): the difference is the disk, the tmpfs
figure is the software. Baseline in the same run: a naive forwarder -- an aiomqtt
subscriber writing straight to the radio through the same device-API link, and radio texts
published straight to MQTT -- with no decoding, verification, dedup or SQLite.
Goals: p99 <= 10 ms each way (state on disk), within 1.5x of the relay on tmpfs.

CPU per alert is this process's CPU time (every thread: the relay and its writer, but
also the simulated radios and the bench's MQTT clients, the same for the naive forwarder)
over the alerts of both directions; goal: within 3x of the naive forwarder.

The relay waits 90 s of mesh time for the firmware's on-air confirmation before it resends
a frame in doubt; at x1000 that is 90 ms of wall time, less than a scheduling pause of this
process on a loaded machine, and the resend (same packet id, ignored by the radio) holds
the radio's queue for the link's 5 s confirmation timeout, which is wall time: one pause,
seconds of latency for every alert behind it, none of it the relay's cost. So the bench
stretches that wait to 1 s of wall time; `latency.stalls` counts the resends that remain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import relayd.daemon.relay as relay_module
from bench.common import Figure, figure, percentile, print_figures
from bench.rig import (
    RadioTap,
    Subscriber,
    bench_broker,
    full_mesh_scenario,
    inprocess_relay,
    mqtt_client,
    paced,
    relay_config,
    wait_for,
)
from relayd.core.codec import decode
from relayd.core.jsonform import encode_alert
from relayd.core.model import Severity
from relayd.daemon.config import RadioConfig
from relayd.daemon.radio import RadioLink, ReceivedText
from relayd.sim.neighborhood import Neighborhood
from relayd.testing.keys import TestNetwork, make_network
from relayd.testing.mosquitto import MosquittoBroker

GOAL_P99_MS = 10.0
GOAL_DISK_OVER_TMPFS = 1.5
CONFIRM_WAIT_WALL_S = 1.0
GOAL_CPU_OVER_NAIVE = 3.0
TIME_SCALE = 1000.0
WARMUP = 20
# tmpfs: fsync costs nothing there; TemporaryDirectory(dir=...) keeps it private.
TMPFS = Path("/dev/shm")  # noqa: S108


@dataclass
class Run:
    out_ms: list[float]
    in_ms: list[float]
    drops: int = 0
    cpu_s: float = 0.0
    stalls: int = 0

    @property
    def cpu_ms_per_alert(self) -> float:
        n = len(self.out_ms) + len(self.in_ms)
        return self.cpu_s * 1000 / n if n else float("nan")


@dataclass
class Bench:
    net: TestNetwork
    broker: MosquittoBroker
    hood: Neighborhood
    taps: dict[str, RadioTap]
    interval_s: float

    def sign(self, tag: str, i: int) -> str:
        return self.net.sign("dispatcher", f"{tag} {i}: police at 5th & Main", severity=Severity.URGENT).onair

    def send_rf(self, sent: list[str], tag: str, i: int) -> None:
        sent.append(self.sign(tag, i))
        self.hood.handheld_send("hh", sent[-1])

    async def outbound(self, root: str, radio: str, tag: str, n: int, *, bare: bool = False) -> list[float]:
        sent: list[str] = []
        published: dict[str, float] = {}
        async with mqtt_client(self.broker.port) as pub:

            async def publish(i: int) -> None:
                sent.append(self.sign(tag, i))
                payload = sent[-1].encode() if bare else encode_alert(decode(sent[-1]).to_signed_alert())
                published[sent[-1]] = time.perf_counter()
                await pub.publish(f"{root}/outbox", payload, qos=1)

            await paced(n, self.interval_s, publish)
        written = self.taps[radio].written
        await wait_for(lambda: all(a in written for a in sent), 30)
        return _ms(published, written, sent[WARMUP:])

    async def inbound(self, root: str, radio: str, tag: str, n: int) -> list[float]:
        sent: list[str] = []
        async with Subscriber(self.broker.port, f"{root}/alerts") as sub:
            await paced(n, self.interval_s, lambda i: self.send_rf(sent, tag, i))
            await wait_for(lambda: all(a in sub.received for a in sent), 30)
            return _ms(self.taps[radio].delivered, sub.received, sent[WARMUP:])

    async def relay(self, workdir: Path, tag: str, n: int) -> Run:
        cfg = relay_config(
            workdir,
            "relay-north",
            self.net,
            hood=self.hood,
            radio="relay",
            broker=self.broker,
            time_scale=TIME_SCALE,
            topic_root=tag,
            extra="[airtime]\nduty_cycle = 1.0\n",
        )
        async with _patient_confirmation(), inprocess_relay(cfg) as relay:
            cpu = time.process_time()
            out = await self.outbound(tag, "relay", f"{tag} out", n)
            inn = await self.inbound(tag, "relay", f"{tag} in", n)
            cpu = time.process_time() - cpu
            drops = sum(relay.counters.drops.values())
            return Run(out, inn, drops, cpu, relay.counters.unconfirmed)

    async def naive(self, n: int) -> Run:
        """Baseline: MQTT straight to the radio and back, nothing checked, nothing stored."""
        ep = self.hood.endpoints["naive"]
        cfg = RadioConfig("naive", "tcp", host=ep.tcp_host or "127.0.0.1", port=ep.tcp_port or 0)
        async with mqtt_client(self.broker.port) as client:

            def on_text(rt: ReceivedText) -> None:
                doc = json.dumps({"onair": rt.payload.decode("utf-8", "replace")}).encode()
                asyncio.get_running_loop().create_task(client.publish("naive/alerts", doc, qos=1))

            radio = RadioLink(cfg, on_text)
            radio_task = asyncio.create_task(radio.run())
            await radio.wait_connected(10)
            await client.subscribe("naive/outbox", qos=1)

            async def forward() -> None:
                async for msg in client.messages:
                    await radio.send_text(bytes(msg.payload).decode())

            fwd = asyncio.create_task(forward())
            try:
                cpu = time.process_time()
                out = await self.outbound("naive", "naive", "naive out", n, bare=True)
                inn = await self.inbound("naive", "naive", "naive in", n)
                cpu = time.process_time() - cpu
            finally:
                fwd.cancel()
                radio_task.cancel()
        return Run(out, inn, cpu_s=cpu)


@contextlib.asynccontextmanager
async def _patient_confirmation() -> AsyncIterator[None]:
    """The relay's wait for an on-air confirmation, as 1 s of wall time (see the docstring)."""
    saved = relay_module.ACK_WAIT_S
    relay_module.ACK_WAIT_S = CONFIRM_WAIT_WALL_S * TIME_SCALE
    try:
        yield
    finally:
        relay_module.ACK_WAIT_S = saved


def _ms(starts: dict[str, float], ends: dict[str, float], keys: Sequence[str]) -> list[float]:
    return [(ends[k] - starts[k]) * 1000 for k in keys if k in starts and k in ends]


async def _measure(alerts: int, side_alerts: int, interval_s: float) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="relayd-bench-lat-") as tmp:
        work = Path(tmp)
        broker = bench_broker(work / "mosquitto")
        hood = Neighborhood(full_mesh_scenario(["relay", "naive"], ["hh"]), time_scale=TIME_SCALE)
        await hood.start()
        taps = {"relay": RadioTap(), "naive": RadioTap()}
        for name, tap in taps.items():
            tap.attach(hood, name)
        bench = Bench(make_network(work / "keys"), broker, hood, taps, interval_s)
        try:
            disk = await bench.relay(work / "disk", "disk", alerts + WARMUP)
            with tempfile.TemporaryDirectory(prefix="relayd-bench-lat-", dir=TMPFS) as shm:
                tmpfs = await bench.relay(Path(shm), "tmpfs", side_alerts + WARMUP)
            naive = await bench.naive(side_alerts + WARMUP)
        finally:
            await hood.stop()
            broker.stop()
    figures = []
    for tag, ours, fast, base in (
        ("mqtt_to_radio", disk.out_ms, tmpfs.out_ms, naive.out_ms),
        ("radio_to_mqtt", disk.in_ms, tmpfs.in_ms, naive.in_ms),
    ):
        p99 = percentile(ours, 99)
        ratio = p99 / percentile(fast, 99)
        figures += [
            figure(f"latency.{tag}_p50_ms", percentile(ours, 50), "ms"),
            figure(f"latency.{tag}_p99_ms", p99, "ms", f"<= {GOAL_P99_MS:.0f} ms", p99 <= GOAL_P99_MS),
            figure(f"latency.{tag}_delivered", len(ours), "alerts", f"== {alerts}", len(ours) == alerts),
            figure(f"latency.{tag}_tmpfs_p50_ms", percentile(fast, 50), "ms"),
            figure(f"latency.{tag}_tmpfs_p99_ms", percentile(fast, 99), "ms"),
            figure(
                f"latency.{tag}_p99_disk_over_tmpfs",
                ratio,
                "x",
                f"<= {GOAL_DISK_OVER_TMPFS}",
                ratio <= GOAL_DISK_OVER_TMPFS,
            ),
            figure(f"latency.{tag}_naive_p50_ms", percentile(base, 50), "ms"),
            figure(f"latency.{tag}_naive_p99_ms", percentile(base, 99), "ms"),
        ]
    drops = disk.drops + tmpfs.drops
    cpu_ratio = disk.cpu_ms_per_alert / naive.cpu_ms_per_alert
    figures += [
        figure("latency.relay_drops", drops, "frames", "== 0", drops == 0),
        figure("latency.stalls", disk.stalls + tmpfs.stalls, "frames"),
        figure("latency.cpu_ms_per_alert", disk.cpu_ms_per_alert, "ms"),
        figure("latency.cpu_tmpfs_ms_per_alert", tmpfs.cpu_ms_per_alert, "ms"),
        figure("latency.cpu_naive_ms_per_alert", naive.cpu_ms_per_alert, "ms"),
        figure(
            "latency.cpu_over_naive",
            cpu_ratio,
            "x",
            f"<= {GOAL_CPU_OVER_NAIVE}",
            cpu_ratio <= GOAL_CPU_OVER_NAIVE,
        ),
    ]
    return figures


def run(alerts: int = 1000, side_alerts: int = 300, interval_ms: float = 50.0) -> list[Figure]:
    return asyncio.run(_measure(alerts, side_alerts, interval_ms / 1000))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_latency")
    ap.add_argument("--alerts", type=int, default=1000)
    ap.add_argument("--side-alerts", type=int, default=300, help="alerts for the tmpfs and naive runs")
    ap.add_argument("--interval-ms", type=float, default=50.0)
    args = ap.parse_args(argv)
    figures = run(args.alerts, args.side_alerts, args.interval_ms)
    print_figures("relay latency (in-process relay, real Mosquitto, sim radio at x1000)", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
