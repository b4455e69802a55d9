"""Multi-gateway suppression: a per-alert order among relays, stand-down on hearing a copy."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from relayd.core.airtime import LONG_FAST, MAX_DATA_PAYLOAD_BYTES, mesh_frame_time_on_air_s
from relayd.core.suppression import (
    Adjacency,
    NeighbourMemory,
    RankScope,
    Suppressor,
    adjacency,
    honours_evidence,
    mac_slot_s,
    rank_of,
    rank_peers,
    relayed_copy_s,
)

RELAYS = ["relay-north", "relay-center", "relay-south"]


@given(st.binary(min_size=8, max_size=8))
def test_every_relay_computes_the_same_order(alert_id: bytes) -> None:
    ranks = sorted(rank_of(r, alert_id, [p for p in RELAYS if p != r]) for r in RELAYS)
    assert ranks == [0, 1, 2]


def test_first_place_rotates_between_relays() -> None:
    firsts = dict.fromkeys(RELAYS, 0)
    for n in range(300):
        alert_id = n.to_bytes(8, "big")
        first = next(r for r in RELAYS if rank_of(r, alert_id, RELAYS) == 0)
        firsts[first] += 1
    assert all(60 < c < 140 for c in firsts.values()), firsts


def test_hearing_a_copy_during_the_hold_suppresses() -> None:
    s = Suppressor("relay-north", slot_s=3.0, jitter_s=0.0, rng=random.Random(1))
    alert_id = next(
        n.to_bytes(8, "big") for n in range(100) if rank_of("relay-north", n.to_bytes(8, "big"), RELAYS) == 2
    )
    release = s.hold(alert_id, 100.0, RELAYS)
    assert release == 106.0
    assert s.due(105.9) == []
    assert s.heard_on_rf(alert_id)
    assert s.suppressed == 1
    assert s.due(200.0) == []


def test_rank_zero_releases_at_once_and_disabled_never_suppresses() -> None:
    alert_id = next(
        n.to_bytes(8, "big") for n in range(100) if rank_of("relay-north", n.to_bytes(8, "big"), RELAYS) == 0
    )
    s = Suppressor("relay-north", slot_s=3.0, jitter_s=0.0)
    s.hold(alert_id, 10.0, RELAYS)
    assert s.due(10.0) == [alert_id]
    naive = Suppressor("relay-north", slot_s=3.0, enabled=False)
    naive.hold(alert_id, 10.0, RELAYS)
    assert not naive.heard_on_rf(alert_id)
    assert naive.due(10.0) == [alert_id]


# -- ranking among RF neighbours ------------------------------------------------------------

NODES = {"relay-north": 0x10, "relay-center": 0x20, "relay-south": 0x30}


def test_heard_either_way_is_a_neighbour_and_beats_unheard() -> None:
    memory = NeighbourMemory(
        peer_nodes=NODES,
        heard_nodes=frozenset({0x20}),
        heard_by=frozenset({"relay-south"}),
        unheard=frozenset({"relay-center", "relay-south", "relay-far"}),
    )
    assert adjacency("relay-center", memory) is Adjacency.NEIGHBOUR  # we heard its radio
    assert adjacency("relay-south", memory) is Adjacency.NEIGHBOUR  # its radio heard ours
    assert adjacency("relay-far", memory) is Adjacency.APART
    assert adjacency("relay-new", memory) is Adjacency.UNKNOWN
    assert honours_evidence("relay-center", memory)
    assert honours_evidence("relay-south", memory)
    assert not honours_evidence("relay-new", memory)  # unclassified: never stand down on its word
    assert not honours_evidence("relay-far", memory)


def test_rank_peers_leaves_out_relays_apart_and_broker_scope_keeps_everyone() -> None:
    memory = NeighbourMemory(
        peer_nodes=NODES, heard_nodes=frozenset({0x20}), unheard=frozenset({"relay-south"})
    )
    online = ["relay-north", "relay-center", "relay-south", "relay-new"]
    assert rank_peers("relay-north", online, memory) == {"relay-center", "relay-new"}
    assert rank_peers("relay-north", online, memory, RankScope.BROKER) == {
        "relay-center",
        "relay-south",
        "relay-new",
    }


def test_a_relay_with_no_rf_neighbour_transmits_at_once() -> None:
    others = [f"relay-{i}" for i in range(30)]
    memory = NeighbourMemory(unheard=frozenset(others))
    s = Suppressor("relay-alone", slot_s=3.0, jitter_s=0.0)
    for n in range(50):
        alert_id = n.to_bytes(8, "big")
        assert s.delay_s(alert_id, rank_peers("relay-alone", others, memory)) == 0.0


def test_extend_only_ever_postpones_a_held_alert() -> None:
    s = Suppressor("relay-north", slot_s=3.0, jitter_s=0.0)
    alert_id = b"\x01" * 8
    assert not s.extend(alert_id, 50.0)  # not held: nothing to extend
    release = s.hold(alert_id, 10.0, RELAYS)
    assert s.extend(alert_id, release - 1.0)
    assert s.due(release) == [alert_id]
    s.hold(alert_id, 10.0, RELAYS)
    s.extend(alert_id, 40.0)
    assert s.due(39.9) == []
    assert s.due(40.0) == [alert_id]


def test_the_wait_for_a_relayed_copy_covers_a_router_late_rebroadcast() -> None:
    frame = mesh_frame_time_on_air_s(MAX_DATA_PAYLOAD_BYTES, LONG_FAST)
    # LongFast: 77 ms MAC slots; a ROUTER_LATE radio waits up to 2 x 272 slots (42 s).
    assert 0.077 < mac_slot_s(LONG_FAST) < 0.078
    assert 44.0 < relayed_copy_s(LONG_FAST, frame) < 48.0


relay_names = st.sampled_from([f"relay-{i}" for i in range(12)])


@st.composite
def memories(draw: st.DrawFn) -> tuple[str, NeighbourMemory, frozenset[str]]:
    """(this relay, its memory, the online peers it knows about)."""
    me = draw(relay_names)
    peers = draw(st.frozensets(relay_names, max_size=8)) - {me}
    nodes = {r: 0x100 + i for i, r in enumerate(sorted(peers))}
    heard = draw(st.frozensets(st.sampled_from(sorted(nodes.values()) or [0]), max_size=8))
    heard_by = draw(st.frozensets(st.sampled_from(sorted(peers) or [me]), max_size=8)) - {me}
    unheard = draw(st.frozensets(st.sampled_from(sorted(peers) or [me]), max_size=8)) - {me}
    memory = NeighbourMemory(peer_nodes=nodes, heard_nodes=heard, heard_by=heard_by, unheard=unheard)
    return me, memory, peers


@given(
    memories(),
    st.frozensets(st.sampled_from([f"far-{i}" for i in range(40)]), max_size=40),
    st.binary(min_size=8, max_size=8),
)
def test_delay_never_depends_on_relays_outside_the_neighbour_set(
    case: tuple[str, NeighbourMemory, frozenset[str]], far: frozenset[str], alert_id: bytes
) -> None:
    """Any number of relays apart from us (other clusters on the same broker, heard of only
    through their "transmitted" events) changes neither our rank set nor our delay."""
    me, memory, online = case
    city = NeighbourMemory(
        peer_nodes={**memory.peer_nodes, **{r: 0x9000 + i for i, r in enumerate(sorted(far))}},
        heard_nodes=memory.heard_nodes,
        heard_by=memory.heard_by,
        unheard=memory.unheard | far,
    )
    alone = rank_peers(me, online, memory)
    with_city = rank_peers(me, online | far, city)
    assert with_city == alone
    a = Suppressor(me, slot_s=2.0, jitter_s=0.3, rng=random.Random(7))
    b = Suppressor(me, slot_s=2.0, jitter_s=0.3, rng=random.Random(7))
    assert a.delay_s(alert_id, alone, 0.5) == b.delay_s(alert_id, with_city, 0.5)


@given(memories(), st.binary(min_size=8, max_size=8))
def test_neighbours_and_unclassified_relays_are_always_ranked(
    case: tuple[str, NeighbourMemory, frozenset[str]], alert_id: bytes
) -> None:
    me, memory, online = case
    ranked = rank_peers(me, online, memory)
    for peer in online:
        assert (peer in ranked) == (adjacency(peer, memory) is not Adjacency.APART)
    assert 0 <= rank_of(me, alert_id, ranked) <= len(ranked)
