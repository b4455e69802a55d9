"""Benchmark: transmissions per alert with 3, 5 and 10 relays covering one area.

    python -m bench.bench_suppression [--sizes 3 5 10] [--alerts 20]

Each scenario is built in code: N relay radios (ROUTER_LATE, as relays are configured) and
three handhelds, every node hearing every other, lossless, at time scale 20, with N relay
daemons (subprocesses) on one real Mosquitto. A dispatcher publishes one alert per 8 s of
sim time. Counted from the relays' retained status once their queues are empty: frames the
relays put on air per alert, and how many times each handheld displayed each alert.
Baseline in the same run: the same relays with suppression off (naive forwarding: every
relay transmits every alert). Goal: <= 1.2 transmissions per alert for every N.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections import Counter
from pathlib import Path

from bench.common import Figure, figure, print_figures
from bench.rig import full_mesh_scenario
from relayd.core.jsonform import encode_alert
from relayd.core.model import Role, Severity
from relayd.testing.keys import make_network
from relayd.testing.mosquitto import MosquittoBroker
from tests.daemon.conftest import GENEROUS_LIMITS, Site, make_site_factory

GOAL_TX_PER_ALERT = 1.2
TIME_SCALE = 20.0
INTERVAL_S = 8.0 / TIME_SCALE  # one alert per 8 s of sim time
HANDHELDS = ("hh-a", "hh-b", "hh-c")


async def _one(work: Path, n: int, alerts: int, *, suppression: bool) -> tuple[float, float, float]:
    """(transmissions per alert, displays per alert per handheld, fraction delivered)."""
    relays = [f"relay-{i}" for i in range(n)]
    members = {"dispatcher": Role.DISPATCHER} | dict.fromkeys(relays, Role.RELAY)
    tag = f"{'trickle' if suppression else 'naive'}{n}"
    network = make_network(work / tag / "keys", members)
    broker = MosquittoBroker(work / tag / "mosquitto", extra_config="set_tcp_nodelay true")
    broker.start()
    site: Site | None = None
    try:
        factory = make_site_factory(work, network, broker)
        site = await factory(
            scenario=full_mesh_scenario(relays, list(HANDHELDS), name=tag),
            suppression=suppression,
            name=tag,
            time_scale=TIME_SCALE,
            extra=GENEROUS_LIMITS,
        )
        assert site is not None
        await site.wait_relays_ready(timeout_s=60)
        sent = [
            network.sign("dispatcher", f"Drill {i}: checkpoint at Elm & {i}th", severity=Severity.WARNING)
            for i in range(alerts)
        ]
        await site.publish_many(site.topic("outbox"), [encode_alert(a) for a in sent], delay_s=INTERVAL_S)
        transmitted = 0
        for _ in range(60):
            statuses = await site.statuses(settle_s=1.0)
            transmitted = sum(s.transmitted for s in statuses.values())
            done = transmitted + sum(s.suppressed for s in statuses.values())
            if all(s.queue_depth == 0 for s in statuses.values()) and done >= alerts * n * 0.99:
                break
        await asyncio.sleep(2)  # the last frames reach the handhelds
        wanted = {a.onair for a in sent}
        shown: Counter[str] = Counter()
        delivered = 0
        for h in HANDHELDS:
            texts = [d.text for d in site.hood.displays(h) if d.text in wanted]
            shown.update(texts)
            delivered += len(set(texts))
        return (
            transmitted / alerts,
            sum(shown.values()) / (alerts * len(HANDHELDS)),
            delivered / (alerts * len(HANDHELDS)),
        )
    finally:
        if site is not None:
            site.stop()
            await site.hood.stop()
        broker.stop()


async def _measure(sizes: tuple[int, ...], alerts: int) -> list[Figure]:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="relayd-bench-sup-") as tmp:
        for n in sizes:
            ours, ours_shown, ours_reach = await _one(Path(tmp), n, alerts, suppression=True)
            naive, naive_shown, naive_reach = await _one(Path(tmp), n, alerts, suppression=False)
            figures += [
                figure(
                    f"suppression.relays{n}_tx_per_alert",
                    ours,
                    "frames",
                    f"<= {GOAL_TX_PER_ALERT}",
                    ours <= GOAL_TX_PER_ALERT,
                ),
                figure(f"suppression.relays{n}_naive_tx_per_alert", naive, "frames"),
                figure(f"suppression.relays{n}_displays_per_alert", ours_shown, "per handheld"),
                figure(f"suppression.relays{n}_naive_displays_per_alert", naive_shown, "per handheld"),
                figure(
                    f"suppression.relays{n}_delivered", ours_reach * 100, "%", "== 100 %", ours_reach == 1.0
                ),
                figure(f"suppression.relays{n}_naive_delivered", naive_reach * 100, "%"),
            ]
            print_figures(f"{n} relays", figures[-6:])
    return figures


def run(sizes: tuple[int, ...] = (3, 5, 10), alerts: int = 20) -> list[Figure]:
    return asyncio.run(_measure(tuple(sizes), alerts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_suppression")
    ap.add_argument("--sizes", type=int, nargs="+", default=[3, 5, 10])
    ap.add_argument("--alerts", type=int, default=20)
    args = ap.parse_args(argv)
    print_figures("suppression", run(tuple(args.sizes), args.alerts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
