"""Which packets say a node is (back) on the air."""

from __future__ import annotations

from meshtastic.protobuf import mesh_pb2, portnums_pb2

from relayd.meshapi.packets import BROADCAST_NUM, NODEINFO_APP, is_node_announcement


def packet(portnum: int, to: int) -> mesh_pb2.MeshPacket:
    p = mesh_pb2.MeshPacket()
    setattr(p, "from", 0x1234ABCD)
    p.to = to
    p.decoded.portnum = portnum
    return p


def test_a_nodeinfo_broadcast_is_an_announcement() -> None:
    assert is_node_announcement(packet(NODEINFO_APP, BROADCAST_NUM))


def test_a_nodeinfo_sent_straight_to_our_radio_is_not() -> None:
    # Stock firmware sends this to any node it hears for the first time: it was on all along.
    assert not is_node_announcement(packet(NODEINFO_APP, 0x0BADCAFE))


def test_other_broadcasts_and_undecodable_packets_are_not() -> None:
    assert not is_node_announcement(packet(portnums_pb2.PortNum.TELEMETRY_APP, BROADCAST_NUM))
    assert not is_node_announcement(packet(portnums_pb2.PortNum.POSITION_APP, BROADCAST_NUM))
    encrypted = mesh_pb2.MeshPacket()
    encrypted.to = BROADCAST_NUM
    encrypted.encrypted = b"\x01\x02"
    assert not is_node_announcement(encrypted)
