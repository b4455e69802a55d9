"""One client connection to a simulated radio: the firmware's PhoneAPI (src/mesh/PhoneAPI.cpp).

`PhoneSession` frames bytes in and out, runs the want_config handshake and takes the client's
packets through PhoneAPI's checks (recently seen ids, per-portnum rate limits, channel, size)
before they reach the radio (relayd.sim.firmware.SimRadio). It does no I/O: bytes come in through
`feed`, framed FromRadio bytes go out through the session's sink.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import TYPE_CHECKING, Any

from meshtastic.protobuf import mesh_pb2, portnums_pb2

from relayd.meshapi.framing import StreamDecoder, encode_frame
from relayd.meshapi.packets import ADMIN_APP, TEXT_MESSAGE_APP, MalformedMessageError, parse_to_radio
from relayd.sim.handshake import config_stream
from relayd.sim.medium import SendResult

if TYPE_CHECKING:
    from relayd.sim.firmware import SimRadio

# PhoneAPI::handleToRadioPacket rate limits per portnum (ms in the firmware): texts every 2 s
# (plus a Routing error), position/waypoint/alert/telemetry every 10 s (queueStatus only).
TEN_SECOND_PORTS = frozenset(
    (
        portnums_pb2.PortNum.POSITION_APP,
        portnums_pb2.PortNum.WAYPOINT_APP,
        portnums_pb2.PortNum.ALERT_APP,
        portnums_pb2.PortNum.TELEMETRY_APP,
    )
)

# PhoneAPI::handleToRadioPacket: a TEXT_MESSAGE_APP packet less than TWO_SECONDS_MS after the
# previous one from the same client connection is dropped with RATE_LIMIT_EXCEEDED.
TEXT_RATE_LIMIT_S = 2.0
# PhoneAPI::wasSeenRecently remembers the last 20 packet ids the client sent.
RECENT_CLIENT_IDS = 20
# Firmware ErrorCode values reported in QueueStatus.res (mesh/MeshTypes.h).
ERRNO_OK = 0
ERRNO_UNKNOWN = 32
ERRNO_DISABLED = 34
ROUTING_ERROR = mesh_pb2.Routing.Error


@dataclass(slots=True)
class ClientMemory:
    # PhoneAPI::lastPortNumToRadio: when a packet of each portnum was last accepted (the
    # per-portnum rate limits start from it).
    last_port_s: dict[int, float]
    # PhoneAPI::recentToRadioPacketIds: the last 20 client packet ids (wasSeenRecently).
    recent_ids: deque[int]

    def __init__(self) -> None:
        self.last_port_s = {}
        self.recent_ids = deque(maxlen=RECENT_CLIENT_IDS)


class SessionState(Enum):
    NOTHING = auto()  # connected, no want_config_id yet (firmware STATE_SEND_NOTHING)
    PACKETS = auto()  # handshake done, packets flow (STATE_SEND_PACKETS)
    CLOSED = auto()


class PhoneSession:
    """One client connection: framing, the config handshake and packets both ways."""

    def __init__(
        self,
        radio: SimRadio,
        sink: Callable[[bytes], None],
        on_close: Callable[[], None],
        *,
        memory: ClientMemory | None = None,
    ) -> None:
        self.radio = radio
        self._sink = sink
        self._on_close = on_close
        self.decoder = StreamDecoder()
        self.state = SessionState.NOTHING
        self.malformed = 0
        # What PhoneAPI remembers about its client: a TCP connection gets a fresh PhoneAPI; the
        # serial API is one object for the radio's uptime, so a serial client that reconnects
        # meets the same memory (radio.serial_memory).
        memory = memory or ClientMemory()
        self._last_port_s = memory.last_port_s
        self._recent_ids = memory.recent_ids

    # -- input -------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        for payload in self.decoder.feed(data):
            if self.state is SessionState.CLOSED:
                return
            try:
                msg = parse_to_radio(payload)
            except MalformedMessageError:
                # PhoneAPI::handleToRadio: "Error: ignore malformed toradio" -- link stays up.
                self.malformed += 1
                continue
            self.handle(msg)

    def handle(self, msg: Any) -> None:
        which = msg.WhichOneof("payload_variant")
        if which == "want_config_id":
            self._send_config(int(msg.want_config_id))
        elif which == "packet":
            self._handle_packet(msg.packet)
        elif which == "heartbeat":
            if msg.heartbeat.nonce == 1:
                # 2.8: nonce 1 is a "nodeinfo ping": a NodeInfo broadcast (at most one a minute,
                # NodeInfoModule's short cooldown) and no answer to the client.
                self.radio.nodeinfo_ping()
            else:
                # Any other heartbeat is answered with the current queue status.
                self._send_queue_status(ERRNO_OK, 0)
        elif which == "disconnect":
            # PhoneAPI::close(): back to STATE_SEND_NOTHING; the transport stays open.
            self.state = SessionState.NOTHING
            self._last_port_s.clear()

    # -- output ------------------------------------------------------------------------------------

    def emit(self, fr: Any) -> None:
        if self.state is SessionState.CLOSED:
            return
        fr.id = self.radio.next_from_radio_id()
        self._sink(encode_frame(fr.SerializeToString()))

    def close(self) -> None:
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        self.radio.detach(self)
        self._on_close()

    def send_rebooted(self) -> None:
        fr = mesh_pb2.FromRadio()
        fr.rebooted = True
        self.emit(fr)

    def push_packet(self, packet: Any) -> None:
        fr = mesh_pb2.FromRadio()
        fr.packet.CopyFrom(packet)
        self.emit(fr)

    @property
    def ready(self) -> bool:
        return self.state is SessionState.PACKETS

    def _send_config(self, nonce: int) -> None:
        for fr in config_stream(self.radio, nonce):
            self.emit(fr)
        self.state = SessionState.PACKETS
        # Real radios hand over everything that queued up while no client was reading.
        self.radio.flush_to_phone()

    def send_queue_status(self, res: int, packet_id: int) -> None:
        """MeshService::sendQueueStatusToPhone (also when a queued packet leaves the radio)."""
        if self.ready:
            self._send_queue_status(res, packet_id)

    def _send_queue_status(self, res: int, packet_id: int) -> None:
        fr = mesh_pb2.FromRadio()
        fr.queueStatus.res = res
        fr.queueStatus.free = max(self.radio.port.tx_queue_free(self.radio.name), 0)
        fr.queueStatus.maxlen = 16
        fr.queueStatus.mesh_packet_id = packet_id
        self.emit(fr)

    def _notify(self, level: int, reply_id: int, message: str) -> None:
        fr = mesh_pb2.FromRadio()
        fr.clientNotification.level = level
        fr.clientNotification.reply_id = reply_id
        fr.clientNotification.time = int(self.radio.wall_clock())
        fr.clientNotification.message = message
        self.emit(fr)

    def _handle_packet(self, p: Any) -> None:
        radio = self.radio
        if p.id and p.id in self._recent_ids:
            # PhoneAPI::wasSeenRecently: a resent id is ignored silently. (meshtasticd in SimRadio
            # mode skips this check; radios on real hardware do it -- see docs/simulator.md.)
            return
        if p.id:
            self._recent_ids.append(p.id)
        portnum = p.decoded.portnum if p.HasField("decoded") else 0
        now = radio.port.sim_now_s()
        last = self._last_port_s.get(portnum)
        if portnum in TEN_SECOND_PORTS and last is not None and now - last < 10.0:
            # Dropped with a queueStatus (res 0) and nothing else.
            self._send_queue_status(ERRNO_OK, p.id)
            return
        if portnum == TEXT_MESSAGE_APP and last is not None and now - last < TEXT_RATE_LIMIT_S:
            # queueStatus (res 0!) and a Routing error from sendRoutingErrorResponse, which
            # addresses it to the packet's `from` as the client wrote it: with from = 0 the error
            # goes on air to node 0 and the client never sees it. The "last text" time is not
            # updated.
            self._send_queue_status(ERRNO_OK, p.id)
            radio.routing_error_to(getattr(p, "from"), p, ROUTING_ERROR.RATE_LIMIT_EXCEEDED)
            return
        self._last_port_s[portnum] = now
        if p.channel >= len(radio.channels_in_use()):
            self._send_queue_status(ROUTING_ERROR.NO_CHANNEL, p.id)
            radio.routing_to_phone(p, ROUTING_ERROR.NO_CHANNEL, from_num=radio.num)
            return
        if p.HasField("decoded") and not radio.fits_one_frame(p):
            # Router::send: TOO_LARGE in queueStatus.res and a NAK to our own client (whatever
            # `from` says: by then MeshService has set it to our node number).
            self._send_queue_status(ROUTING_ERROR.TOO_LARGE, p.id)
            radio.routing_to_phone(p, ROUTING_ERROR.TOO_LARGE, from_num=radio.num)
            return
        if portnum == ADMIN_APP and p.to in (radio.num, 0):
            radio.handle_admin(p, self)
            return
        packet_id, res = radio.originate(p)
        self._send_queue_status(ERRNO_OK if res is SendResult.QUEUED else ERRNO_UNKNOWN, packet_id)
