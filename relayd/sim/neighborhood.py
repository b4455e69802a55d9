"""The running simulated neighborhood: radios, their API endpoints, and the medium's clock.

`Neighborhood` is the only place where the pure medium meets asyncio. It maps sim time to wall
time with a time scale (10 = ten times faster than real time; 0 = as fast as possible, sim
time jumps from event to event and never sleeps) and dispatches what the medium reports to the
radios' firmware.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from google.protobuf.message import DecodeError
from meshtastic.protobuf import mesh_pb2

from relayd.core.catchup import BOOT_ANNOUNCE_S  # the firmware's NodeInfo after a boot
from relayd.meshapi.packets import BROADCAST_NUM, TEXT_MESSAGE_APP, node_id
from relayd.sim.firmware import DisplayedMessage, SimRadio
from relayd.sim.medium import (
    AirPacket,
    Delivery,
    EchoHeard,
    FloodingMode,
    LinkQuality,
    Medium,
    MediumEvent,
    MediumStats,
    SendResult,
    TimerFired,
    Topology,
    Transmitted,
)
from relayd.sim.scenario import Role, Scenario, ScriptedMessage
from relayd.sim.transport import PtyApiPort, TcpApiServer

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEFAULT_REBOOT_S = 2.0
# At time scale 0 the driver yields to the event loop every this many medium steps so that
# sockets and ptys stay serviced during a long run.
_STEPS_PER_YIELD = 256


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    num: int
    node_id: str
    role: Role
    tcp_host: str | None
    tcp_port: int | None
    pty_path: str | None

    def describe(self) -> str:
        parts = [f"{self.name:<14} {self.node_id} {self.role.value:<8}"]
        if self.tcp_port is not None:
            parts.append(f"tcp {self.tcp_host}:{self.tcp_port}")
        if self.pty_path is not None:
            parts.append(f"pty {self.pty_path}")
        if self.tcp_port is None and self.pty_path is None:
            parts.append("(no client API)")
        return "  ".join(parts)


def build_medium(scenario: Scenario, *, flooding: FloodingMode = FloodingMode.MANAGED) -> Medium:
    """The medium for a scenario (also used directly by tests and benchmarks)."""
    links: dict[tuple[str, str], LinkQuality] = {}
    for link in scenario.links:
        q = LinkQuality(link.snr_db, link.rssi_dbm, link.loss)
        links[(link.a, link.b)] = q
        if link.bidirectional:
            links[(link.b, link.a)] = q
    medium = Medium(
        {n.name: n.num for n in scenario.nodes},
        Topology(links),
        preset=scenario.preset,
        seed=scenario.seed,
        collisions=scenario.collisions,
        flooding=flooding,
        relay_origin_copies=scenario.relay_origin_copies,
    )
    for node in scenario.nodes:
        if node.device_role == "ROUTER_LATE":
            medium.set_router_late(node.name)
    return medium


class Neighborhood:
    """``async with Neighborhood(scenario, time_scale=10) as hood: ...``"""

    def __init__(
        self,
        scenario: Scenario,
        *,
        time_scale: float = 1.0,
        handheld_log_path: str | Path | None = None,
        flooding: FloodingMode = FloodingMode.MANAGED,
        link_dir: str | Path | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if time_scale < 0:
            raise ValueError("time_scale must be >= 0 (0 = as fast as possible)")
        self.scenario = scenario
        self.time_scale = time_scale
        self.medium = build_medium(scenario, flooding=flooding)
        self._wall_clock = wall_clock
        self._log_path = Path(handheld_log_path) if handheld_log_path else None
        self._log_file: IO[str] | None = None
        self._link_dir_arg = Path(link_dir) if link_dir else None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.radios: dict[str, SimRadio] = {
            n.name: SimRadio(n, scenario, self, wall_clock=wall_clock, on_display=self._on_display)
            for n in scenario.nodes
        }
        self._tcp: dict[str, TcpApiServer] = {}
        self._pty: dict[str, PtyApiPort] = {}
        self._timers: dict[int, ScriptedMessage] = {}
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._wake = asyncio.Event()
        self._driver: asyncio.Task[None] | None = None
        self._aux: set[asyncio.Task[None]] = set()
        self._mono0 = 0.0
        self._dispatching = False
        self._changed = asyncio.Event()
        self.endpoints: dict[str, Endpoint] = {}
        # Called with every frame that goes on air (tests and probes watch the air with it).
        self.on_air: list[Callable[[Transmitted], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._link_dir_arg is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="relayd-sim-")
            link_dir = Path(self._tmpdir.name)
        else:
            link_dir = self._link_dir_arg
            link_dir.mkdir(parents=True, exist_ok=True)
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self._log_path.open("a", encoding="utf-8")
        for spec in self.scenario.nodes:
            radio = self.radios[spec.name]
            if spec.tcp_port is not None:
                srv = TcpApiServer(radio, LOOPBACK, spec.tcp_port)
                await srv.start()
                self._tcp[spec.name] = srv
            if spec.pty:
                port = PtyApiPort(radio, link_dir)
                await port.start()
                self._pty[spec.name] = port
        for spec in self.scenario.nodes:
            tcp = self._tcp.get(spec.name)
            pty = self._pty.get(spec.name)
            self.endpoints[spec.name] = Endpoint(
                name=spec.name,
                num=spec.num,
                node_id=node_id(spec.num),
                role=spec.role,
                tcp_host=LOOPBACK if tcp else None,
                tcp_port=tcp.port if tcp else None,
                pty_path=str(pty.path) if pty else None,
            )
        for msg in self.scenario.messages:
            self._timers[self.medium.schedule_timer(msg.at_s)] = msg
        self._mono0 = time.monotonic()
        self._driver = asyncio.create_task(self._drive(), name="sim-medium-driver")

    async def stop(self) -> None:
        for t in list(self._aux):
            t.cancel()
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
            self._driver = None
        for radio in self.radios.values():
            if radio.session is not None:
                radio.session.close()
        for srv in self._tcp.values():
            await srv.stop()
        for port in self._pty.values():
            await port.stop()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    # -- clock / driver ----------------------------------------------------------------------------

    def sim_now_s(self) -> float:
        if self.time_scale == 0:
            return self.medium.now_s
        return max(self.medium.now_s, (time.monotonic() - self._mono0) * self.time_scale)

    def _catch_up(self) -> None:
        if self._dispatching:
            return
        target = self.sim_now_s()
        while True:
            nxt = self.medium.next_event_time()
            if nxt is None or nxt > target:
                break
            self._dispatch(self.medium.step())
        self.medium.advance_to(target)

    async def _drive(self) -> None:
        while True:
            self._wake.clear()
            if self.time_scale == 0:
                steps = 0
                while self.medium.next_event_time() is not None:
                    self._dispatch(self.medium.step())
                    steps += 1
                    if steps % _STEPS_PER_YIELD == 0:
                        await asyncio.sleep(0)
                await self._wake.wait()
                continue
            self._catch_up()
            nxt = self.medium.next_event_time()
            timeout = None if nxt is None else max(0.0, (nxt - self.sim_now_s()) / self.time_scale)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _dispatch(self, events: list[MediumEvent]) -> None:
        self._dispatching = True
        try:
            for ev in events:
                if isinstance(ev, Delivery):
                    self.radios[ev.node].on_delivery(ev)
                elif isinstance(ev, EchoHeard):
                    self.radios[ev.node].on_echo(ev.packet_id)
                elif isinstance(ev, TimerFired):
                    self._run_script(ev.token)
                elif isinstance(ev, Transmitted):
                    for listener in self.on_air:
                        listener(ev)
        finally:
            self._dispatching = False
        if events:
            self._changed.set()

    def _run_script(self, token: int) -> None:
        callback = self._callbacks.pop(token, None)
        if callback is not None:
            callback()
            return
        msg = self._timers.pop(token, None)
        if msg is None:
            return
        to = self.scenario.node(msg.to).num if msg.to else None
        self.radios[msg.sender].send_text(msg.text, channel_index=msg.channel_index, to=to)

    # -- MeshPort (used by the radios) -------------------------------------------------------------

    def transmit(self, node: str, packet: AirPacket) -> SendResult:
        self._catch_up()
        res = self.medium.send(node, packet)
        self._wake.set()
        return res

    def tx_queue_free(self, node: str) -> int:
        return self.medium.tx_queue_free(node)

    def call_at(self, at_s: float, fn: Callable[[], None]) -> None:
        self._callbacks[self.medium.schedule_timer(at_s)] = fn
        self._wake.set()

    # -- public API --------------------------------------------------------------------------------

    def node_num(self, name: str) -> int:
        return self.scenario.node(name).num

    def radio(self, name: str) -> SimRadio:
        return self.radios[name]

    def displays(self, name: str) -> list[DisplayedMessage]:
        return list(self.radios[name].displays)

    def handheld_send(
        self,
        name: str,
        text: str,
        channel_index: int = 0,
        to: str | int | None = None,
        *,
        reply_id: int = 0,
        emoji: bool = False,
    ) -> int:
        """A person types `text` on `name` and presses send (broadcast, or DM to a node); with
        `reply_id`, as the app's reply (or, with `emoji`, tapback) to the message under that id."""
        to_num: int | None
        if to is None:
            to_num = None
        elif isinstance(to, int):
            to_num = to
        else:
            to_num = self.node_num(to)
        if not 0 <= channel_index < len(self.scenario.channels):
            raise ValueError(f"channel index {channel_index} out of range")
        packet_id, res = self.radios[name].send_text(
            text, channel_index=channel_index, to=to_num, reply_id=reply_id, emoji=emoji
        )
        if res is not SendResult.QUEUED:
            raise RuntimeError(f"{name}: radio did not accept the message ({res.name})")
        return packet_id

    async def unplug(self, name: str, for_s: float) -> None:
        """Pull the radio's cable: the client link drops, reconnects are refused for `for_s`
        wall seconds. The radio stays on (battery): it keeps receiving into its to-phone queue."""
        radio = self.radios[name]
        if radio.session is not None:
            radio.session.close()
        await self._unplug_transports(name)
        self._later(for_s, self._replug_transports(name), f"replug-{name}")

    def switch(self, name: str, *, on: bool) -> None:
        """A person switches a handheld off (it hears nothing) or on again, after long enough
        that its firmware announces the boot: a NodeInfo broadcast 30 s in."""
        self._catch_up()
        self.medium.set_enabled(name, on)
        if on:
            radio = self.radios[name]
            radio.forget_nodeinfo_sent()  # off long enough: its last NodeInfo is history
            self._announce_boot(name)
        self._wake.set()

    def _announce_boot(self, name: str) -> None:
        radio = self.radios[name]

        def announce() -> None:
            if self.medium.is_enabled(name):  # not switched off again meanwhile
                radio.boot_announcement()

        self.call_at(self.sim_now_s() + BOOT_ANNOUNCE_S, announce)

    async def reboot(self, name: str, down_s: float = DEFAULT_REBOOT_S) -> None:
        """Reboot the radio: off the air and off the API for `down_s` wall seconds; the next
        client connection first receives FromRadio.rebooted."""
        radio = self.radios[name]
        radio.power_cycle()
        self._catch_up()
        self.medium.set_enabled(name, False)
        await self._unplug_transports(name)

        async def come_back() -> None:
            self._catch_up()
            self.medium.set_enabled(name, True)
            self._announce_boot(name)
            await self._replug_transports(name)

        self._later(down_s, come_back(), f"reboot-{name}")

    def stats(self) -> MediumStats:
        self._catch_up()
        return self.medium.stats()

    def texts_lost_on_air(self, name: str) -> dict[str, str]:
        """Text messages `name` was in range of but lost every copy of on the air, and why.

        How a test tells the air's misses (half duplex, overlap, link loss) from a relay's: a
        text a relay never put on air, or put where `name` could not hear it, is not here.
        """
        self._catch_up()
        lost: dict[str, str] = {}
        for loss in self.medium.air_losses(name):
            data = mesh_pb2.Data()
            try:
                data.ParseFromString(loss.packet.data)
            except DecodeError:
                continue
            if data.portnum == TEXT_MESSAGE_APP:
                lost.setdefault(bytes(data.payload).decode("utf-8", errors="replace"), loss.reason.value)
        return lost

    def summary(self) -> str:
        return format_summary(
            self.stats(), {n: len(r.displays) for n, r in self.radios.items() if r.spec.role is Role.HANDHELD}
        )

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (wall time) until `predicate()` holds after some medium activity."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))
        return True

    # -- internals ---------------------------------------------------------------------------------

    def _later(self, delay_s: float, coro: Coroutine[object, object, None], name: str) -> None:
        async def run() -> None:
            await asyncio.sleep(delay_s)
            await coro

        task = asyncio.create_task(run(), name=name)
        self._aux.add(task)
        task.add_done_callback(self._aux.discard)

    async def _unplug_transports(self, name: str) -> None:
        if name in self._tcp:
            await self._tcp[name].stop()
        if name in self._pty:
            await self._pty[name].stop()

    async def _replug_transports(self, name: str) -> None:
        if name in self._tcp and not self._tcp[name].listening:
            await self._tcp[name].start()
        if name in self._pty and not self._pty[name].plugged:
            await self._pty[name].start()

    def _on_display(self, msg: DisplayedMessage) -> None:
        if self._log_file is not None:
            self._log_file.write(msg.to_json() + "\n")
            self._log_file.flush()


def format_summary(stats: MediumStats, displayed: dict[str, int]) -> str:
    lines = [
        f"sim time            {stats.now_s:10.1f} s",
        f"frames sent         {stats.frames_sent:10d}  (rebroadcasts {stats.rebroadcasts},"
        f" cancelled {stats.cancelled_rebroadcasts})",
        f"total airtime       {stats.total_airtime_s:10.2f} s",
        f"max channel util.   {stats.max_channel_utilization * 100:10.2f} %",
        f"collisions          {stats.collisions:10d}",
        f"lost (link loss)    {stats.lost:10d}",
        "per node:            frames   airtime_s  util_%  deliveries",
    ]
    for name, ns in stats.nodes.items():
        lines.append(
            f"  {name:<16} {ns.frames_sent:8d} {ns.airtime_s:11.2f}"
            f" {stats.channel_utilization(name) * 100:7.2f}"
            f" {ns.deliveries:11d}"
        )
    if displayed:
        lines.append("handheld displays:")
        lines.extend(f"  {name:<16} {count:8d}" for name, count in displayed.items())
    return "\n".join(lines)


__all__ = ["BROADCAST_NUM", "Endpoint", "Neighborhood", "build_medium", "format_summary"]
