"""End-to-end fixtures: a simulated neighborhood, a real broker, and relay daemons."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, Protocol

import aiomqtt
import pytest

from relayd.core.jsonform import MalformedMessage
from relayd.core.model import Role, SignedAlert
from relayd.core.status import LinkState, RelayStatus, parse_status
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import Scenario, load_scenario
from relayd.testing.harness import RelayProcess, write_relay_config
from relayd.testing.keys import TestNetwork
from relayd.testing.mosquitto import MosquittoBroker

REPO = Path(__file__).resolve().parents[2]
NEIGHBORHOOD = REPO / "config" / "sim" / "neighborhood.toml"
ONE_RELAY = REPO / "config" / "sim" / "one-relay.toml"
TIME_SCALE = 10.0
# Test streams send far more alerts per key than a real dispatcher may.
GENEROUS_LIMITS = """
[rate_limits.dispatcher]
burst = 10000
per_minute = 100000
"""


@dataclass
class Site:
    """A running neighborhood: simulator, broker, relays, and the test's MQTT client."""

    hood: Neighborhood
    broker: MosquittoBroker
    network: TestNetwork
    workdir: Path
    root: str = "relayd"
    relays: dict[str, RelayProcess] = field(default_factory=dict)
    configs: dict[str, Path] = field(default_factory=dict)

    @property
    def handhelds(self) -> list[str]:
        return [n.name for n in self.hood.scenario.nodes if n.role.value == "handheld"]

    def start_relay(self, name: str) -> None:
        self.relays[name] = RelayProcess(self.configs[name], self.workdir / f"{name}.log")
        self.relays[name].start()

    def topic(self, leaf: str) -> str:
        return f"{self.root}/{leaf}"

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        async with aiomqtt.Client("127.0.0.1", self.broker.port) as client:
            await client.publish(topic, payload, qos=1, retain=retain)

    async def publish_many(self, topic: str, payloads: list[bytes], delay_s: float = 0.0) -> None:
        async with aiomqtt.Client("127.0.0.1", self.broker.port) as client:
            for payload in payloads:
                await client.publish(topic, payload, qos=1)
                if delay_s:
                    await asyncio.sleep(delay_s)

    def displayed(self, handheld: str, alert: SignedAlert) -> int:
        return sum(1 for d in self.hood.displays(handheld) if d.text == alert.onair)

    def missed(self, alerts: list[SignedAlert]) -> dict[str, list[str]]:
        """For each handheld, the alerts it never showed (first words of each)."""
        out = {h: [a.onair[:24] for a in alerts if self.displayed(h, a) == 0] for h in self.handhelds}
        return {h: texts for h, texts in out.items() if texts}

    def missed_not_by_the_air(self, alerts: list[SignedAlert]) -> dict[str, list[str]]:
        """The misses the air does not explain: alerts a handheld never showed although it lost no
        copy of them on the air (to its own transmitting, an overlap or link loss). A relay that
        never put an alert on air, or put it where a handheld could not hear it, shows up here."""
        out: dict[str, list[str]] = {}
        for handheld in self.handhelds:
            lost = self.hood.texts_lost_on_air(handheld)
            unexplained = [
                a.onair[:24] for a in alerts if self.displayed(handheld, a) == 0 and a.onair not in lost
            ]
            if unexplained:
                out[handheld] = unexplained
        return out

    async def wait_displayed_everywhere(self, alerts: list[SignedAlert], timeout_s: float) -> bool:
        def done() -> bool:
            return all(self.displayed(h, a) >= 1 for h in self.handhelds for a in alerts)

        return await self.hood.wait_for(done, timeout_s)

    async def wait_relays_ready(self, timeout_s: float = 20.0) -> None:
        """Until every relay's retained status says radio and broker are connected."""
        seen: dict[str, RelayStatus] = {}
        async with aiomqtt.Client("127.0.0.1", self.broker.port) as client:
            await client.subscribe(f"{self.root}/relays/+/status", qos=1)
            async with asyncio.timeout(timeout_s):
                async for msg in client.messages:
                    try:
                        status = parse_status(bytes(msg.payload))
                    except MalformedMessage:
                        continue  # a test's hostile payload, not a relay
                    seen[status.relay] = status
                    if all(
                        r in seen
                        and seen[r].radio is LinkState.CONNECTED
                        and seen[r].broker is LinkState.CONNECTED
                        for r in self.relays
                    ):
                        return

    async def statuses(self, settle_s: float = 1.5) -> dict[str, RelayStatus]:
        """The relays' retained status messages (after letting fresh ones arrive)."""
        await asyncio.sleep(settle_s)
        out: dict[str, RelayStatus] = {}
        async with aiomqtt.Client("127.0.0.1", self.broker.port) as client:
            await client.subscribe(f"{self.root}/relays/+/status", qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    async for msg in client.messages:
                        with contextlib.suppress(MalformedMessage):
                            status = parse_status(bytes(msg.payload))
                            out[status.relay] = status
        return out

    async def collect(self, topic: str, duration_s: float) -> list[bytes]:
        """Messages on `topic` (retained ones included) during `duration_s`."""
        got: list[bytes] = []
        async with aiomqtt.Client("127.0.0.1", self.broker.port) as client:
            await client.subscribe(topic, qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration_s):
                    async for msg in client.messages:
                        got.append(bytes(msg.payload))
        return got

    def stop(self) -> None:
        for relay in self.relays.values():
            relay.terminate()


Args = ParamSpec("Args")


class SiteFactory(Protocol):
    """What `site_factory` hands a test: it builds a `Site`, starting its relays unless told not to."""

    def __call__(
        self,
        scenario_path: Path = ...,
        *,
        suppression: bool = ...,
        start: bool = ...,
        extra: str = ...,
        name: str = ...,
        time_scale: float = ...,
        scenario: Scenario | None = ...,
    ) -> Awaitable[Site]: ...


def make_site_factory(tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker) -> SiteFactory:
    async def factory(
        scenario_path: Path = NEIGHBORHOOD,
        *,
        suppression: bool = True,
        start: bool = True,
        extra: str = GENEROUS_LIMITS,
        name: str = "site",
        time_scale: float = TIME_SCALE,
        scenario: Scenario | None = None,
    ) -> Site:
        scenario = scenario or load_scenario(scenario_path)
        workdir = tmp_path / name
        hood = Neighborhood(scenario, time_scale=time_scale, handheld_log_path=workdir / "handhelds.jsonl")
        await hood.start()
        site = Site(hood, mosquitto, network, workdir, root=name)
        for node in scenario.nodes:
            if node.role.value != "relay":
                continue
            if node.name not in network.identities:
                network.add_member(node.name, Role.RELAY)
            endpoint = hood.endpoints[node.name]
            site.configs[node.name] = write_relay_config(
                workdir / "relays",
                node.name,
                network,
                radio_port=endpoint.tcp_port,
                broker_port=mosquitto.port,
                time_scale=time_scale,
                suppression=suppression,
                topic_root=name,
                extra=extra,
            )
            if start:
                site.start_relay(node.name)
        return site

    return factory


def _recording(inner: Callable[Args, Awaitable[Site]], sites: list[Site]) -> Callable[Args, Awaitable[Site]]:
    """`inner`, with the same parameters, noting each site it builds so the fixture can stop it."""

    async def factory(*args: Args.args, **kwargs: Args.kwargs) -> Site:
        site = await inner(*args, **kwargs)
        sites.append(site)
        return site

    return factory


@pytest.fixture
async def site_factory(
    tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker
) -> AsyncIterator[SiteFactory]:
    sites: list[Site] = []
    yield _recording(make_site_factory(tmp_path, network, mosquitto), sites)
    for site in sites:
        site.stop()
        await asyncio.wait_for(site.hood.stop(), 15)
        for name, relay in site.relays.items():
            if "Traceback" in relay.log_text():
                print(f"--- {name} log ---\n{relay.log_text()[-4000:]}")


_DAEMON_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests (relay daemons as subprocesses on a simulated neighborhood) are
    marked slow: `-m "not slow"` leaves the fast tests of the relay's own parts."""
    for item in items:
        if _DAEMON_TESTS not in item.path.parents:
            continue
        uses_site = "site_factory" in getattr(item, "fixturenames", ())
        if uses_site or item.path.name.startswith("test_e2e_"):
            item.add_marker(pytest.mark.slow)
