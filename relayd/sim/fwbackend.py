"""The simulated neighborhood on real Meshtastic firmware: one meshtasticd (SimRadio) node per radio.

Everything above the LoRa chip is the real firmware (PhoneAPI, Router, FloodingRouter, duplicate
detection, rate limits); relayd's medium (relayd.sim.medium, in FloodingMode.EXTERNAL) is the air
between the nodes: topology, link loss, airtime, listen-before-talk and collisions.

How frames move (see ../shared/meshtasticd/README.md): a SimRadio node hands every frame it
transmits to its API client as a SIMULATOR_APP packet wrapping a `Compressed` protobuf. The backend
holds one client connection per node (its "link"), reads those frames, lets the medium carry them,
and writes each frame to every node that hears it, after the frame's airtime, as a ToRadio.packet
with rx_snr/rx_rssi from the link (the firmware takes a packet with both zero as locally made).

A relay radio is reached through a TCP pass-through on a free loopback port: it forwards the
client's bytes to the node and the node's frames to the client, except SIMULATOR_APP frames, which
go to the medium (a node serves one client: the medium and the relay daemon share the link).
A handheld has no client; what its firmware delivers to the phone is what a person would see on
its screen, logged as `DisplayedMessage` JSON lines like the simulated handhelds'.

Loopback only; every node runs with MESHTASTICD_BIND_ADDR=127.0.0.1, its own free port and
state folder, and is stopped by PID when the neighborhood stops. Time is wall time (scale 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from meshtastic.protobuf import admin_pb2, channel_pb2, config_pb2, mesh_pb2

from relayd.meshapi.framing import encode_frame
from relayd.meshapi.packets import (
    BELL_CHAR,
    BROADCAST_NUM,
    TEXT_MESSAGE_APP,
    from_radio_variant,
    node_id,
    to_radio_packet,
)
from relayd.sim.firmware import DisplayedMessage
from relayd.sim.fwair import AIR_LOG_MAX, OnAir, on_air_record
from relayd.sim.fwlink import NodeLink, PassThrough, is_simulator_frame
from relayd.sim.medium import (
    AirPacket,
    Delivery,
    FloodingMode,
    LinkQuality,
    Medium,
    MediumStats,
    SendResult,
    Topology,
)
from relayd.sim.neighborhood import Endpoint, format_summary
from relayd.sim.scenario import NodeSpec, Role, Scenario, ScriptedMessage
from relayd.testing.meshtasticd import LOOPBACK, MeshtasticdCluster

log = logging.getLogger(__name__)

REBOOT_WAIT_S = 15.0
# NodeInfoModule::allocReply: no NodeInfo broadcast within 10 minutes of the last (on a small mesh).
NODEINFO_THROTTLE_S = 600.0


class FirmwareNeighborhood:
    """``async with FirmwareNeighborhood(scenario) as hood: ...`` -- the Neighborhood API subset
    (endpoints, displays, handheld_send, wait_for, stats, summary) on real firmware."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        binary: Path | None = None,
        handheld_log_path: str | Path | None = None,
        state_root: Path | None = None,
        wall_clock: Callable[[], float] = time.time,
        mqtt_proxy: frozenset[str] = frozenset(),
    ) -> None:
        self.scenario = scenario
        # Radios whose firmware bridges its primary channel to MQTT through its API client
        # (module_config.mqtt.proxy_to_client_enabled): what meshtastic-gateway relies on.
        self._mqtt_proxy = mqtt_proxy
        self.time_scale = 1.0
        self._binary = binary
        self._state_root = state_root
        self._wall_clock = wall_clock
        self._log_path = Path(handheld_log_path) if handheld_log_path else None
        self._log_file: IO[str] | None = None
        self.cluster: MeshtasticdCluster | None = None
        self.links: dict[str, NodeLink] = {}
        self.passthroughs: dict[str, PassThrough] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.medium: Medium | None = None
        self._displays: dict[str, list[DisplayedMessage]] = {n.name: [] for n in scenario.nodes}
        self._num_to_spec: dict[int, NodeSpec] = {}
        self._mono0 = 0.0
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._driver: asyncio.Task[None] | None = None
        self._stopping = False
        self._rng = random.Random(scenario.seed)
        self._timers: set[asyncio.Task[None]] = set()
        self.frames_from_radios = 0
        # Every frame a radio put on air, for tests and benchmarks to count against what relays
        # claim (bounded: a long training run forgets the oldest).
        self.air_log: deque[OnAir] = deque(maxlen=AIR_LOG_MAX)

    # -- lifecycle ---------------------------------------------------------------------------------

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
        sc = self.scenario
        self.cluster = MeshtasticdCluster(binary=self._binary, root=self._state_root)
        loop = asyncio.get_running_loop()
        for spec in sc.nodes:
            await loop.run_in_executor(None, self.cluster.add, spec.name)
        for spec in sc.nodes:
            node = self.cluster.nodes[spec.name]
            link = NodeLink(spec.name, node.port, self._on_air)
            await link.open()
            self.links[spec.name] = link
            self._num_to_spec[link.num] = spec
        await asyncio.gather(*(self._configure(spec, self.links[spec.name]) for spec in sc.nodes))
        # Committing the settings reboots each node (AdminModule, 7 s later; the process restarts
        # in place with the same state folder and port): reconnect once it is back.
        for spec in sc.nodes:
            link = self.links[spec.name]
            if not await link.wait_closed(REBOOT_WAIT_S):
                raise RuntimeError(f"{spec.name}: meshtasticd did not restart after its configuration")
            await link.close()
        for spec in sc.nodes:
            node = self.cluster.nodes[spec.name]
            await loop.run_in_executor(None, node.wait_listening)
            await self.links[spec.name].open()
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self._log_path.open("a", encoding="utf-8")
        for spec in sc.nodes:
            link = self.links[spec.name]
            tcp_port: int | None = None
            if spec.role is Role.RELAY:
                pt = PassThrough(link, spec.tcp_port or 0)
                await pt.start()
                self.passthroughs[spec.name] = pt
                tcp_port = pt.port
            else:
                link.on_frame = self._screen(spec)
            self.endpoints[spec.name] = Endpoint(
                name=spec.name,
                num=link.num,
                node_id=node_id(link.num),
                role=spec.role,
                tcp_host=LOOPBACK if tcp_port is not None else None,
                tcp_port=tcp_port,
                pty_path=None,
            )
        self.medium = self._build_medium()
        self._mono0 = time.monotonic()
        self._driver = asyncio.create_task(self._drive(), name="fw-medium-driver")
        for msg in sc.messages:
            self._at(msg.at_s, functools.partial(self._scripted, msg))

    async def stop(self) -> None:
        for t in list(self._timers):
            t.cancel()
        if self._driver is not None:
            # Python 3.11's wait_for can swallow a cancel that lands as its inner wait completes
            # (a wake-up at the same moment), so the driver also stops on this flag.
            self._stopping = True
            self._wake.set()
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
            self._driver = None
        for pt in self.passthroughs.values():
            await pt.stop()
        for link in self.links.values():
            await link.close()
        if self.cluster is not None:
            cluster, self.cluster = self.cluster, None
            await asyncio.get_running_loop().run_in_executor(None, cluster.close)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def _configure(self, spec: NodeSpec, link: NodeLink) -> None:
        """Give the node the scenario's settings with admin messages, as `meshtastic --configure`
        would: owner names, region/preset/hop limit, device role, channels, the alert bell."""
        sc = self.scenario
        cfg = config_pb2.Config
        begin = admin_pb2.AdminMessage()
        begin.begin_edit_settings = True
        await link.admin(begin)
        owner = admin_pb2.AdminMessage()
        owner.set_owner.long_name = spec.long_name
        owner.set_owner.short_name = spec.short_name
        await link.admin(owner)
        lora = admin_pb2.AdminMessage()
        lora.set_config.lora.use_preset = True
        lora.set_config.lora.modem_preset = cfg.LoRaConfig.ModemPreset.Value(sc.preset.name)
        lora.set_config.lora.region = cfg.LoRaConfig.RegionCode.Value(sc.region)
        lora.set_config.lora.hop_limit = sc.hop_limit
        lora.set_config.lora.tx_enabled = True
        # A mesh bridged to MQTT: its people have said their packets may go there ("OK to MQTT").
        lora.set_config.lora.config_ok_to_mqtt = bool(self._mqtt_proxy)
        await link.admin(lora)
        device = admin_pb2.AdminMessage()
        device.set_config.device.role = cfg.DeviceConfig.Role.Value(spec.device_role)
        await link.admin(device)
        for i in range(8):
            ch = admin_pb2.AdminMessage()
            ch.set_channel.index = i
            if i < len(sc.channels):
                ch.set_channel.role = (
                    channel_pb2.Channel.Role.PRIMARY if i == 0 else channel_pb2.Channel.Role.SECONDARY
                )
                ch.set_channel.settings.name = sc.channels[i].name
                ch.set_channel.settings.psk = sc.channels[i].psk
                if i == 0 and spec.name in self._mqtt_proxy:
                    ch.set_channel.settings.uplink_enabled = True
                    ch.set_channel.settings.downlink_enabled = True
            else:
                ch.set_channel.role = channel_pb2.Channel.Role.DISABLED
            await link.admin(ch)
        bell = admin_pb2.AdminMessage()
        bell.set_module_config.external_notification.enabled = True
        bell.set_module_config.external_notification.alert_bell = True
        bell.set_module_config.external_notification.output_ms = 1000
        await link.admin(bell)
        if spec.name in self._mqtt_proxy:
            mqtt = admin_pb2.AdminMessage()
            mqtt.set_module_config.mqtt.enabled = True
            mqtt.set_module_config.mqtt.proxy_to_client_enabled = True
            # Envelopes carry decoded packets; the channel PSK still encrypts them on air.
            mqtt.set_module_config.mqtt.encryption_enabled = False
            mqtt.set_module_config.mqtt.root = "msh"
            # The broker the client bridges to is on loopback: a private server, to which the
            # firmware forwards even packets whose sender did not say "OK to MQTT".
            mqtt.set_module_config.mqtt.address = LOOPBACK
            await link.admin(mqtt)
        commit = admin_pb2.AdminMessage()
        commit.commit_edit_settings = True
        await link.admin(commit)

    def _build_medium(self) -> Medium:
        links: dict[tuple[str, str], LinkQuality] = {}
        for ls in self.scenario.links:
            q = LinkQuality(ls.snr_db, ls.rssi_dbm, ls.loss)
            links[(ls.a, ls.b)] = q
            if ls.bidirectional:
                links[(ls.b, ls.a)] = q
        return Medium(
            {name: link.num for name, link in self.links.items()},
            Topology(links),
            preset=self.scenario.preset,
            seed=self.scenario.seed,
            collisions=self.scenario.collisions,
            flooding=FloodingMode.EXTERNAL,
        )

    # -- the air -----------------------------------------------------------------------------------

    def sim_now_s(self) -> float:
        return time.monotonic() - self._mono0

    def _on_air(self, name: str, p: Any) -> None:
        """A node transmitted a frame (its SIMULATOR_APP copy): the medium carries it."""
        if self.medium is None:
            return
        self.frames_from_radios += 1
        air = AirPacket(
            from_num=int(getattr(p, "from")),
            to_num=int(p.to),
            packet_id=int(p.id),
            channel_index=int(p.channel),
            hop_limit=int(p.hop_limit),
            hop_start=int(p.hop_start),
            want_ack=bool(p.want_ack),
            data=bytes(p.decoded.payload),
            relay_node=int(p.relay_node),
        )
        self._catch_up()
        if self.medium.send(name, air) is not SendResult.QUEUED:
            log.debug("%s: medium refused a frame", name)
        else:
            self.air_log.append(on_air_record(self.sim_now_s(), name, air))
        self._wake.set()

    def _air(self) -> Medium:
        if self.medium is None:
            raise RuntimeError("the firmware neighborhood is not started")
        return self.medium

    def _catch_up(self) -> None:
        medium = self._air()
        target = self.sim_now_s()
        while (nxt := medium.next_event_time()) is not None and nxt <= target:
            for ev in medium.step():
                if isinstance(ev, Delivery):
                    self.links[ev.node].inject(ev.packet, ev.snr_db, ev.rssi_dbm)
        medium.advance_to(target)

    async def _drive(self) -> None:
        medium = self._air()
        while not self._stopping:
            self._wake.clear()
            self._catch_up()
            nxt = medium.next_event_time()
            timeout = None if nxt is None else max(0.0, nxt - self.sim_now_s())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    # -- handhelds ---------------------------------------------------------------------------------

    def _screen(self, spec: NodeSpec) -> Callable[[bytes, Any], None]:
        def show(_frame: bytes, msg: Any) -> None:
            if from_radio_variant(msg) != "packet" or msg.packet.decoded.portnum != TEXT_MESSAGE_APP:
                return
            p = msg.packet
            sender_num = int(getattr(p, "from"))
            sender = self._num_to_spec.get(sender_num)
            idx = int(p.channel)
            text = bytes(p.decoded.payload).decode("utf-8", errors="replace")
            shown = DisplayedMessage(
                sim_time_s=round(self.sim_now_s(), 6),
                wall_time=self._wall_clock(),
                handheld=spec.name,
                channel_index=idx,
                channel_name=self.scenario.channels[idx].name if idx < len(self.scenario.channels) else "",
                sender_id=node_id(sender_num),
                sender_name=sender.long_name if sender else node_id(sender_num),
                text=text,
                bell=BELL_CHAR in text,
                dm=int(p.to) == self.links[spec.name].num,
            )
            self._displays[spec.name].append(shown)
            if self._log_file is not None:
                self._log_file.write(shown.to_json() + "\n")
                self._log_file.flush()
            self._changed.set()

        return show

    def _scripted(self, msg: ScriptedMessage) -> None:
        to = self.links[msg.to].num if msg.to else None
        self.handheld_send(msg.sender, msg.text, msg.channel_index, to)

    def _at(self, at_s: float, fn: Callable[[], None]) -> None:
        async def later() -> None:
            await asyncio.sleep(max(0.0, at_s - self.sim_now_s()))
            fn()

        task = asyncio.create_task(later())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    # -- public API (as Neighborhood) ----------------------------------------------------------------

    def node_num(self, name: str) -> int:
        return self.links[name].num

    def displays(self, name: str) -> list[DisplayedMessage]:
        return list(self._displays[name])

    def originated(self, name: str, portnum: int = TEXT_MESSAGE_APP) -> list[OnAir]:
        """The frames of `portnum` that node `name` put on air as their origin (its own packets,
        not its repeats of others'), oldest first."""
        num = self.links[name].num
        return [f for f in self.air_log if f.node == name and f.from_num == num and f.portnum == portnum]

    async def switch(self, name: str, *, on: bool, off_for_s: float = 0.0) -> None:
        """A person switches a handheld off or on. Off, its meshtasticd is stopped: it hears and
        sends nothing, and what it kept in RAM (packet history) is gone. On, it starts again from
        its state folder (same node number, settings and keys) and, as stock firmware does after
        a boot, announces itself with a NodeInfo broadcast 30 s later
        (MESHMODULE_MIN_BROADCAST_DELAY_MS) -- unless it sent one in the last 10 minutes: the
        firmware keeps its send times on disk (TransmitHistory) so that a reboot loop does not
        flood the mesh. `off_for_s` says how long it is taken to have been off: from
        NODEINFO_THROTTLE_S on, that record is as old as it would be, so it is cleared."""
        if self.cluster is None:
            raise RuntimeError("the firmware neighborhood is not started")
        node = self.cluster.nodes[name]
        link = self.links[name]
        loop = asyncio.get_running_loop()
        self._catch_up()
        if not on:
            self._air().set_enabled(name, False)
            await link.close()
            await loop.run_in_executor(None, node.stop)
        elif not node.running:
            if off_for_s >= NODEINFO_THROTTLE_S:
                (node.state_dir / "prefs" / "transmit_history.dat").unlink(missing_ok=True)
            await loop.run_in_executor(None, node.start)
            await link.open()
            self._catch_up()
            self._air().set_enabled(name, True)
        self._wake.set()

    def handheld_send(self, name: str, text: str, channel_index: int = 0, to: str | int | None = None) -> int:
        """A person types `text` on handheld `name` (through its firmware, rate limit included)."""
        link = self.links[name]
        to_num = BROADCAST_NUM if to is None else (to if isinstance(to, int) else self.links[to].num)
        p = mesh_pb2.MeshPacket()
        setattr(p, "from", link.num)
        p.to = to_num
        p.channel = channel_index
        p.hop_limit = self.scenario.hop_limit  # what the handheld's own UI sets
        # Random, as a phone app's are: ids only have to be unique per sender, but the firmware's
        # duplicate detection and its cancel-on-rebroadcast match on the id first.
        p.id = self._rng.getrandbits(31) | 1
        p.decoded.portnum = TEXT_MESSAGE_APP
        p.decoded.payload = text.encode("utf-8")
        link.write(encode_frame(to_radio_packet(p)))
        return int(p.id)

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))
        return True

    def stats(self) -> MediumStats:
        self._catch_up()
        return self._air().stats()

    def summary(self) -> str:
        return format_summary(
            self.stats(),
            {n.name: len(self._displays[n.name]) for n in self.scenario.nodes if n.role is Role.HANDHELD},
        )


__all__ = ["FirmwareNeighborhood", "NodeLink", "PassThrough", "is_simulator_frame"]
