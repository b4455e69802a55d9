"""A small city on loopback: two real Mosquittos bridged with the shipped config/mosquitto/bridge.conf,
two simulated areas with no RF between them, and one relay daemon per area.

    area A: hh-a1, hh-a2 ))) relay-a --> city broker  (local.conf + ACL; dispatchers publish here)
                                              ^
                                              | bridge.conf (cleansession false, QoS 1, queue
                                              |  limits from local.conf), through a cuttable link
    area B: hh-b1, hh-b2 ))) relay-b --> neighborhood broker (local.conf + ACL + bridge.conf)

Both brokers run the shipped local.conf (listener, auth, ACL, persistence, queue limits) with only
paths, ports and secrets rewritten (tests/deploy/deploy_support.py). The bridge reaches the city
through `CuttableLink`, a TCP forwarder the test can cut and restore: a realistic outage of the
city link, where neither broker restarts and each relay stays connected to its own broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from relayd.core.jsonform import encode_alert
from relayd.core.model import Role as KeyRole
from relayd.core.model import SignedAlert
from relayd.core.status import LinkState, parse_event, parse_status
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import LinkSpec, Role, Scenario, make_node
from relayd.testing.harness import RelayProcess, write_relay_config
from relayd.testing.keys import TestNetwork, make_network
from tests.deploy.deploy_support import (
    ACL_EXAMPLE,
    BRIDGE_CONF,
    LOCAL_CONF,
    Broker,
    free_port,
    require_tool,
    rewrite_directives,
    run_as_current_user_directive,
    run_broker,
    write_password_file,
)

TIME_SCALE = 10.0
AREAS = {"a": ("relay-a", ("hh-a1", "hh-a2")), "b": ("relay-b", ("hh-b1", "hh-b2"))}
BRIDGE_STATE_TOPIC = "relayd/bridges/relayd-north/state"
# acl.example's example relays become this city's relays; every other user stays as shipped.
ACL_RENAMES = {"relay-example1": "relay-a", "relay-example2": "relay-b"}
USERS = ("admin", "dispatcher-example", "relay-a", "relay-b", "relayd-north-bridge")
READY_TIMEOUT_S = 30.0
# relay-a's suppression hold per rank (slot) gets this margin on top of four frames' airtime, so
# relay-b's "transmitted" event surely reaches relay-a while relay-a still holds the alert.
SUPPRESSION_MARGIN = '"10s"'


def city_scenario() -> Scenario:
    """Two areas, each a relay radio (ROUTER_LATE) and two handhelds, with no RF link between them."""
    nodes = []
    links = []
    for relay, handhelds in AREAS.values():
        nodes.append(make_node(relay, Role.RELAY, device_role="ROUTER_LATE", tcp_port=0))
        nodes += [make_node(h, Role.HANDHELD) for h in handhelds]
        links += [LinkSpec(relay, h, snr_db=6.0, rssi_dbm=-100) for h in handhelds]
        links.append(LinkSpec(handhelds[0], handhelds[1], snr_db=4.0, rssi_dbm=-105))
    return Scenario(name="city", nodes=tuple(nodes), links=tuple(links), collisions=False, seed=7)


class CuttableLink:
    """A TCP forwarder 127.0.0.1:port -> 127.0.0.1:target that can be cut and restored.

    `cut()` closes every forwarded connection and stops listening (the bridge's reconnects are
    refused), as a failed uplink would; `restore()` listens on the same port again.
    """

    def __init__(self, port: int, target_port: int) -> None:
        self.port = port
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.connections += 1
        self._writers |= {writer, up_writer}
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for w in (writer, up_writer):
            w.close()
            self._writers.discard(w)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def restore(self) -> None:
        await self.start()


def _render_broker(workdir: Path, passwords: dict[str, str], acl: Path) -> tuple[Path, int]:
    """The shipped local.conf with its listener, paths and include_dir moved into `workdir`."""
    port = free_port()
    (workdir / "data").mkdir(parents=True)
    (workdir / "conf.d").mkdir()
    password_file = workdir / "passwd"
    write_password_file(password_file, passwords)
    text = rewrite_directives(
        LOCAL_CONF.read_text(),
        {
            "listener": f"listener {port} 127.0.0.1",
            "persistence_location": f"persistence_location {workdir / 'data'}/",
            "password_file": f"password_file {password_file}",
            "acl_file": f"acl_file {acl}",
            "include_dir": f"include_dir {workdir / 'conf.d'}",
        },
        source=LOCAL_CONF,
    )
    config = workdir / "mosquitto.conf"
    config.write_text(text + run_as_current_user_directive())
    return config, port


def _render_acl(path: Path) -> Path:
    text = ACL_EXAMPLE.read_text()
    for old, new in ACL_RENAMES.items():
        # The user block and the relay's own relays/<id>/ topics in it.
        assert text.count(f"user {old}\n") == 1, f"acl.example no longer has user {old!r}"
        text = text.replace(old, new)
    path.write_text(text)
    return path


@dataclass
class Event:
    relay: str
    event: str
    alert_id: str
    at: float


@dataclass
class Collector:
    """Everything a broker carries on events and active topics, from when it subscribed."""

    events: list[Event] = field(default_factory=list)
    active: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    def transmitted(self, relay: str, alert: SignedAlert) -> list[Event]:
        return [
            e
            for e in self.events
            if e.relay == relay and e.event == "transmitted" and e.alert_id == alert.alert_id.hex()
        ]

    def active_from(self, relay: str, alert: SignedAlert) -> int:
        return sum(
            1
            for topic, doc in self.active
            if topic.endswith(alert.alert_id.hex()) and doc.get("relay") == relay
        )


@dataclass
class City:
    hood: Neighborhood
    network: TestNetwork
    city: Broker
    neighborhood: Broker
    link: CuttableLink
    relays: dict[str, RelayProcess]
    at_city: Collector = field(default_factory=Collector)
    at_neighborhood: Collector = field(default_factory=Collector)

    def handhelds(self, area: str) -> tuple[str, ...]:
        return AREAS[area][1]

    def shown(self, handheld: str, alert: SignedAlert) -> int:
        return sum(1 for d in self.hood.displays(handheld) if d.text == alert.onair)

    async def wait_shown(self, area: str, alert: SignedAlert, timeout_s: float) -> bool:
        return await self.hood.wait_for(
            lambda: all(self.shown(h, alert) >= 1 for h in self.handhelds(area)), timeout_s
        )

    async def dispatch(self, alert: SignedAlert) -> None:
        """A city dispatcher publishes a signed alert to the outbox on the city broker."""
        async with self.city.client("dispatcher-example") as client:
            await client.publish("relayd/outbox", encode_alert(alert), qos=1)

    async def wait_bridge_state(self, wanted: bytes, timeout_s: float = 15.0) -> None:
        async with self.city.client("admin") as admin:
            await admin.subscribe(BRIDGE_STATE_TOPIC, qos=1)
            async with asyncio.timeout(timeout_s):
                async for message in admin.messages:
                    if message.payload == wanted:
                        return

    def logs(self) -> str:
        parts = [f"--- {name} ---\n{relay.log_text()[-3000:]}" for name, relay in self.relays.items()]
        parts += [f"--- city broker ---\n{self.city.log()[-2000:]}"]
        parts += [f"--- neighborhood broker ---\n{self.neighborhood.log()[-2000:]}"]
        return "\n".join(parts)


async def _collect(broker: Broker, into: Collector, subscribed: asyncio.Event) -> None:
    async with broker.client("admin") as client:
        await client.subscribe("relayd/relays/+/events", qos=1)
        await client.subscribe("relayd/active/#", qos=1)
        subscribed.set()
        async for message in client.messages:
            raw = message.payload
            if not isinstance(raw, bytes | bytearray) or not raw:
                continue
            topic = message.topic.value
            if topic.startswith("relayd/active/"):
                if not message.retain:
                    into.active.append((topic, json.loads(raw)))
            else:
                ev = parse_event(bytes(raw))  # sealed by the relay; unwrapped, not verified, here
                into.events.append(Event(ev.relay, ev.event.value, ev.alert_id, time.monotonic()))


async def _wait_relays_ready(broker: Broker, relays: set[str]) -> None:
    """Until the broker holds a connected status from each relay (relay-b's crosses the bridge)."""
    ready: set[str] = set()
    async with broker.client("admin") as client:
        await client.subscribe("relayd/relays/+/status", qos=1)
        async with asyncio.timeout(READY_TIMEOUT_S):
            async for message in client.messages:
                status = parse_status(bytes(message.payload))
                if status.radio is LinkState.CONNECTED and status.broker is LinkState.CONNECTED:
                    ready.add(status.relay)
                if relays <= ready:
                    return


def _relay_config(
    workdir: Path, relay: str, *, network: TestNetwork, hood: Neighborhood, broker_port: int, password: str
) -> Path:
    password_file = workdir / f"{relay}.password"
    password_file.parent.mkdir(parents=True, exist_ok=True)
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    config = write_relay_config(
        workdir,
        relay,
        network,
        radio_port=hood.endpoints[relay].tcp_port,
        broker_port=broker_port,
        time_scale=TIME_SCALE,
    )
    text = config.read_text()
    for old, new in (
        # The shipped ACL's relay blocks are named after the relay id.
        ("[mqtt]\n", f'[mqtt]\nusername = "{relay}"\npassword_file = "{password_file}"\n'),
        (
            "[suppression]\nenabled = true\n",
            f"[suppression]\nenabled = true\nmargin = {SUPPRESSION_MARGIN}\n",
        ),
    ):
        assert old in text
        text = text.replace(old, new)
    config.write_text(text)
    return config


@contextlib.contextmanager
def _brokers(root: Path, link_port: int) -> Iterator[tuple[Broker, Broker]]:
    passwords = {user: secrets.token_urlsafe(12) for user in USERS}
    root.mkdir()
    acl = _render_acl(root / "relayd.acl")
    city_dir, hood_dir = root / "city", root / "neighborhood"
    city_config, city_port = _render_broker(city_dir, passwords, acl)
    hood_config, hood_port = _render_broker(hood_dir, passwords, acl)
    # The city side of a bridge is the forwarder, which the test starts once it knows city_port.
    (hood_dir / "conf.d" / "relayd-bridge.conf").write_text(
        rewrite_directives(
            BRIDGE_CONF.read_text(),
            {
                "address": f"address 127.0.0.1:{link_port}",
                "remote_password": f"remote_password {passwords['relayd-north-bridge']}",
                # Reconnect within a second or two in the test, not the shipped 5-60 s.
                "restart_timeout": "restart_timeout 1 2",
            },
            source=BRIDGE_CONF,
        )
    )
    with (
        run_broker(city_config, city_port, passwords, root / "city.log") as city,
        run_broker(hood_config, hood_port, passwords, root / "neighborhood.log") as hood,
    ):
        yield city, hood


@pytest.fixture
async def city(tmp_path: Path) -> AsyncIterator[City]:
    require_tool("mosquitto", "mosquitto")
    network = make_network(
        tmp_path / "keys",
        {"dispatcher": KeyRole.DISPATCHER, "relay-a": KeyRole.RELAY, "relay-b": KeyRole.RELAY},
    )
    # The forwarder's port must be known before the neighborhood broker's bridge config is
    # written, and the city broker's port before the forwarder starts: reserve, then start.
    link_port = free_port()
    with _brokers(tmp_path / "brokers", link_port) as (city_broker, hood_broker):
        link = CuttableLink(link_port, city_broker.port)
        await link.start()
        hood = Neighborhood(city_scenario(), time_scale=TIME_SCALE)
        await hood.start()
        relays: dict[str, RelayProcess] = {}
        tasks: list[asyncio.Task[None]] = []
        try:
            site = City(hood, network, city_broker, hood_broker, link, relays)
            await site.wait_bridge_state(b"1")
            for relay, broker in (("relay-a", city_broker), ("relay-b", hood_broker)):
                config = _relay_config(
                    tmp_path / "relays",
                    relay,
                    network=network,
                    hood=hood,
                    broker_port=broker.port,
                    password=broker.passwords[relay],
                )
                relays[relay] = RelayProcess(config, tmp_path / f"{relay}.log")
                relays[relay].start()
            # relay-b's status reaching the city proves the bridge carries it (status is "out").
            await _wait_relays_ready(city_broker, {"relay-a", "relay-b"})
            await _wait_relays_ready(hood_broker, {"relay-b"})
            for broker, collector in ((city_broker, site.at_city), (hood_broker, site.at_neighborhood)):
                subscribed = asyncio.Event()
                tasks.append(asyncio.create_task(_collect(broker, collector, subscribed)))
                async with asyncio.timeout(5):
                    await subscribed.wait()
            yield site
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for process in relays.values():
                process.terminate()
            await hood.stop()
            await link.cut()
            for name, process in relays.items():
                if "Traceback" in process.log_text():
                    print(f"--- {name} log ---\n{process.log_text()[-4000:]}")
