"""Benchmark: suppression and delivery on both backends, side by side, with 3, 5 and 10 relays.

    python -m bench.bench_backends [--sizes 3 5 10] [--alerts 4]

The same scenario (bench.rig.full_mesh_scenario: N relay radios, ROUTER_LATE, and three
handhelds, every node hearing every other, lossless) runs twice per N, once on relayd's own
firmware model (relayd.sim.neighborhood, time scale 20) and once on real Meshtastic firmware
(relayd.sim.fwbackend: one meshtasticd per radio, wall time), with N `relayd run` daemons on one
real Mosquitto and suppression on. A dispatcher publishes one alert per 8 s of mesh time.

Per backend and N: transmissions per alert (the relays' own count of frames confirmed on air,
from their retained status; on real firmware also counted from what the radios handed to the
medium), displays per alert per handheld, and the fraction of (handheld, alert) pairs shown.
The simulator is the baseline measured in the same run: where the firmware's figure differs,
the model is wrong about something that matters. Without meshtasticd only the model runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.common import Figure, figure, print_figures
from bench.rig import full_mesh_scenario
from relayd.core.jsonform import encode_alert
from relayd.core.model import Role, Severity
from relayd.sim.fwbackend import FirmwareNeighborhood
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import Scenario
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import make_network
from relayd.testing.meshtasticd import MeshtasticdUnavailable, meshtasticd_binary
from relayd.testing.mosquitto import MosquittoBroker
from tests.daemon.conftest import GENEROUS_LIMITS, Site

GOAL_TX_PER_ALERT = 1.2
SIM_TIME_SCALE = 20.0
ALERT_EVERY_S = 8.0  # of mesh time
HANDHELDS = ("hh-a", "hh-b", "hh-c")


@dataclass(frozen=True)
class Result:
    tx_per_alert: float  # relays' confirmed transmissions
    air_per_alert: float | None  # frames the firmware put on air (real firmware only)
    displays_per_alert: float  # per handheld (1.0 = each shown once)
    delivered: float  # fraction of (handheld, alert) pairs shown at least once


async def _start_hood(
    scenario: Scenario, work: Path, firmware: Path | None
) -> Neighborhood | FirmwareNeighborhood:
    if firmware is None:
        hood = Neighborhood(scenario, time_scale=SIM_TIME_SCALE, handheld_log_path=work / "handhelds.jsonl")
        await hood.start()
        return hood
    fw = FirmwareNeighborhood(
        scenario, binary=firmware, state_root=work / "nodes", handheld_log_path=work / "handhelds.jsonl"
    )
    try:
        await fw.start()
    except BaseException:
        await fw.stop()
        raise
    return fw


async def _one(work: Path, n: int, alerts: int, firmware: Path | None) -> Result:
    relays = [f"relay-{i}" for i in range(n)]
    tag = f"{'fw' if firmware else 'sim'}{n}"
    work = work / tag
    scale = 1.0 if firmware else SIM_TIME_SCALE
    network = make_network(work / "keys", {"dispatcher": Role.DISPATCHER} | dict.fromkeys(relays, Role.RELAY))
    broker = MosquittoBroker(work / "mosquitto", extra_config="set_tcp_nodelay true")
    broker.start()
    hood: Neighborhood | FirmwareNeighborhood | None = None
    site: Site | None = None
    try:
        hood = await _start_hood(full_mesh_scenario(relays, list(HANDHELDS), name=tag), work, firmware)
        # Either neighborhood (simulated or real firmware) stands in: Site uses what both offer.
        site = Site(hood, broker, network, work, root=tag)  # type: ignore[arg-type]
        for r in relays:
            site.configs[r] = write_relay_config(
                work / "relays",
                r,
                network,
                radio_port=hood.endpoints[r].tcp_port,
                broker_port=broker.port,
                time_scale=scale,
                topic_root=tag,
                extra=GENEROUS_LIMITS,
            )
            site.start_relay(r)
        await site.wait_relays_ready(timeout_s=90)
        sent = [
            network.sign("dispatcher", f"Drill {i}: checkpoint at Elm & {i}th", severity=Severity.WARNING)
            for i in range(alerts)
        ]
        await site.publish_many(
            site.topic("outbox"), [encode_alert(a) for a in sent], delay_s=ALERT_EVERY_S / scale
        )
        transmitted = 0
        for _ in range(90):
            statuses = await site.statuses(settle_s=1.0)
            transmitted = sum(s.transmitted for s in statuses.values())
            done = transmitted + sum(s.suppressed for s in statuses.values())
            if all(s.queue_depth == 0 for s in statuses.values()) and done >= alerts * n * 0.99:
                break
        await asyncio.sleep(20.0 / scale)  # the last frames (and any late second copy) arrive
        wanted = {a.onair for a in sent}
        shown: Counter[str] = Counter()
        delivered = 0
        for h in HANDHELDS:
            texts = [d.text for d in hood.displays(h) if d.text in wanted]
            shown.update(texts)
            delivered += len(set(texts))
        air: float | None = None
        if isinstance(hood, FirmwareNeighborhood):
            onair = {t.encode() for t in wanted}
            air = sum(1 for r in relays for f in hood.originated(r) if f.payload in onair) / alerts
        return Result(
            transmitted / alerts,
            air,
            sum(shown.values()) / (alerts * len(HANDHELDS)),
            delivered / (alerts * len(HANDHELDS)),
        )
    finally:
        if site is not None:
            site.stop()
        if hood is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(hood.stop(), 30)
        broker.stop()


def _figures(n: int, backend: str, r: Result) -> list[Figure]:
    tag = f"backends.{backend}.relays{n}"
    out = [
        figure(
            f"{tag}_tx_per_alert",
            r.tx_per_alert,
            "frames",
            f"<= {GOAL_TX_PER_ALERT}",
            r.tx_per_alert <= GOAL_TX_PER_ALERT,
        ),
        figure(
            f"{tag}_displays_per_alert",
            r.displays_per_alert,
            "per handheld",
            "== 1.0",
            r.displays_per_alert == 1.0,
        ),
        figure(f"{tag}_delivered", r.delivered * 100, "%", "== 100 %", r.delivered == 1.0),
    ]
    if r.air_per_alert is not None:
        # What the firmware put on air must match what the relays claimed.
        out.append(
            figure(
                f"{tag}_on_air_per_alert",
                r.air_per_alert,
                "frames",
                "== tx_per_alert",
                abs(r.air_per_alert - r.tx_per_alert) < 1e-9,
            )
        )
    return out


async def _measure(sizes: tuple[int, ...], alerts: int) -> list[Figure]:
    try:
        firmware: Path | None = meshtasticd_binary()
    except MeshtasticdUnavailable as exc:
        print(f"real firmware not measured: {exc}")
        firmware = None
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="relayd-bench-backends-") as tmp:
        for n in sizes:
            rows = _figures(n, "sim", await _one(Path(tmp), n, alerts, None))
            if firmware is not None:
                rows += _figures(n, "firmware", await _one(Path(tmp), n, alerts, firmware))
            print_figures(f"{n} relays: model | real firmware", rows)
            figures += rows
    return figures


def run(sizes: tuple[int, ...] = (3, 5, 10), alerts: int = 4) -> list[Figure]:
    return asyncio.run(_measure(tuple(sizes), alerts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_backends")
    ap.add_argument("--sizes", type=int, nargs="+", default=[3, 5, 10])
    ap.add_argument("--alerts", type=int, default=4)
    args = ap.parse_args(argv)
    print_figures("backends", run(tuple(args.sizes), args.alerts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
