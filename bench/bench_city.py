"""Benchmark: a city of separate RF clusters on one broker.

    python -m bench.bench_city [--clusters 1 3 10] [--warmup 4] [--alerts 6]

K clusters of 3 relay radios (ROUTER_LATE) and 2 handhelds each; inside a cluster every
node hears every other, between clusters nothing is heard. All 3K relays run in this event
loop on one real Mosquitto, as one city would share a broker. A dispatcher publishes one
alert at a time to the outbox and waits until every cluster has put it on air (or a
timeout). Measured per alert and cluster, from the simulated radios' firmware (`RadioTap`):
frames the cluster's relays put on air, and the time from the outbox publish to the
cluster's first frame (in simulated seconds, i.e. real LoRa time); and how many times each
handheld displayed each alert.

Baseline in the same run: the same city with `suppression.rank_among = "broker"`, the
design that ranks every relay among all online relays on the broker. Relays start with
empty state: each asks its radio to announce itself, and the first alert waits until every
relay has learned which peers share its air (`learned_neighbours_s`, timed). Figures are
given for the first alert, cold, and for the alerts after `--warmup` more.
Goals: <= 1.2 transmissions per alert per cluster; the slowest cluster within one
suppression slot of the fastest, whatever K; every handheld shows every alert once.

MQTT traffic (`traffic`): the MQTT messages the broker delivered to the relays per alert
(relay events, and all messages), against N = 3K relays (K = 1, 3, 6, 10: N = 3, 9, 18, 30),
counted by each relay's MQTT link over the alerts after the warm-up (in which the relays
learn which peers are apart). Relays subscribe to the events of their RF neighbours
only (relayd/core/eventscope.py); the baseline in the same run is the same city with every
relay subscribed to every relay's events (`relays/+/events`, the design before). Goal: the
scoped deliveries per alert grow about linearly with N (relays x neighbours), not with N².
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from bench.common import Figure, figure, print_figures
from bench.rig import RadioTap, bench_broker, inprocess_relay, mqtt_client, relay_config, wait_for
from relayd.core.airtime import LONG_FAST, MAX_DATA_PAYLOAD_BYTES, mesh_frame_time_on_air_s
from relayd.core.jsonform import encode_alert
from relayd.core.model import Role as KeyRole
from relayd.core.model import Severity
from relayd.core.suppression import Adjacency, adjacency
from relayd.daemon.relay import Relay
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import LinkSpec, Role, Scenario, make_node
from relayd.testing.keys import make_network

GOAL_TX_PER_ALERT = 1.2
TIME_SCALE = 20.0
RELAYS_PER_CLUSTER = 3
HANDHELDS_PER_CLUSTER = 2
ALERT_TIMEOUT_S = 40.0  # wall seconds for every cluster's first frame
LEARN_TIMEOUT_S = 10.0  # wall seconds for the relays to learn who shares their air
SETTLE_S = 1.0  # after the last cluster's first frame: the stragglers' frames and displays
# relay.SLOT_FRAMES max-size frames plus the default 1 s margin, in simulated seconds.
SLOT_S = 4 * mesh_frame_time_on_air_s(MAX_DATA_PAYLOAD_BYTES, LONG_FAST) + 1.0


def city_scenario(clusters: int) -> Scenario:
    nodes = []
    links = []
    for c in range(clusters):
        members = [
            make_node(f"c{c}-relay-{i}", Role.RELAY, tcp_port=0, device_role="ROUTER_LATE")
            for i in range(RELAYS_PER_CLUSTER)
        ]
        members += [make_node(f"c{c}-hh-{i}", Role.HANDHELD) for i in range(HANDHELDS_PER_CLUSTER)]
        nodes += members
        links += [LinkSpec(a.name, b.name, snr_db=6.0, rssi_dbm=-95) for a, b in combinations(members, 2)]
    return Scenario(name=f"city{clusters}", nodes=tuple(nodes), links=tuple(links))


@dataclass
class AlertResult:
    tx: list[int]  # per cluster: frames its relays put on air
    first_s: list[float]  # per cluster: outbox -> first frame, simulated seconds (nan: none)
    displays: list[int] = field(default_factory=list)  # per handheld: times shown


@dataclass
class CityResult:
    clusters: int
    scope: str
    alerts: list[AlertResult]
    delivered_per_alert: float = float("nan")  # MQTT messages delivered to the relays
    events_per_alert: float = float("nan")  # of which relay events
    # From every relay up to every relay knowing, for each peer, whether it shares its air
    # (simulated seconds; nan: not within the wait): the radios' announcements at start.
    learned_s: float = float("nan")


def _cluster_of(name: str) -> int:
    return int(name.split("-", 1)[0][1:])


async def run_city(
    work: Path, clusters: int, scope: str, alerts: int, *, events: str = "scoped", warmup: int = 0
) -> CityResult:
    """`events = "all"`: every relay subscribed to every relay's events (the old design)."""
    tag = f"{scope}{clusters}{events}"
    relays = [f"c{c}-relay-{i}" for c in range(clusters) for i in range(RELAYS_PER_CLUSTER)]
    handhelds = [f"c{c}-hh-{i}" for c in range(clusters) for i in range(HANDHELDS_PER_CLUSTER)]
    network = make_network(
        work / tag / "keys", {"dispatcher": KeyRole.DISPATCHER} | dict.fromkeys(relays, KeyRole.RELAY)
    )
    broker = bench_broker(work / tag / "mosquitto")
    hood = Neighborhood(city_scenario(clusters), time_scale=TIME_SCALE)
    await hood.start()
    taps = {r: RadioTap() for r in relays}
    for r, tap in taps.items():
        tap.attach(hood, r)
    results: list[AlertResult] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            running: list[Relay] = []
            for r in relays:
                path = relay_config(
                    work / tag / "relays",
                    r,
                    network,
                    hood=hood,
                    radio=r,
                    broker=broker,
                    time_scale=TIME_SCALE,
                    topic_root="city",
                    suppression=True,
                )
                text = path.read_text().replace(
                    "[suppression]\nenabled = true", f'[suppression]\nenabled = true\nrank_among = "{scope}"'
                )
                path.write_text(text)
                running.append(await stack.enter_async_context(inprocess_relay(path, ready_timeout_s=60)))
            if events == "all":
                for x in running:
                    x.mqtt.pin_subscriptions(
                        [*x.topics.relay_subscriptions(()), *x.sync.subscriptions, x.topics.events_wildcard]
                    )
            # Every relay has every peer's retained status (and radio node).
            await wait_for(lambda: all(len(x.peers) >= len(relays) - 1 for x in running), 20)
            # Then the first alert waits, as one does a few seconds after a fresh install, until
            # each relay has learned from its radio's announcement and its peers' statuses which
            # of them share its air: timed, not assumed.
            up = time.perf_counter()
            learned = await wait_for(lambda: _unclassified(running) == 0, LEARN_TIMEOUT_S)
            learned_s = (time.perf_counter() - up) * TIME_SCALE if learned else float("nan")
            client = await stack.enter_async_context(mqtt_client(broker.port))
            delivered_from = 0
            events_from = 0
            for i in range(alerts):
                if i == warmup:
                    delivered_from = sum(x.mqtt.delivered for x in running)
                    events_from = sum(x.mqtt.delivered_by_leaf["events"] for x in running)
                alert = network.sign(
                    "dispatcher", f"Drill {i}: checkpoint at Elm & {i}th", severity=Severity.URGENT
                )
                t0 = time.perf_counter()
                await client.publish("city/outbox", encode_alert(alert), qos=1)

                def first_frames(text: str = alert.onair) -> list[float]:
                    firsts = [float("nan")] * clusters
                    for r, tap in taps.items():
                        t = tap.written.get(text)
                        c = _cluster_of(r)
                        if t is not None and (math.isnan(firsts[c]) or t < firsts[c]):
                            firsts[c] = t
                    return firsts

                await wait_for(lambda: not any(math.isnan(f) for f in first_frames()), ALERT_TIMEOUT_S)
                await asyncio.sleep(SETTLE_S)
                firsts = first_frames()
                tx = [0] * clusters
                for r, tap in taps.items():
                    if alert.onair in tap.written:
                        tx[_cluster_of(r)] += 1
                displays = [sum(1 for d in hood.displays(h) if d.text == alert.onair) for h in handhelds]
                results.append(AlertResult(tx, [(f - t0) * TIME_SCALE for f in firsts], displays))
            measured = max(alerts - warmup, 1)
            delivered = (sum(x.mqtt.delivered for x in running) - delivered_from) / measured
            events_delivered = (
                sum(x.mqtt.delivered_by_leaf["events"] for x in running) - events_from
            ) / measured
    finally:
        await hood.stop()
        broker.stop()
    return CityResult(clusters, scope, results, delivered, events_delivered, learned_s)


def _unclassified(running: list[Relay]) -> int:
    """(relay, peer) pairs where the relay does not know yet whether the peer shares its air."""
    return sum(
        1
        for x in running
        for peer, _state in x.peers.items()
        if peer != x.config.relay_id and adjacency(peer, x.neighbours.memory()) is Adjacency.UNKNOWN
    )


def _figures(r: CityResult, warmup: int) -> list[Figure]:
    tag = f"city.k{r.clusters}.{r.scope}"
    steady = r.alerts[warmup:] or r.alerts
    cold = r.alerts[0]
    tx = [t for a in steady for t in a.tx]
    spread = [max(a.first_s) - min(a.first_s) for a in steady]
    slowest = [max(a.first_s) for a in steady]
    shown = [d for a in r.alerts for d in a.displays]
    ours = r.scope == "rf"
    return [
        figure(
            f"{tag}_tx_per_alert",
            statistics.mean(tx),
            "frames",
            f"<= {GOAL_TX_PER_ALERT}" if ours else None,
            statistics.mean(tx) <= GOAL_TX_PER_ALERT if ours else None,
        ),
        figure(f"{tag}_tx_per_alert_max", max(tx), "frames"),
        figure(f"{tag}_first_tx_fastest_s", statistics.mean(min(a.first_s) for a in steady), "s"),
        figure(f"{tag}_first_tx_slowest_s", statistics.mean(slowest), "s"),
        figure(f"{tag}_first_tx_slowest_max_s", max(slowest), "s"),
        figure(
            f"{tag}_first_tx_spread_s",
            max(spread),
            "s",
            f"<= {SLOT_S:.1f} (one slot)" if ours else None,
            max(spread) <= SLOT_S if ours else None,
        ),
        figure(f"{tag}_learned_neighbours_s", r.learned_s, "s"),
        figure(f"{tag}_cold_first_tx_slowest_s", max(cold.first_s), "s"),
        figure(f"{tag}_cold_tx_per_alert", statistics.mean(cold.tx), "frames"),
        figure(
            f"{tag}_shown_exactly_once",
            100.0 * sum(1 for d in shown if d == 1) / len(shown),
            "%",
            "== 100 %" if ours else None,
            all(d == 1 for d in shown) if ours else None,
        ),
        figure(f"{tag}_missed", sum(1 for d in shown if d == 0), "displays"),
        figure(f"{tag}_duplicated", sum(1 for d in shown if d > 1), "displays"),
    ]


async def _measure(sizes: tuple[int, ...], warmup: int, alerts: int) -> list[Figure]:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="relayd-bench-city-") as tmp:
        for k in sizes:
            for scope in ("rf", "broker"):
                result = await run_city(Path(tmp), k, scope, warmup + alerts)
                figures += _figures(result, warmup)
                print_figures(f"{k} clusters, rank among {scope}", figures[-12:])
    return figures


async def _measure_traffic(sizes: tuple[int, ...], warmup: int, alerts: int) -> list[Figure]:
    figures: list[Figure] = []
    scoped: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="relayd-bench-city-") as tmp:
        for k in sizes:
            n = k * RELAYS_PER_CLUSTER
            for events in ("scoped", "all"):
                r = await run_city(Path(tmp), k, "rf", warmup + alerts, events=events, warmup=warmup)
                figures += [
                    figure(f"city.traffic.n{n}.{events}_events_per_alert", r.events_per_alert, "msgs"),
                    figure(f"city.traffic.n{n}.{events}_delivered_per_alert", r.delivered_per_alert, "msgs"),
                ]
                if events == "scoped":
                    scoped[n] = r.events_per_alert
            print_figures(f"MQTT traffic, {n} relays", figures[-4:])
    if len(scoped) >= 2:
        # Per relay, the scoped event deliveries stay about flat when the city grows
        # (neighbours per relay are fixed at 2 here): the largest city within 2x of the
        # smallest. Statuses (retained, at most one per relay per STATUS_MIN_INTERVAL_S, and
        # needed from every relay to learn who is whose neighbour) are in the totals.
        per_relay = {n: d / n for n, d in scoped.items()}
        growth = per_relay[max(per_relay)] / per_relay[min(per_relay)]
        figures.append(
            figure("city.traffic.scoped_per_relay_growth", growth, "x", "<= 2 (linear in N)", growth <= 2.0)
        )
    return figures


def run(
    sizes: tuple[int, ...] = (1, 3, 10),
    warmup: int = 4,
    alerts: int = 6,
    traffic_sizes: tuple[int, ...] | None = None,
) -> list[Figure]:
    """The city figures; with `traffic_sizes` (cluster counts), the MQTT traffic instead."""
    if traffic_sizes is not None:
        return run_traffic(traffic_sizes, warmup, alerts)
    return asyncio.run(_measure(tuple(sizes), warmup, alerts))


def run_traffic(sizes: tuple[int, ...] = (1, 3, 6, 10), warmup: int = 6, alerts: int = 3) -> list[Figure]:
    return asyncio.run(_measure_traffic(tuple(sizes), warmup, alerts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_city")
    ap.add_argument("--clusters", type=int, nargs="+", default=[1, 3, 10])
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--alerts", type=int, default=6)
    ap.add_argument("--traffic", action="store_true", help="MQTT deliveries per alert against N instead")
    args = ap.parse_args(argv)
    if args.traffic:
        print_figures("city traffic", run_traffic(tuple(args.clusters), args.warmup, args.alerts))
        return 0
    print_figures("city", run(tuple(args.clusters), args.warmup, args.alerts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
