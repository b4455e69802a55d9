"""The chaos run: a stream of alerts through three relays while everything around them fails.

Shared by the CI test (test_chaos.py, CI_PLAN) and `relayd-bench chaos` (FULL_PLAN). The
neighborhood simulator (lossless links, so every loss is the relay's fault), two Mosquittos
bridged with the shipped config/mosquitto/bridge.conf -- a "city" broker where the
dispatcher publishes and a neighborhood broker that receives the outbox over the bridge --
and three relay processes. The bridge goes through a TCP proxy so the backhaul can be cut.

Where the relays attach: the three relays hear each other on RF, and docs/scaling.md has
relays that hear each other share a broker (suppression ranks a relay among the peers
whose status it receives; bridge.conf sends status only upward). So by default all three
are on the neighborhood broker. `split=True` puts relay-north and relay-center on the city
broker instead: relay-south then never learns of its RF neighbours and transmits at once,
in parallel with them -- the benchmark measures the duplicates that causes.

Faults, spread over the stream:

* broker restarts, alternating city and neighborhood broker;
* radio unplugs (the client link drops, the radio keeps receiving);
* `kill -9` of a relay, restarted a second later;
* one backhaul cut between the brokers (optionally with both brokers killed -9 during it);
* a full state disk on relay-south: RLIMIT_FSIZE set on the running process (prlimit),
  so every SQLite write fails with EFBIG; it must show in the relay's status
  `storage_error`, and the relay must keep relaying; then the limit is lifted.

Promise checked: every genuine alert is shown on every handheld exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from relayd.core.brokersave import parse_mosquitto_config
from relayd.core.jsonform import MalformedMessage
from relayd.core.model import Severity, SignedAlert
from relayd.core.status import parse_status
from relayd.sim.medium import SendResult
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import load_scenario
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork
from relayd.testing.mosquitto import MosquittoBroker, free_port
from tests.daemon.conftest import GENEROUS_LIMITS, NEIGHBORHOOD, Site
from tests.daemon.test_e2e_faults import lossless, publish_stream, stream

REPO = Path(__file__).resolve().parents[2]
BRIDGE_CONF = REPO / "config" / "mosquitto" / "bridge.conf"
LOCAL_CONF = REPO / "config" / "mosquitto" / "local.conf"
ROOT = "relayd"  # bridge.conf bridges relayd/...
RELAYS = ("relay-north", "relay-center", "relay-south")
SPLIT_CITY_RELAYS = ("relay-north", "relay-center")
DISK_FULL_RELAY = "relay-south"


@dataclass(frozen=True)
class ChaosPlan:
    alerts: int
    interval_s: float  # wall seconds between alerts (x time scale = sim seconds)
    time_scale: float
    broker_restarts: int
    unplugs: int
    kills: int
    cut_s: float  # wall seconds of backhaul cut
    disk_full_s: float
    down_s: float  # broker outage and radio unplug length, wall seconds
    settle_timeout_s: float
    split: bool = False  # relay-north/center on the city broker (see the module docstring)
    # kill -9 of both brokers in the middle of the backhaul cut, while each holds a queue
    # (the city: what the bridge has not fetched; the neighborhood: what it has not sent up).
    kill_brokers_in_cut: bool = False
    # false: the relays pace frames by the firmware's text interval only, not to the air
    # (`[airtime] pace_to_air`): the benchmark's baseline for on-air misses.
    pace_to_air: bool = True
    # Urgent alerts are the ones repeated late for handhelds that missed them
    # (relayd/core/repeat.py); `late_repeat` is the relays' setting ("off": none).
    severity: Severity = Severity.URGENT
    late_repeat: str = "urgent"


# One alert per 8 s of sim time, as test_e2e_faults: sustainable on a LongFast channel.
# x10 rather than x20: the same mesh load with twice the wall-clock margin for the relays'
# suppression slots, so CI on a busy 2-core machine measures the relay, not the scheduler.
CI_PLAN = ChaosPlan(60, 0.8, 10.0, 1, 1, 1, 8.0, 8.0, 4.0, 40.0)
# 225 alerts x 8 s = 30 sim minutes = 90 s of wall time at x20; the cut is 10 sim minutes.
FULL_PLAN = ChaosPlan(225, 0.4, 20.0, 5, 5, 3, 30.0, 15.0, 3.0, 150.0)


@dataclass
class ChaosReport:
    alerts: int
    handhelds: int
    missing: int = 0
    duplicates: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    storage_error_seen: bool = False
    storage_error_cleared: bool = False
    # Alerts that reached each broker's outbox (did a loss happen before any relay?).
    outbox_seen: dict[str, int] = field(default_factory=dict)
    lost_before_relays: list[int] = field(default_factory=list)
    # What the relays put on air (their radios' firmware accepted the packet), per alert:
    # the relay's own promises, separated from what the broker bridge and RF did.
    not_transmitted: list[int] = field(default_factory=list)  # reached the relays, never on air
    transmitted_twice: list[int] = field(default_factory=list)  # on air from two relays
    unexpected_exits: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # alert index -> handhelds that never showed it
    missed_by_alert: dict[int, int] = field(default_factory=dict)
    # What the air did (the simulator's counters over the whole run).
    half_duplex_misses: int = 0  # receptions missed because the receiver was transmitting
    queue_full_drops: int = 0  # frames (mostly rebroadcasts) dropped on a full transmit queue
    late_repeats: int = 0  # alerts the relays handed their radios again under the same id

    def _missed(self, alerts: list[int]) -> int:
        return sum(self.missed_by_alert.get(i, 0) for i in alerts)

    @property
    def missed_in_brokers(self) -> int:
        """(alert, handheld) deliveries lost before any relay: the broker bridge."""
        return self._missed(self.lost_before_relays)

    @property
    def missed_not_on_air(self) -> int:
        """Deliveries of alerts that reached the relays and never went on air."""
        return self._missed(self.not_transmitted)

    @property
    def missed_on_air(self) -> int:
        """Deliveries of alerts that went on air, missed by a handheld (the air's share)."""
        return self.missing - self.missed_in_brokers - self.missed_not_on_air


def relay_airtime(plan: ChaosPlan) -> str:
    """The relays' `[airtime]` table for this plan."""
    return f'[airtime]\npace_to_air = {str(plan.pace_to_air).lower()}\nlate_repeat = "{plan.late_repeat}"\n'


def shipped_autosave() -> str:
    """local.conf's save settings, as shipped: the rig's brokers save exactly as a Pi's would."""
    settings = parse_mosquitto_config(LOCAL_CONF.read_text().splitlines())
    on_changes = "true" if settings.autosave_on_changes else "false"
    return f"autosave_on_changes {on_changes}\nautosave_interval {settings.autosave_interval}"


def render_bridge(proxy_port: int) -> str:
    """bridge.conf as shipped, with the city address pointed at the proxy and fast retries."""
    replace = {
        "address": f"address 127.0.0.1:{proxy_port}",
        "restart_timeout": "restart_timeout 1 2",  # the city is back at once: no 5-60 s backoff
        "keepalive_interval": "keepalive_interval 5",
    }
    out = []
    for line in BRIDGE_CONF.read_text().splitlines():
        key = line.split(maxsplit=1)[0] if line.strip() and not line.lstrip().startswith("#") else ""
        out.append(replace.get(key, line))
    text = "\n".join(out) + "\n"
    if f"address 127.0.0.1:{proxy_port}" not in text:
        raise AssertionError(f"{BRIDGE_CONF} has no address directive to point at the proxy")
    return text


class Backhaul:
    """A TCP proxy standing in for the link between the brokers; `cut()` and `heal()` it."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()  # one per proxied connection

    async def heal(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.close()
        self._writers.clear()
        # Let each connection's pipes see the close and end, rather than be cancelled when the
        # loop shuts down (asyncio then logs the cancelled handler as an error).
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def _watch_outbox(port: int, seen: set[str], stop: asyncio.Event) -> None:
    """The on-air text of every outbox message on one broker (a persistent session)."""
    while not stop.is_set():
        try:
            async with aiomqtt.Client(
                "127.0.0.1", port, timeout=2, identifier=f"chaos-outbox-{port}", clean_session=False
            ) as client:
                await client.subscribe(f"{ROOT}/outbox", qos=1)
                async for msg in client.messages:
                    with contextlib.suppress(ValueError, TypeError, AttributeError):
                        seen.add(json.loads(bytes(msg.payload))["onair"])
        except aiomqtt.MqttError:
            await asyncio.sleep(0.3)


async def _watch_status(port: int, seen: dict[str, list[str | None]], stop: asyncio.Event) -> None:
    """Every status each relay publishes (storage_error included), across broker restarts."""
    while not stop.is_set():
        try:
            async with aiomqtt.Client("127.0.0.1", port, timeout=2) as client:
                await client.subscribe(f"{ROOT}/relays/+/status", qos=1)
                async for msg in client.messages:
                    with contextlib.suppress(MalformedMessage):
                        # Sealed by the relay; unwrapped (not verified) to read it here.
                        status = parse_status(bytes(msg.payload))
                        seen.setdefault(status.relay, []).append(status.storage_error)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.3)


def _tap_originate(hood: Neighborhood, radio_name: str) -> set[str]:
    """Texts the radio's firmware accepted from its client (the relay) for the air."""
    radio = hood.radios[radio_name]
    originate = radio.originate
    texts: set[str] = set()

    def tapped(p: Any, *, keep_to_zero: bool = False) -> tuple[int, SendResult]:
        if p.HasField("decoded"):
            texts.add(bytes(p.decoded.payload).decode("utf-8", "replace"))
        return originate(p, keep_to_zero=keep_to_zero)

    # An instance attribute shadows the method (mypy refuses assigning over one); same signature.
    radio.originate = tapped  # type: ignore[method-assign]
    return texts


def _set_fsize(pid: int, limit: int) -> None:
    # The soft limit only: lowering the hard limit could not be undone without CAP_SYS_RESOURCE.
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


async def run_chaos(workdir: Path, network: TestNetwork, plan: ChaosPlan) -> ChaosReport:
    started = time.monotonic()
    city = MosquittoBroker(workdir / "city", extra_config="set_tcp_nodelay true", autosave=shipped_autosave())
    city.start()
    backhaul = Backhaul(city.port)
    await backhaul.heal()
    local = MosquittoBroker(
        workdir / "local",
        extra_config="set_tcp_nodelay true\n" + render_bridge(backhaul.port),
        autosave=shipped_autosave(),
    )
    local.start()
    brokers = {"city": city, "local": local}
    scenario = lossless(load_scenario(NEIGHBORHOOD))
    hood = Neighborhood(scenario, time_scale=plan.time_scale, handheld_log_path=workdir / "handhelds.jsonl")
    await hood.start()
    on_air = {name: _tap_originate(hood, name) for name in RELAYS}
    site = Site(hood, city, network, workdir, root=ROOT)
    report = ChaosReport(plan.alerts, len(site.handhelds))
    stop_watch = asyncio.Event()
    statuses: dict[str, list[str | None]] = {}
    outboxes: dict[str, set[str]] = {name: set() for name in brokers}
    watchers = [asyncio.create_task(_watch_status(b.port, statuses, stop_watch)) for b in brokers.values()]
    watchers += [
        asyncio.create_task(_watch_outbox(b.port, outboxes[n], stop_watch)) for n, b in brokers.items()
    ]
    try:
        for name in RELAYS:
            port = city.port if plan.split and name in SPLIT_CITY_RELAYS else local.port
            site.configs[name] = write_relay_config(
                workdir / "relays",
                name,
                network,
                radio_port=hood.endpoints[name].tcp_port,
                broker_port=port,
                time_scale=plan.time_scale,
                topic_root=ROOT,
                extra=GENEROUS_LIMITS + relay_airtime(plan),
            )
            site.start_relay(name)
        await site.wait_relays_ready(timeout_s=30)
        alerts = stream(site, plan.alerts, "Chaos", plan.severity)
        duration = plan.alerts * plan.interval_s
        publisher = asyncio.create_task(publish_stream(site, alerts, delay_s=plan.interval_s))
        await _inject(site, brokers, backhaul, plan, duration=duration, report=report)
        await publisher
        # Wait for what can still arrive: alerts the bridge lost never reached a relay.
        reached = [a for a in alerts if a.onair in outboxes["local"]]
        await site.wait_displayed_everywhere(reached, timeout_s=plan.settle_timeout_s)
        await _repeats_done(site, plan)
        await asyncio.sleep(3)  # any late duplicate lands
        report.late_repeats = _repeats_handed(site)
        _count(site, alerts, report)
        air = hood.stats()
        report.half_duplex_misses = air.half_duplex_misses
        report.queue_full_drops = air.queue_full_drops
        report.outbox_seen = {name: len(seen) for name, seen in outboxes.items()}
        report.lost_before_relays = [i for i, a in enumerate(alerts) if a.onair not in outboxes["local"]]
        for i, a in enumerate(alerts):
            senders = sum(1 for texts in on_air.values() if a.onair in texts)
            if senders == 0 and i not in report.lost_before_relays:
                report.not_transmitted.append(i)
            if senders > 1:
                report.transmitted_twice.append(i)
        for name, relay in site.relays.items():
            if not relay.alive:
                report.unexpected_exits.append(name)
            report.tracebacks += [f"{name}: {tb}" for tb in relayd_tracebacks(relay.log_text())]
        errors = statuses.get(DISK_FULL_RELAY, [])
        first = next((i for i, e in enumerate(errors) if e), None)
        report.storage_error_seen = first is not None
        report.storage_error_cleared = first is not None and any(e is None for e in errors[first:])
    finally:
        stop_watch.set()
        for w in watchers:
            w.cancel()
        site.stop()
        await hood.stop()
        await backhaul.cut()
        local.stop()
        city.stop()
    report.seconds = time.monotonic() - started
    return report


async def _inject(
    site: Site,
    brokers: dict[str, MosquittoBroker],
    backhaul: Backhaul,
    plan: ChaosPlan,
    *,
    duration: float,
    report: ChaosReport,
) -> None:
    """Run the fault schedule: each kind spread evenly over the stream, offset from the others."""
    relays = ["relay-center", "relay-north", "relay-south"]
    events: list[tuple[float, str, str]] = []

    def spread(n: int, offset: float) -> list[float]:
        return [duration * (0.08 + offset + 0.8 * i / max(n, 1)) for i in range(n)]

    events += [
        (t, "broker", ("city", "local")[i % 2]) for i, t in enumerate(spread(plan.broker_restarts, 0.0))
    ]
    events += [(t, "unplug", relays[(i + 1) % 3]) for i, t in enumerate(spread(plan.unplugs, 0.05))]
    events += [(t, "kill", relays[i % 3]) for i, t in enumerate(spread(plan.kills, 0.1))]
    if plan.cut_s > 0:
        events.append((duration * 0.35, "cut", ""))
        events.append((duration * 0.35 + plan.cut_s, "heal", ""))
    if plan.kill_brokers_in_cut:
        events.append((duration * 0.35 + plan.cut_s / 2, "broker_kill", "city"))
        events.append((duration * 0.35 + plan.cut_s / 2 + 0.1, "broker_kill", "local"))
    if plan.disk_full_s > 0:
        events.append((duration * 0.1, "disk_full", DISK_FULL_RELAY))
        events.append((duration * 0.1 + plan.disk_full_s, "disk_ok", DISK_FULL_RELAY))
    t0 = time.monotonic()
    for at, kind, target in sorted(events):
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
        if kind == "broker":
            broker = brokers[target]
            broker.stop()
            await asyncio.sleep(plan.down_s)
            broker.start()
        elif kind == "broker_kill":
            broker = brokers[target]
            broker.kill()  # SIGKILL: only what it had saved survives
            await asyncio.sleep(0.5)
            broker.start()
        elif kind == "unplug":
            await site.hood.unplug(target, for_s=plan.down_s)
        elif kind == "kill":
            site.relays[target].kill()
            await asyncio.sleep(1.0)
            site.start_relay(target)
        elif kind == "cut":
            await backhaul.cut()
        elif kind == "heal":
            await backhaul.heal()
        elif kind == "disk_full":
            proc = site.relays[target].proc
            if proc is not None and proc.poll() is None:
                _set_fsize(proc.pid, 1)
        elif kind == "disk_ok":
            proc = site.relays[target].proc
            if proc is not None and proc.poll() is None:
                _set_fsize(proc.pid, resource.RLIM_INFINITY)
        if kind not in ("heal", "disk_ok"):
            report.faults[kind] += 1


def _repeats_handed(site: Site) -> int:
    return sum(r.log_text().count("for handhelds that missed it") for r in site.relays.values())


async def _repeats_done(site: Site, plan: ChaosPlan) -> None:
    """Until no relay has handed a late repeat for a minute of mesh time (each waits the
    longest flood, 19.7 s on LongFast), or settle_timeout_s: their copies have landed, so a
    repeat shown twice is counted."""
    quiet_s = 60.0 / plan.time_scale
    last, since = _repeats_handed(site), 0.0
    deadline = time.monotonic() + plan.settle_timeout_s
    while since < quiet_s and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = _repeats_handed(site)
        since = since + 0.5 if now == last else 0.0
        last = now


def relayd_tracebacks(log: str) -> list[str]:
    """Tracebacks in a relay's log that pass through relayd's own code.

    paho (under aiomqtt) asks the event loop to watch a socket the broker has just closed;
    asyncio logs that as "Exception in callback ... add_writer" with a traceback entirely in
    asyncio and selectors, and the link reconnects. That is library noise, not a relay fault.
    """
    blocks = log.split("Traceback (most recent call last):")[1:]
    return [b[:2000] for b in blocks if "/relayd/" in b.split("\n\n", 1)[0]]


def _count(site: Site, alerts: list[SignedAlert], report: ChaosReport) -> None:
    wanted = {a.onair for a in alerts}
    index = {a.onair: i for i, a in enumerate(alerts)}
    for handheld in site.handhelds:
        counts = Counter(d.text for d in site.hood.displays(handheld) if d.text in wanted)
        report.missing += len(wanted) - len(counts)
        for text in wanted - counts.keys():
            report.missed_by_alert[index[text]] = report.missed_by_alert.get(index[text], 0) + 1
        report.duplicates += sum(n - 1 for n in counts.values() if n > 1)
