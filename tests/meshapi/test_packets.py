"""Which packets say a node is (back) on the air, and which node DB entries that it was heard."""

from __future__ import annotations

from meshtastic.protobuf import mesh_pb2, portnums_pb2

from relayd.meshapi.packets import BROADCAST_NUM, NODEINFO_APP, heard_on_rf, is_node_announcement


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


def test_the_node_db_counts_as_heard_only_what_the_radio_heard_on_rf() -> None:
    def info(num: int, last_heard: int = 0, hops: int | None = None, via_mqtt: bool = False) -> object:
        n = mesh_pb2.NodeInfo(num=num, last_heard=last_heard, via_mqtt=via_mqtt)
        if hops is not None:
            n.hops_away = hops
        return n

    me = 0x11111111
    assert heard_on_rf(info(0x2222AB01, 1_800_000_000, 0), me) == (0x2222AB01, 0x01, 1_800_000_000.0)
    # A radio without the time keeps last_heard 0, but the hop count says it heard the node.
    assert heard_on_rf(info(0x2222AB02, 0, 0), me) == (0x2222AB02, 0x02, None)
    assert heard_on_rf(info(0x2222AB03, 1_800_000_000, 2), me) == (0x2222AB03, None, 1_800_000_000.0)
    assert heard_on_rf(info(0x2222AB04), me) is None  # listed, never heard
    assert heard_on_rf(info(0x2222AB05, 1_800_000_000, 0, via_mqtt=True), me) is None
    assert heard_on_rf(info(me, 1_800_000_000, 0), me) is None
