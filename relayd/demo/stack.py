"""The demo's moving parts in one process: keys, broker, simulated radios and relay daemons.

Everything runs in **one asyncio event loop** (no child processes): the amqtt broker, the
simulated neighborhood and one `Relay` per relay radio, each with its own state directory
and SQLite file and with metrics off. That makes startup fast (no interpreter per relay),
Ctrl+C clean (one loop to stop), and "no process left behind" true by construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from relayd.core.model import Role
from relayd.core.topics import DEFAULT_ROOT, Topics
from relayd.daemon.config import load_config
from relayd.daemon.relay import Relay
from relayd.demo.broker import EmbeddedBroker
from relayd.errors import RelaydError
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import Role as SimRole
from relayd.sim.scenario import Scenario, load_scenario, parse_scenario
from relayd.testing.keys import TestNetwork, make_network

log = logging.getLogger("relayd.demo")

# Ten sim seconds per wall second: a 2.2 s LongFast frame takes 0.22 s, so an alert crosses
# the neighborhood in about a second while airtime, the firmware's 2 s text interval and the
# suppression slots all keep their real proportions.
DEFAULT_TIME_SCALE = 10.0
READY_TIMEOUT_S = 20.0
# Relays drain pending publishes for up to 3 s on shutdown (Relay._shutdown); then we cancel.
RELAY_STOP_TIMEOUT_S = 5.0
# The demo (and its scripted dispatcher) sends far more alerts per key than a real
# dispatcher may; the production defaults would rate-limit it.
GENEROUS_LIMITS = """
[rate_limits.dispatcher]
burst = 1000
per_minute = 1000

[rate_limits.relay]
burst = 1000
per_minute = 1000
"""


class DemoError(RelaydError):
    """The demo could not start; the message says what went wrong."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    broker_url: str | None = None  # None: embedded amqtt broker on a free loopback port
    scenario_path: Path | None = None  # None: the packaged three-relay neighborhood
    time_scale: float = DEFAULT_TIME_SCALE
    topic_root: str | None = None  # None: "relayd" (embedded) or a fresh "relayd-demo-XXXX"


def packaged_scenario() -> Scenario:
    """The three-relay, five-handheld neighborhood shipped in relayd/data/."""
    text = resources.files("relayd").joinpath("data/neighborhood.toml").read_text(encoding="utf-8")
    return parse_scenario(
        tomllib.loads(text), source="relayd/data/neighborhood.toml", default_name="neighborhood"
    )


def parse_broker_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise DemoError(f"--broker {url!r}: expected mqtt://HOST:PORT")
    try:
        port = parts.port or 1883
    except ValueError:
        raise DemoError(f"--broker {url!r} has an invalid port") from None
    return parts.hostname, port


@dataclass
class DemoStack:
    """``async with DemoStack(options) as stack:`` everything is up and connected."""

    options: DemoOptions = field(default_factory=DemoOptions)
    scenario: Scenario | None = None
    workdir: Path = field(init=False)
    network: TestNetwork = field(init=False)
    hood: Neighborhood = field(init=False)
    relays: dict[str, Relay] = field(init=False, default_factory=dict)
    broker_host: str = field(init=False, default="127.0.0.1")
    broker_port: int = field(init=False, default=0)
    topics: Topics = field(init=False)
    startup_s: float = field(init=False, default=0.0)
    ready_at: float = field(init=False, default=0.0)  # time.monotonic() when ready
    _tmp: tempfile.TemporaryDirectory[str] | None = field(init=False, default=None)
    _broker: EmbeddedBroker | None = field(init=False, default=None)
    _hood_started: bool = field(init=False, default=False)
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _tasks: dict[str, asyncio.Task[None]] = field(init=False, default_factory=dict)
    _suffix: str = field(init=False, default_factory=lambda: secrets.token_hex(3))

    # -- what the rest of the demo reads ------------------------------------------------

    @property
    def broker_url(self) -> str:
        return f"mqtt://{self.broker_host}:{self.broker_port}"

    @property
    def embedded_broker(self) -> bool:
        return self.options.broker_url is None

    @property
    def handhelds(self) -> list[str]:
        return [n.name for n in self.hood.scenario.nodes if n.role is SimRole.HANDHELD]

    @property
    def relay_names(self) -> list[str]:
        return [n.name for n in self.hood.scenario.nodes if n.role is SimRole.RELAY]

    def node_name(self, num: int) -> str | None:
        for node in self.hood.scenario.nodes:
            if node.num == num:
                return node.name
        return None

    def since_ready(self) -> float:
        return time.monotonic() - self.ready_at

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        t0 = time.monotonic()
        scenario = self.scenario
        if scenario is None:
            scenario = (
                load_scenario(self.options.scenario_path)
                if self.options.scenario_path is not None
                else packaged_scenario()
            )
        relay_names = [n.name for n in scenario.nodes if n.role is SimRole.RELAY]
        if not relay_names:
            raise DemoError(f"scenario {scenario.name!r} has no relay radio")
        self._tmp = tempfile.TemporaryDirectory(prefix="relayd-demo-")
        self.workdir = Path(self._tmp.name)
        members = {
            "dispatcher": Role.DISPATCHER,
            "dispatcher2": Role.DISPATCHER,
            "verifier": Role.VERIFIER,
            "reporter": Role.REPORTER,
            **dict.fromkeys(relay_names, Role.RELAY),
        }
        self.network = make_network(self.workdir / "keys", members)

        if self.options.broker_url is None:
            self._broker = EmbeddedBroker()
            await self._broker.start()
            self.broker_host, self.broker_port = "127.0.0.1", self._broker.port
            root = self.options.topic_root or DEFAULT_ROOT
        else:
            self.broker_host, self.broker_port = parse_broker_url(self.options.broker_url)
            # A shared broker may carry a real network's topics: stay out of its way.
            root = self.options.topic_root or f"relayd-demo-{self._suffix}"
        self.topics = Topics(root)

        self.hood = Neighborhood(scenario, time_scale=self.options.time_scale)
        await self.hood.start()
        self._hood_started = True

        for name in relay_names:
            config_path = self._write_relay_config(name, root)
            try:
                relay = Relay.load(load_config(config_path))
            except RelaydError as exc:
                raise DemoError(f"relay {name}: {exc}") from exc
            self.relays[name] = relay
            self._tasks[name] = asyncio.create_task(relay.run(self._stop), name=f"demo-relay-{name}")
        await self._wait_ready()
        self.ready_at = time.monotonic()
        self.startup_s = self.ready_at - t0
        log.info("demo ready in %.2f s", self.startup_s)

    def _write_relay_config(self, name: str, root: str) -> Path:
        endpoint = self.hood.endpoints[name]
        directory = self.workdir / "relays"
        directory.mkdir(parents=True, exist_ok=True)
        text = f"""\
[relay]
id = "{name}"
key = "{self.network.key_path(name)}"
state_dir = "{directory / (name + "-state")}"
status_interval = "5s"

[trust]
root = "{self.network.pub_path("root")}"
bundle = "{self.network.bundle_path}"

[[radio]]
name = "main"
device = "tcp://{endpoint.tcp_host}:{endpoint.tcp_port}"
time_scale = {self.options.time_scale}

[mqtt]
url = "mqtt://{self.broker_host}:{self.broker_port}"
topic_root = "{root}"
client_id = "relayd-demo-{self._suffix}-{name}"

[metrics]
listen = ""
{GENEROUS_LIMITS}
"""
        path = directory / f"{name}.toml"
        path.write_text(text)
        return path

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            failed = [name for name, task in self._tasks.items() if task.done()]
            if failed:
                task = self._tasks[failed[0]]
                exc = None if task.cancelled() else task.exception()
                raise DemoError(f"relay {failed[0]} stopped during startup: {exc!r}")
            if all(
                r.mqtt.connected and all(link.connected for link in r.radios) for r in self.relays.values()
            ):
                return
            if time.monotonic() > deadline:
                missing = [
                    n
                    for n, r in self.relays.items()
                    if not (r.mqtt.connected and all(link.connected for link in r.radios))
                ]
                raise DemoError(
                    f"relays {', '.join(missing)} not connected within {READY_TIMEOUT_S:.0f} s "
                    f"(broker {self.broker_url})"
                )
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop relays (they drain and publish "offline"), then the radios, then the broker."""
        self._stop.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks.values(), timeout=RELAY_STOP_TIMEOUT_S)
            for task in pending:
                task.cancel()
            for task in self._tasks.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._tasks.clear()
        if self._hood_started:
            self._hood_started = False
            await self.hood.stop()
        if self._broker is not None:
            broker, self._broker = self._broker, None
            with contextlib.suppress(Exception):
                await broker.stop()
        if self._tmp is not None:
            tmp, self._tmp = self._tmp, None
            tmp.cleanup()
