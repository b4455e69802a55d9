"""Small typed helpers around the `meshtastic` protobufs used on the device API.

The protobuf classes are untyped at runtime (stubs only); these helpers give the rest of
relayd a narrow, typed surface and convert protobuf decode errors into `MalformedMessageError`.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError
from meshtastic.protobuf import admin_pb2, mesh_pb2, portnums_pb2

# Meshtastic reserves 0xFFFFFFFF as "everyone" (firmware NODENUM_BROADCAST).
BROADCAST_NUM = 0xFFFFFFFF
TEXT_MESSAGE_APP: int = portnums_pb2.PortNum.TEXT_MESSAGE_APP
ROUTING_APP: int = portnums_pb2.PortNum.ROUTING_APP
ADMIN_APP: int = portnums_pb2.PortNum.ADMIN_APP
NODEINFO_APP: int = portnums_pb2.PortNum.NODEINFO_APP
# The BEL character: Meshtastic's external-notification module rings the bell
# (module_config.external_notification.alert_bell) for a text that contains it.
BELL_CHAR = "\x07"

MeshPacket = Any  # mesh_pb2.MeshPacket; protobuf classes are not usable as static types here
FromRadio = Any
ToRadio = Any


class MalformedMessageError(ValueError):
    """A frame's payload is not a valid protobuf of the expected type."""

    def __init__(self, kind: str, payload: bytes) -> None:
        super().__init__(f"malformed {kind} ({len(payload)} bytes)")
        self.kind = kind
        self.payload = payload


def is_node_announcement(p: MeshPacket) -> bool:
    """A node's NodeInfo broadcast: what a handheld sends when it boots (30 s in), when its phone
    app reconnects (the nodeinfo ping) and every few hours. Not its NodeInfo sent straight to one
    node: stock firmware sends that to any node it hears for the first time (MeshService, "Heard
    new node"), so it shows the sender was on and listening, not that it is back."""
    return p.HasField("decoded") and int(p.decoded.portnum) == NODEINFO_APP and int(p.to) == BROADCAST_NUM


def heard_on_rf(info: Any, my_node: int | None) -> tuple[int, int | None, float | None] | None:
    """A node the radio's node DB (kept in its flash) says it heard on RF: (node, its low byte
    if it was heard directly -- no hop used --, when, or None if the radio did not know the
    time then). The firmware adds a node when it hears a packet from it; it sets last_heard
    only while its clock is valid (0 on a radio nobody has given the time since its boot) and
    hops_away from the packet's header. None for our own node, a node with neither, or one
    learned through an MQTT gateway."""
    heard_at = float(info.last_heard) if int(info.last_heard) > 0 else None
    has_hops = info.HasField("hops_away")
    if info.via_mqtt or info.num == my_node or (heard_at is None and not has_hops):
        return None
    direct = has_hops and info.hops_away == 0
    return int(info.num), int(info.num) & 0xFF if direct else None, heard_at


def node_id(num: int) -> str:
    """Meshtastic's user-facing node id, e.g. ``!a1b2c3d4``."""
    return f"!{num & 0xFFFFFFFF:08x}"


def parse_node_id(text: str) -> int:
    """Inverse of `node_id`; also accepts a plain decimal or ``0x`` number."""
    s = text.strip()
    if s.startswith("!"):
        return int(s[1:], 16)
    return int(s, 0)


def parse_to_radio(payload: bytes) -> ToRadio:
    msg = mesh_pb2.ToRadio()
    try:
        msg.ParseFromString(payload)
    except DecodeError as exc:
        raise MalformedMessageError("ToRadio", payload) from exc
    return msg


def parse_from_radio(payload: bytes) -> FromRadio:
    msg = mesh_pb2.FromRadio()
    try:
        msg.ParseFromString(payload)
    except DecodeError as exc:
        raise MalformedMessageError("FromRadio", payload) from exc
    return msg


def text_packet(
    text: str,
    *,
    to: int = BROADCAST_NUM,
    channel_index: int = 0,
    want_ack: bool = False,
    packet_id: int = 0,
    hop_limit: int = 0,
    from_node: int = 0,
) -> MeshPacket:
    """A client-side MeshPacket carrying a TEXT_MESSAGE_APP payload (UTF-8).

    Real firmware needs ``from_node`` (the radio's own number) to route its Routing errors
    back to the client, and ``hop_limit`` set unless ``want_ack`` is (``Router::sendLocal``)."""
    pkt = mesh_pb2.MeshPacket()
    setattr(pkt, "from", from_node)
    pkt.to = to
    pkt.channel = channel_index
    pkt.want_ack = want_ack
    pkt.id = packet_id
    pkt.hop_limit = hop_limit
    pkt.decoded.portnum = TEXT_MESSAGE_APP
    pkt.decoded.payload = text.encode("utf-8")
    return pkt


def to_radio_packet(packet: MeshPacket) -> bytes:
    msg = mesh_pb2.ToRadio()
    msg.packet.CopyFrom(packet)
    return bytes(msg.SerializeToString())


def to_radio_want_config(nonce: int) -> bytes:
    msg = mesh_pb2.ToRadio()
    msg.want_config_id = nonce
    return bytes(msg.SerializeToString())


# Firmware 2.8 (PhoneAPI::handleToRadio): a heartbeat with nonce 1 is a "nodeinfo ping": the
# radio broadcasts its NodeInfo (asking for replies), at most once a minute, and answers the
# client nothing. Older firmware takes it as a plain heartbeat.
NODEINFO_PING_NONCE = 1


def to_radio_heartbeat(nonce: int = 0) -> bytes:
    msg = mesh_pb2.ToRadio()
    msg.heartbeat.SetInParent()
    if nonce:
        msg.heartbeat.nonce = nonce
    return bytes(msg.SerializeToString())


def to_radio_disconnect() -> bytes:
    msg = mesh_pb2.ToRadio()
    msg.disconnect = True
    return bytes(msg.SerializeToString())


def from_radio_variant(msg: FromRadio) -> str:
    """Name of the FromRadio oneof that is set (``packet``, ``my_info``, ...), or ``""``."""
    which = msg.WhichOneof("payload_variant")
    return str(which) if which else ""


def admin_set_time_packet(my_node: int, epoch_s: int) -> MeshPacket:
    """AdminMessage.set_time_only to our own radio: sets its clock so that ``rx_time`` on
    received packets is meaningful (it is 0 on a radio without GPS, NTP or a client's time)."""
    admin = admin_pb2.AdminMessage()
    admin.set_time_only = epoch_s
    pkt = mesh_pb2.MeshPacket()
    pkt.to = my_node
    setattr(pkt, "from", my_node)
    pkt.decoded.portnum = ADMIN_APP
    pkt.decoded.payload = admin.SerializeToString()
    return pkt
