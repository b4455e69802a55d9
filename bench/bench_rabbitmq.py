"""Benchmark: relayd on a 3-node RabbitMQ cluster (Debian's rabbitmq-server, on loopback).

    python -m bench.bench_rabbitmq

Three relays of the simulated neighborhood (lossless links), each attached to a different
node of the cluster; the dispatcher publishes on node 1. Phases: a stream of alerts; then the
node relay-center uses is stopped, alerts are published while it is down, the node is
started again and more alerts follow. Goal: every alert on every handheld exactly once.

Also probed, on the cluster and (baseline, same run) on one Mosquitto: whether a retained
message is delivered through a wildcard subscription, by its exact topic on the node it was
published to, and by its exact topic on another node. These are the broker features
docs/scaling.md states relayd depends on (or, for RabbitMQ, does without).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiomqtt

from bench.common import Figure, figure, print_figures
from relayd.core.jsonform import encode_alert
from relayd.core.model import SignedAlert
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import load_scenario
from relayd.testing.harness import RelayProcess, wait_until, write_relay_config
from relayd.testing.keys import TestNetwork, make_network
from relayd.testing.mosquitto import MosquittoBroker
from relayd.testing.rabbitmq import RabbitCluster
from tests.daemon.conftest import GENEROUS_LIMITS, NEIGHBORHOOD
from tests.daemon.test_e2e_faults import lossless

TIME_SCALE = 10.0
RELAY_NODE = {"relay-north": 0, "relay-center": 1, "relay-south": 2}


async def _retained_probe(publish_port: int, read_port: int, wildcard: bool, tag: str) -> bool:
    topic = f"relayd-probe/{tag}/x"
    async with aiomqtt.Client("127.0.0.1", publish_port, identifier=f"probe-pub-{tag}") as client:
        await client.publish(topic, b"kept", qos=1, retain=True)
    await asyncio.sleep(0.5)
    got = False
    async with aiomqtt.Client("127.0.0.1", read_port, identifier=f"probe-sub-{tag}") as client:
        await client.subscribe(f"relayd-probe/{tag}/+" if wildcard else topic, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                async for msg in client.messages:
                    got = msg.retain and bytes(msg.payload) == b"kept"
                    break
    async with aiomqtt.Client("127.0.0.1", publish_port, identifier=f"probe-clr-{tag}") as client:
        await client.publish(topic, b"", qos=1, retain=True)
    return got


async def _probes(ports: list[int], prefix: str) -> list[Figure]:
    first, other = ports[0], ports[1 % len(ports)]
    wildcard = await _retained_probe(first, first, True, prefix)
    exact = await _retained_probe(first, first, False, prefix + "e")
    elsewhere = await _retained_probe(first, other, False, prefix + "o")
    return [
        figure(f"{prefix}_retained_by_wildcard", int(wildcard), ""),
        figure(f"{prefix}_retained_by_exact_topic", int(exact), ""),
        figure(f"{prefix}_retained_on_another_node", int(elsewhere), ""),
    ]


def _stream(network: TestNetwork, n: int, tag: str) -> list[SignedAlert]:
    return [network.sign("dispatcher", f"{tag} {i}: patrol on Elm", lifetime_s=3600) for i in range(n)]


async def _publish(port: int, alerts: list[SignedAlert], delay_s: float) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-dispatcher") as client:
        for a in alerts:
            await client.publish("relayd/outbox", encode_alert(a), qos=1)
            await asyncio.sleep(delay_s)


async def _cluster_run(workdir: Path, network: TestNetwork, cluster: RabbitCluster) -> list[Figure]:
    ports = [n.mqtt_port for n in cluster.nodes]
    hood = Neighborhood(lossless(load_scenario(NEIGHBORHOOD)), time_scale=TIME_SCALE)
    await hood.start()
    relays: dict[str, RelayProcess] = {}
    try:
        for name, node in RELAY_NODE.items():
            config = write_relay_config(
                workdir / "relays",
                name,
                network,
                radio_port=hood.endpoints[name].tcp_port,
                broker_port=ports[node],
                time_scale=TIME_SCALE,
                extra=GENEROUS_LIMITS,
            )
            relays[name] = RelayProcess(config, workdir / f"{name}.log")
            relays[name].start()
        await asyncio.sleep(8)  # relays connect and exchange live statuses
        first = _stream(network, 10, "Before")
        down = _stream(network, 10, "NodeDown")
        after = _stream(network, 5, "After")
        await _publish(ports[0], first, 0.8)
        started = time.monotonic()
        center_node = cluster.nodes[RELAY_NODE["relay-center"]]
        await asyncio.to_thread(cluster.stop_node, center_node)
        await _publish(ports[0], down, 0.8)
        await asyncio.to_thread(cluster.start_node, center_node)
        restart_s = time.monotonic() - started
        await _publish(ports[0], after, 0.8)
        # relay-center back on its node (its reconnect backs off up to 30 s), then its catch-up.
        center = relays["relay-center"]

        def reconnected() -> bool:
            return center.log_text().count("INFO relayd.mqtt: broker 127.0.0.1") >= 2

        back = await asyncio.to_thread(wait_until, reconnected, 60.0)
        reconnect_s = time.monotonic() - started
        await asyncio.sleep(8)  # its catch-up, and the retained-status check's grace
        alerts = [*first, *down, *after]
        handhelds = [n.name for n in hood.scenario.nodes if n.role.value == "handheld"]
        wanted = {a.onair for a in alerts}

        def counts() -> dict[str, Counter[str]]:
            return {h: Counter(d.text for d in hood.displays(h) if d.text in wanted) for h in handhelds}

        await hood.wait_for(lambda: all(len(c) == len(wanted) for c in counts().values()), 90)
        await asyncio.sleep(4)
        final = counts()
        missing = sum(len(wanted) - len(c) for c in final.values())
        duplicates = sum(n - 1 for c in final.values() for n in c.values() if n > 1)
        logs = {name: r.log_text() for name, r in relays.items()}
        crashes = sum(1 for r in relays.values() if not r.alive) + sum(
            1 for t in logs.values() if "Traceback" in t
        )
        lost_retained = sum(t.count("did not return this relay's retained status") for t in logs.values())
        caught_up = sum(t.count("catch-up: an active alert this relay missed") for t in logs.values())
        total = len(alerts) * len(handhelds)
        return [
            figure("rabbitmq.alerts", len(alerts), "alerts"),
            figure("rabbitmq.node_restart_s", restart_s, "s"),
            figure("rabbitmq.center_back_on_broker_s", reconnect_s if back else float("nan"), "s"),
            figure("rabbitmq.missing_deliveries", missing, f"of {total}", "== 0", missing == 0),
            figure("rabbitmq.duplicate_displays", duplicates, "displays", "== 0", duplicates == 0),
            figure("rabbitmq.relay_crashes", crashes, "relays", "== 0", crashes == 0),
            figure("rabbitmq.catchup_alerts_taken", caught_up, "alerts"),
            figure("rabbitmq.lost_retained_warnings", lost_retained, "warnings"),
        ]
    finally:
        for r in relays.values():
            r.terminate()
        await hood.stop()


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="relayd-bench-rabbitmq-") as tmp:
        workdir = Path(tmp)
        network = make_network(workdir / "keys")
        t0 = time.monotonic()
        mosquitto = MosquittoBroker(workdir / "mosquitto")
        mosquitto.start()
        try:
            figures = asyncio.run(_probes([mosquitto.port], "mosquitto"))
        finally:
            mosquitto.stop()
        with RabbitCluster(workdir / "rabbit", nodes=3) as cluster:
            figures.append(figure("rabbitmq.cluster_start_s", time.monotonic() - t0, "s"))
            figures += asyncio.run(_probes([n.mqtt_port for n in cluster.nodes], "rabbitmq"))
            figures += asyncio.run(_cluster_run(workdir, network, cluster))
        figures.append(figure("rabbitmq.wall_s", time.monotonic() - t0, "s"))
    return figures


def main() -> int:
    print_figures("rabbitmq", run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
