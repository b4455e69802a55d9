"""The firmware side of the Meshtastic device API for one simulated radio.

`SimRadio` is one radio: its node DB, its settings (relayd.sim.settings), what it tells a client
in the want_config handshake (relayd.sim.handshake), its to-phone queue, what it puts on air and
hears, and (for a handheld) its screen. `PhoneSession` (relayd.sim.phoneapi) is one client
connection to it (TCP or serial) and mirrors the firmware's PhoneAPI state machine
(src/mesh/PhoneAPI.cpp). None of them does I/O: bytes come in through `PhoneSession.feed`, framed
FromRadio bytes go out through the session's sink, and packets reach the air through a `MeshPort`
(the neighborhood, which owns the medium).

The model follows Meshtastic firmware FOLLOWS_FIRMWARE (2.8.0) and is checked against it:
tests/firmware/test_differential.py sends the same probes to this model and to a real meshtasticd
node; docs/simulator.md lists every deliberate difference.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from google.protobuf.message import DecodeError
from meshtastic.protobuf import admin_pb2, config_pb2, mesh_pb2, portnums_pb2

from relayd.core.airtime import MESHTASTIC_HEADER_BYTES, time_on_air_s
from relayd.meshapi.packets import (
    ADMIN_APP,
    BELL_CHAR,
    BROADCAST_NUM,
    ROUTING_APP,
    TEXT_MESSAGE_APP,
    node_id,
)
from relayd.sim.handshake import NONCE_ONLY_CONFIG, NONCE_ONLY_NODES
from relayd.sim.medium import CW_MAX, CW_MIN, AirPacket, Delivery, SendResult, slot_time_s
from relayd.sim.phoneapi import ERRNO_OK, ERRNO_UNKNOWN, ROUTING_ERROR, ClientMemory, PhoneSession
from relayd.sim.scenario import NodeSpec, Role, Scenario
from relayd.sim.settings import RadioSettings

# What callers import from here; the want_config handshake's nonces live with the handshake
# (relayd.sim.handshake), the client session in relayd.sim.phoneapi.
__all__ = [
    "DEVICE_STATE_VERSION",
    "FIRMWARE_VERSION",
    "FOLLOWS_FIRMWARE",
    "MAX_RX_TOPHONE",
    "NONCE_ONLY_CONFIG",
    "NONCE_ONLY_NODES",
    "DisplayedMessage",
    "MeshPort",
    "SimRadio",
]

log = logging.getLogger(__name__)

# The firmware release whose behaviour this model follows (checked by the differential suite).
FOLLOWS_FIRMWARE = "2.8.0"
# What the model reports as DeviceMetadata.firmware_version: the release it follows, marked so that
# an operator (and `relayd doctor`) can tell a simulated radio from a real one.
FIRMWARE_VERSION = f"{FOLLOWS_FIRMWARE}.relayd-sim"
# DeviceMetadata.device_state_version of firmware 2.8 (DEVICESTATE_CUR_VER).
DEVICE_STATE_VERSION = 25
# Router::send: the encoded Data (with the 2-byte bitfield the firmware adds) plus the 16-byte
# header must fit in one 255-byte LoRa frame; a PKI DM also carries 12 bytes of overhead.
MAX_LORA_PAYLOAD_LEN = 255
MESHTASTIC_HEADER_LENGTH = 16
MESHTASTIC_PKC_OVERHEAD = 12
NODEINFO_PING_COOLDOWN_S = 60.0
# NodeInfoModule: a boot announcement is skipped within 10 minutes of the last NodeInfo sent.
NODEINFO_BOOT_THROTTLE_S = 600.0
# MeshService toPhoneQueue depth (mesh-pb-constants.h MAX_RX_TOPHONE).
MAX_RX_TOPHONE = 32
# ReliableRouter: a want_ack packet goes out NUM_RELIABLE_RETX times in all until an
# (implicit) ACK is heard, then the client gets MAX_RETRANSMIT.
NUM_RELIABLE_RETX = 3
# RadioInterface::getRetransmissionMsec: two of the packet's airtimes, (2^CW + 2*CWmax +
# 2^((CWmax+CWmin)/2)) slots (CW = CWmin on an idle channel) and PROCESSING_TIME_MSEC (4.5 s):
# about 6.9 s between transmissions on LONG_FAST, as meshtasticd 2.8.0 does it.
RETRANSMIT_SLOTS = 2**CW_MIN + 2 * CW_MAX + 2 ** ((CW_MAX + CW_MIN) // 2)
RETRANSMIT_PROCESSING_S = 4.5


class MeshPort(Protocol):
    """What a radio needs from the world around it (implemented by the neighborhood)."""

    def sim_now_s(self) -> float: ...

    def transmit(self, node: str, packet: AirPacket) -> SendResult: ...

    def tx_queue_free(self, node: str) -> int: ...

    def call_at(self, at_s: float, fn: Callable[[], None]) -> None: ...


@dataclass(frozen=True, slots=True)
class DisplayedMessage:
    """One message as a person would see it on a stock handheld's screen."""

    sim_time_s: float
    wall_time: float
    handheld: str
    channel_index: int
    channel_name: str
    sender_id: str
    sender_name: str
    text: str
    bell: bool  # the text holds BEL: external notification rings (alert_bell)
    dm: bool
    # The packet id the message came under: what the app's reply or tapback refers to.
    packet_id: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


class SimRadio:
    """One simulated Meshtastic radio (relay radio or stock handheld)."""

    def __init__(
        self,
        spec: NodeSpec,
        scenario: Scenario,
        port: MeshPort,
        *,
        wall_clock: Callable[[], float] = time.time,
        on_display: Callable[[DisplayedMessage], None] | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.num = spec.num
        self.scenario = scenario
        self.port = port
        self.wall_clock = wall_clock
        self.on_display = on_display
        self._rng = random.Random(f"{scenario.seed}:{spec.num}")
        self._next_packet_id = self._rng.randrange(1, 0x7FFFFFFF)
        self._from_radio_id = 0
        self.to_phone: deque[Any] = deque()
        self.to_phone_dropped = 0
        self.displays: list[DisplayedMessage] = []
        self.session: PhoneSession | None = None
        self.rebooted_pending = False
        self.reboot_count = 0
        # packet id -> (the packet, transmissions left) until an implicit ACK is heard
        self._want_ack_broadcasts: dict[int, tuple[AirPacket, int]] = {}
        # node num -> (wall time, snr, hops away): the NodeDB's view of the nodes it heard
        self.last_heard: dict[int, tuple[float, float, int]] = {}
        # What admin messages read and write (AdminModule): owner, config, module config, channels.
        self.settings = RadioSettings(spec, scenario)
        self._session_passkey = self._rng.randbytes(8)
        self._last_nodeinfo_s: float | None = None
        self.serial_memory = ClientMemory()

    # -- identity / handshake ----------------------------------------------------------------------

    def next_from_radio_id(self) -> int:
        self._from_radio_id += 1
        return self._from_radio_id

    def generate_packet_id(self) -> int:
        # Router::generatePacketId: random start, then increment, 32 bits, never 0.
        self._next_packet_id = (self._next_packet_id + 1) & 0xFFFFFFFF or 1
        return self._next_packet_id

    def channels_in_use(self) -> list[Any]:
        return self.settings.channels_in_use()

    @property
    def hop_limit(self) -> int:
        return self.settings.hop_limit

    def metadata(self) -> Any:
        md = mesh_pb2.DeviceMetadata()
        md.firmware_version = FIRMWARE_VERSION
        md.device_state_version = DEVICE_STATE_VERSION
        md.canShutdown = True
        md.hasWifi = self.spec.tcp_port is not None
        md.hasBluetooth = False
        md.role = config_pb2.Config.DeviceConfig.Role.CLIENT
        md.hw_model = mesh_pb2.HardwareModel.PORTDUINO
        md.hasPKC = True
        return md

    # -- client attach / detach --------------------------------------------------------------------

    def attach(
        self, sink: Callable[[bytes], None], on_close: Callable[[], None], *, serial: bool = False
    ) -> PhoneSession:
        """A client connected. Firmware serves one API client at a time: the old one is dropped."""
        if self.session is not None:
            self.session.close()
        session = PhoneSession(self, sink, on_close, memory=self.serial_memory if serial else None)
        self.session = session
        if self.rebooted_pending:
            self.rebooted_pending = False
            session.send_rebooted()
        return session

    def detach(self, session: PhoneSession) -> None:
        if self.session is session:
            self.session = None

    def power_cycle(self) -> None:
        """The radio reboots: the client link drops, RAM (to-phone queue) is lost."""
        if self.session is not None:
            self.session.close()
        self.to_phone.clear()
        self._want_ack_broadcasts.clear()
        self.serial_memory = ClientMemory()  # RAM
        self.reboot_count += 1
        self.rebooted_pending = True

    # -- to the phone ------------------------------------------------------------------------------

    def queue_to_phone(self, packet: Any) -> None:
        if len(self.to_phone) >= MAX_RX_TOPHONE:
            # MeshService::sendToPhone: when full, a text evicts the oldest entry, anything
            # else is dropped.
            if packet.decoded.portnum == TEXT_MESSAGE_APP:
                self.to_phone.popleft()
            else:
                self.to_phone_dropped += 1
                return
            self.to_phone_dropped += 1
        self.to_phone.append(packet)
        self.flush_to_phone()

    def flush_to_phone(self) -> None:
        s = self.session
        if s is None or not s.ready:
            return
        while self.to_phone and s.ready:
            s.push_packet(self.to_phone.popleft())

    def routing_to_phone(self, request: Any, error: int, *, from_num: int) -> None:
        """A Routing ACK/NAK for `request` to our own client (firmware sendAckNak to phone)."""
        routing = mesh_pb2.Routing()
        routing.error_reason = error
        mp = mesh_pb2.MeshPacket()
        setattr(mp, "from", from_num)
        mp.to = self.num
        mp.id = self.generate_packet_id()
        mp.channel = request.channel
        mp.hop_limit = self.hop_limit
        mp.priority = mesh_pb2.MeshPacket.Priority.ACK
        mp.rx_time = int(self.wall_clock())
        mp.decoded.portnum = ROUTING_APP
        mp.decoded.payload = routing.SerializeToString()
        mp.decoded.request_id = request.id
        self.queue_to_phone(mp)

    def routing_error_to(self, to: int, request: Any, error: int) -> None:
        """MeshModule::sendRoutingErrorResponse as PhoneAPI calls it: addressed to the request's
        `from` as the client wrote it. Our own number reaches our client; anything else (0 too)
        is a packet on air that the client never hears of."""
        if to == self.num:
            self.routing_to_phone(request, error, from_num=self.num)
            return
        routing = mesh_pb2.Routing()
        routing.error_reason = error
        mp = mesh_pb2.MeshPacket()
        mp.to = to
        mp.channel = request.channel
        mp.priority = mesh_pb2.MeshPacket.Priority.ACK
        mp.decoded.portnum = ROUTING_APP
        mp.decoded.payload = routing.SerializeToString()
        mp.decoded.request_id = request.id
        mp.hop_limit = 0  # allocAckNak leaves it 0 and want_ack is off: nobody repeats it
        self.originate(mp, keep_to_zero=True)

    def fits_one_frame(self, p: Any) -> bool:
        """Router::send's size check: the Data as it goes on air (the firmware adds a bitfield)
        plus the header within 255 bytes; PKI-encrypted DMs carry 12 more bytes."""
        data = mesh_pb2.Data()
        data.CopyFrom(p.decoded)
        data.bitfield = 1  # always present on air (one small varint: 2 bytes with its tag)
        size = len(data.SerializeToString()) + MESHTASTIC_HEADER_LENGTH
        if p.pki_encrypted:
            size += MESHTASTIC_PKC_OVERHEAD
        return size <= MAX_LORA_PAYLOAD_LEN

    def nodeinfo_ping(self) -> None:
        now = self.port.sim_now_s()
        if self._last_nodeinfo_s is not None and now - self._last_nodeinfo_s < NODEINFO_PING_COOLDOWN_S:
            return
        # sendOurNodeInfo(BROADCAST, wantReplies=true, shorterTimeout=true).
        packet_id, res = self._send_nodeinfo(BROADCAST_NUM, want_response=True)
        if self.session is not None:
            # MeshService::sendToMesh reports every packet it queues, the radio's own too.
            self.session.send_queue_status(ERRNO_OK if res is SendResult.QUEUED else ERRNO_UNKNOWN, packet_id)

    def boot_announcement(self) -> None:
        """NodeInfoModule's first run after a boot: a NodeInfo broadcast asking for replies,
        unless one went out in the last 10 minutes (the firmware keeps its send times on
        flash, TransmitHistory, so that a reboot loop does not flood the mesh)."""
        now = self.port.sim_now_s()
        if self._last_nodeinfo_s is not None and now - self._last_nodeinfo_s < NODEINFO_BOOT_THROTTLE_S:
            return
        self._send_nodeinfo(BROADCAST_NUM, want_response=True)

    def forget_nodeinfo_sent(self) -> None:
        """Off for longer than any NodeInfo throttle: its record of sending one is history."""
        self._last_nodeinfo_s = None

    def _send_nodeinfo(self, to: int, *, want_response: bool) -> tuple[int, SendResult]:
        self._last_nodeinfo_s = self.port.sim_now_s()
        p = mesh_pb2.MeshPacket()
        p.to = to
        p.decoded.portnum = portnums_pb2.PortNum.NODEINFO_APP
        p.decoded.payload = self.settings.owner.SerializeToString()
        p.decoded.want_response = want_response
        p.hop_limit = self.hop_limit
        return self.originate(p)

    # -- admin (AdminModule, local client only) ----------------------------------------------------

    def handle_admin(self, p: Any, session: PhoneSession) -> None:
        """The admin messages that the official client's --set/--configure/--export-config and
        hardware/apply-profile.sh send: get/set owner, config, module config, channel; canned
        messages, ringtone, metadata; begin/commit edit. Anything else is ACKed and ignored."""
        try:
            req = admin_pb2.AdminMessage.FromString(bytes(p.decoded.payload))
        except DecodeError:
            session.send_queue_status(ERRNO_OK, p.id)
            self.routing_to_phone(p, ROUTING_ERROR.BAD_REQUEST, from_num=self.num)
            return
        which = req.WhichOneof("payload_variant")
        if which == "get_device_metadata_request":
            resp = admin_pb2.AdminMessage()
            resp.get_device_metadata_response.CopyFrom(self.metadata())
        else:
            resp = self.settings.admin(which, req)
        if resp.WhichOneof("payload_variant") is not None and p.decoded.want_response:
            resp.session_passkey = self._session_passkey
            mp = mesh_pb2.MeshPacket()
            setattr(mp, "from", self.num)
            mp.to = self.num
            mp.id = self.generate_packet_id()
            mp.channel = p.channel
            mp.hop_limit = self.hop_limit
            mp.priority = mesh_pb2.MeshPacket.Priority.RELIABLE
            mp.rx_time = int(self.wall_clock())
            mp.decoded.portnum = ADMIN_APP
            mp.decoded.payload = resp.SerializeToString()
            mp.decoded.request_id = p.id
            session.send_queue_status(ERRNO_OK, mp.id)
            session.send_queue_status(ERRNO_OK, p.id)
            self.queue_to_phone(mp)
            return
        session.send_queue_status(ERRNO_OK, p.id)
        if p.want_ack:
            self.routing_to_phone(p, ROUTING_ERROR.NONE, from_num=self.num)

    # -- to the air --------------------------------------------------------------------------------

    def originate(self, p: Any, *, keep_to_zero: bool = False) -> tuple[int, SendResult]:
        """Send a client's (or our own firmware's) packet into the mesh; returns (id, result).

        A client packet that leaves `to` 0 is taken as a broadcast; the firmware's own packets
        addressed to node 0 (`keep_to_zero`) go on air to node 0."""
        packet_id = p.id or self.generate_packet_id()
        # Router::send fills in the configured hop limit only for a want_ack packet that leaves it
        # 0; otherwise the client's value goes on air as it is (0: nobody repeats it).
        hop_limit = p.hop_limit
        if p.want_ack and hop_limit == 0:
            hop_limit = self.hop_limit
        hop_limit = min(hop_limit, 7)
        to = p.to if p.to or keep_to_zero else BROADCAST_NUM
        if to == self.num:
            # Addressed to ourselves (e.g. admin messages): never goes on air.
            if p.want_ack:
                p2 = mesh_pb2.MeshPacket()
                p2.CopyFrom(p)
                p2.id = packet_id
                self.routing_to_phone(p2, ROUTING_ERROR.NONE, from_num=self.num)
            return packet_id, SendResult.QUEUED
        data = p.decoded.SerializeToString() if p.HasField("decoded") else bytes(p.encrypted)
        air = AirPacket(
            from_num=self.num,
            to_num=to,
            packet_id=packet_id,
            channel_index=p.channel,
            hop_limit=hop_limit,
            hop_start=hop_limit,
            # Router::send never sets want_ack on a broadcast on air (the implicit ACK is
            # ReliableRouter's own bookkeeping).
            want_ack=p.want_ack and to != BROADCAST_NUM,
            data=data,
        )
        res = self.port.transmit(self.name, air)
        if res is SendResult.QUEUED and p.want_ack and to == BROADCAST_NUM:
            self._want_ack_broadcasts[packet_id] = (air, NUM_RELIABLE_RETX - 1)
            self._schedule_retransmission(air)
        return packet_id, res

    def _schedule_retransmission(self, air: AirPacket) -> None:
        airtime_s = time_on_air_s(MESHTASTIC_HEADER_BYTES + len(air.data), self.scenario.preset)
        slots_s = RETRANSMIT_SLOTS * slot_time_s(self.scenario.preset)
        at_s = self.port.sim_now_s() + 2 * airtime_s + slots_s + RETRANSMIT_PROCESSING_S
        self.port.call_at(at_s, lambda: self._retransmit(air.packet_id))

    def _retransmit(self, packet_id: int) -> None:
        """No one repeated our want_ack broadcast in time: send it again, or give up."""
        entry = self._want_ack_broadcasts.get(packet_id)
        if entry is None:
            return  # ACKed meanwhile
        air, left = entry
        if left <= 0:
            del self._want_ack_broadcasts[packet_id]
            req = mesh_pb2.MeshPacket()
            req.id = packet_id
            req.channel = air.channel_index
            self.routing_to_phone(req, ROUTING_ERROR.MAX_RETRANSMIT, from_num=self.num)
            return
        self._want_ack_broadcasts[packet_id] = (air, left - 1)
        self.port.transmit(self.name, air)
        self._schedule_retransmission(air)

    def send_text(
        self,
        text: str,
        *,
        channel_index: int = 0,
        to: int | None = None,
        want_ack: bool = False,
        reply_id: int = 0,
        emoji: bool = False,
    ) -> tuple[int, SendResult]:
        """What a person typing on the handheld does (no client rate limit: that is PhoneAPI's).
        `reply_id` and `emoji` are the app's reply and tapback on the message under that packet id."""
        p = mesh_pb2.MeshPacket()
        p.to = BROADCAST_NUM if to is None else to
        p.channel = channel_index
        p.want_ack = want_ack
        p.decoded.portnum = TEXT_MESSAGE_APP
        p.decoded.payload = text.encode("utf-8")
        p.decoded.reply_id = reply_id
        p.decoded.emoji = 1 if emoji else 0
        return self.originate(p)

    # -- from the air ------------------------------------------------------------------------------

    def on_echo(self, packet_id: int) -> None:
        """We heard a neighbour rebroadcast our broadcast: ReliableRouter's implicit ACK."""
        entry = self._want_ack_broadcasts.pop(packet_id, None)
        if entry is None:
            return
        req = mesh_pb2.MeshPacket()
        req.id = packet_id
        req.channel = entry[0].channel_index
        self.routing_to_phone(req, ROUTING_ERROR.NONE, from_num=self.num)

    def on_delivery(self, d: Delivery) -> None:
        air = d.packet
        data = mesh_pb2.Data()
        try:
            data.ParseFromString(air.data)
        except DecodeError:
            log.debug("%s: undecodable payload from %s", self.name, node_id(air.from_num))
            return
        self.last_heard[air.from_num] = (self.wall_clock(), d.snr_db, max(air.hop_start - air.hop_limit, 0))
        mp = mesh_pb2.MeshPacket()
        setattr(mp, "from", air.from_num)
        mp.to = air.to_num
        mp.id = air.packet_id
        mp.channel = air.channel_index
        mp.decoded.CopyFrom(data)
        mp.rx_time = int(self.wall_clock())
        mp.rx_snr = d.snr_db
        mp.rx_rssi = d.rssi_dbm
        mp.hop_limit = air.hop_limit
        mp.hop_start = air.hop_start
        mp.want_ack = air.want_ack
        relayer = next((n.num for n in self.scenario.nodes if n.name == d.relayed_by), 0)
        mp.relay_node = relayer & 0xFF  # firmware 2.6 header carries the relayer's last byte
        if air.to_num == self.num and air.want_ack and data.portnum != ROUTING_APP:
            self._send_ack(air)
        if self.spec.role is Role.HANDHELD:
            if data.portnum == TEXT_MESSAGE_APP:
                self._display(d, data)
            return
        self.queue_to_phone(mp)

    def _send_ack(self, air: AirPacket) -> None:
        """ReliableRouter: the addressee of a want_ack DM answers with a Routing ACK."""
        routing = mesh_pb2.Routing()
        routing.error_reason = ROUTING_ERROR.NONE
        data = mesh_pb2.Data()
        data.portnum = ROUTING_APP
        data.payload = routing.SerializeToString()
        data.request_id = air.packet_id
        ack = AirPacket(
            from_num=self.num,
            to_num=air.from_num,
            packet_id=self.generate_packet_id(),
            channel_index=air.channel_index,
            hop_limit=self.hop_limit,
            hop_start=self.hop_limit,
            want_ack=False,
            data=data.SerializeToString(),
        )
        self.port.transmit(self.name, ack)

    def _display(self, d: Delivery, data: Any) -> None:
        sc = self.scenario
        sender = next((n for n in sc.nodes if n.num == d.packet.from_num), None)
        # Firmware hands the bytes to the screen as UTF-8; invalid sequences show as U+FFFD.
        text = bytes(data.payload).decode("utf-8", errors="replace")
        idx = d.packet.channel_index
        msg = DisplayedMessage(
            sim_time_s=round(d.at_s, 6),
            wall_time=self.wall_clock(),
            handheld=self.name,
            channel_index=idx,
            channel_name=sc.channels[idx].name if idx < len(sc.channels) else "",
            sender_id=node_id(d.packet.from_num),
            sender_name=sender.long_name if sender else node_id(d.packet.from_num),
            text=text,
            bell=BELL_CHAR in text,
            dm=d.packet.to_num == self.num,
            packet_id=d.packet.packet_id,
        )
        self.displays.append(msg)
        if self.on_display is not None:
            self.on_display(msg)
