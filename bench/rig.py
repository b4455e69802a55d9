"""A measurement rig: a real Mosquitto, a simulated neighborhood and a relay run in-process.

The relay runs in the benchmark's own event loop so that timestamps on both sides of it
come from one clock (`time.perf_counter`): the moment a message is published and the moment
the simulated radio's firmware accepts the ToRadio packet (`SimRadio.originate`), or the
moment the medium delivers a frame to the radio (`SimRadio.on_delivery`) and the moment an
MQTT subscriber receives the relay's publication.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import aiomqtt

from relayd.daemon.config import load_config
from relayd.daemon.relay import Relay
from relayd.sim.medium import SendResult
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import LinkSpec, Role, Scenario, make_node
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork
from relayd.testing.mosquitto import MosquittoBroker

# Benchmarks send far more alerts per key than a real dispatcher may.
BENCH_LIMITS = """
[rate_limits.dispatcher]
burst = 1000000
per_minute = 1000000
[rate_limits.verifier]
burst = 1000000
per_minute = 1000000
"""


# As the shipped config/mosquitto/local.conf: Nagle off on the broker's client sockets.
BROKER_CONFIG = "set_tcp_nodelay true"


def bench_broker(workdir: Path) -> MosquittoBroker:
    broker = MosquittoBroker(workdir, extra_config=BROKER_CONFIG)
    broker.start()
    return broker


@contextlib.asynccontextmanager
async def mqtt_client(port: int) -> AsyncIterator[aiomqtt.Client]:
    """An aiomqtt client with TCP_NODELAY, like the relay's own link (paho leaves Nagle on)."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        sock = client._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        yield client


def full_mesh_scenario(relays: list[str], handhelds: list[str], *, name: str = "bench") -> Scenario:
    """Relay radios (ROUTER_LATE, TCP API) and handhelds that all hear each other, lossless."""
    nodes = [make_node(r, Role.RELAY, tcp_port=0, device_role="ROUTER_LATE") for r in relays]
    nodes += [make_node(h, Role.HANDHELD) for h in handhelds]
    links = tuple(LinkSpec(a.name, b.name, snr_db=6.0, rssi_dbm=-95) for a, b in combinations(nodes, 2))
    return Scenario(name=name, nodes=tuple(nodes), links=links)


@dataclass
class RadioTap:
    """Timestamps of what one simulated radio did, keyed by the text payload."""

    written: dict[str, float] = field(default_factory=dict)  # client packet accepted by firmware
    delivered: dict[str, float] = field(default_factory=dict)  # frame heard from the air

    def attach(self, hood: Neighborhood, radio_name: str) -> None:
        radio = hood.radios[radio_name]
        originate = radio.originate
        on_delivery = radio.on_delivery

        def tapped_originate(p: Any, *, keep_to_zero: bool = False) -> tuple[int, SendResult]:
            if p.HasField("decoded"):
                text = bytes(p.decoded.payload).decode("utf-8", "replace")
                self.written.setdefault(text, time.perf_counter())
            return originate(p, keep_to_zero=keep_to_zero)

        def tapped_delivery(d: Any) -> None:
            t = time.perf_counter()
            with contextlib.suppress(Exception):
                from meshtastic.protobuf import mesh_pb2  # noqa: PLC0415

                data = mesh_pb2.Data()
                data.ParseFromString(d.packet.data)
                self.delivered.setdefault(bytes(data.payload).decode("utf-8", "replace"), t)
            on_delivery(d)

        # Instance attributes shadow the methods; the firmware and the neighborhood call them
        # through the instance, so every packet passes the tap.
        # mypy refuses assigning over a method; the taps keep the methods' signatures.
        radio.originate = tapped_originate  # type: ignore[method-assign]
        radio.on_delivery = tapped_delivery  # type: ignore[method-assign]


def relay_config(
    workdir: Path,
    relay_id: str,
    network: TestNetwork,
    *,
    hood: Neighborhood,
    radio: str,
    broker: MosquittoBroker,
    time_scale: float,
    topic_root: str,
    suppression: bool = False,
    extra: str = "",
) -> Path:
    return write_relay_config(
        workdir,
        relay_id,
        network,
        radio_port=hood.endpoints[radio].tcp_port,
        broker_port=broker.port,
        time_scale=time_scale,
        suppression=suppression,
        topic_root=topic_root,
        extra=BENCH_LIMITS + extra,
    )


@contextlib.asynccontextmanager
async def inprocess_relay(config_path: Path, *, ready_timeout_s: float = 20.0) -> AsyncIterator[Relay]:
    """`relayd run` in this event loop; yields once radio and broker are connected."""
    relay = Relay(load_config(config_path))
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop), name=f"relay-{relay.config.relay_id}")
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not (relay.mqtt.connected and all(r.connected for r in relay.radios)):
            if task.done() or time.monotonic() > deadline:
                task.result() if task.done() else None
                raise TimeoutError("relay did not connect to its radio and broker")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # retained status/trust messages settle
        yield relay
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            task.cancel()


async def paced(n: int, interval_s: float, action: Callable[[int], Any]) -> None:
    """Call `action(i)` (sync or async) n times on a fixed schedule, `interval_s` apart."""
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i * interval_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        result = action(i)
        if asyncio.iscoroutine(result):
            await result


class Subscriber:
    """An MQTT subscriber that timestamps each message's `onair` on arrival."""

    def __init__(self, port: int, topic: str) -> None:
        self.port = port
        self.topic = topic
        self.received: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def _run(self) -> None:
        async with mqtt_client(self.port) as client:
            await client.subscribe(self.topic, qos=1)
            self._ready.set()
            async for msg in client.messages:
                t = time.perf_counter()
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    doc = json.loads(bytes(msg.payload))
                    self.received.setdefault(doc["onair"], t)

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval_s)
    return True
