"""Multi-gateway suppression: a per-alert order among relays, stand-down on hearing a copy."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from relayd.core.airtime import LONG_FAST, MAX_DATA_PAYLOAD_BYTES, mesh_frame_time_on_air_s
from relayd.core.suppression import (
    MAX_RANK,
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


def test_no_number_of_peers_holds_an_alert_past_max_rank_slots() -> None:
    s = Suppressor("relay-north", slot_s=1.0, jitter_s=0.0)
    crowd = [f"fake-{i}" for i in range(300)]
    worst = max(s.delay_s(n.to_bytes(8, "big"), crowd) for n in range(50))
    assert worst == MAX_RANK * 1.0


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
    # Only our own radio's hearing makes a peer's word enough to stand down: a status that
    # claims to have heard us could be a compromised relay account's.
    assert not honours_evidence("relay-south", memory)
    assert not honours_evidence("relay-new", memory)
    assert not honours_evidence("relay-far", memory)


def test_a_relay_that_heard_one_of_our_neighbours_is_two_hops_away() -> None:
    """A chain north - center - south where north and south never heard each other: each
    hears center, whose radio rebroadcasts the other's frames, so they take turns; each
    waits for the other's RF copy rather than standing down on its word."""
    memory = NeighbourMemory(
        peer_nodes=NODES,
        heard_nodes=frozenset({0x20}),  # south heard center
        peer_heard={"relay-north": frozenset({0x20})},  # north heard center
    )
    assert adjacency("relay-north", memory) is Adjacency.TWO_HOP
    assert not honours_evidence("relay-north", memory)
    assert rank_peers("relay-south", ["relay-north", "relay-center"], memory) == {
        "relay-north",
        "relay-center",
    }


def test_a_relay_that_hears_relays_but_none_of_ours_is_apart() -> None:
    nodes = {**NODES, "far-a": 0x90, "far-b": 0x91}
    memory = NeighbourMemory(
        peer_nodes=nodes,
        heard_nodes=frozenset({0x20}),
        peer_heard={"far-a": frozenset({0x91}), "far-b": frozenset()},
    )
    assert adjacency("far-a", memory) is Adjacency.APART
    assert adjacency("far-b", memory) is Adjacency.UNKNOWN  # heard nobody yet: could be anywhere
    cold = NeighbourMemory(peer_nodes=nodes, peer_heard={"far-a": frozenset({0x91})})
    assert adjacency("far-a", cold) is Adjacency.UNKNOWN  # we know no neighbour: cannot tell


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


def test_waiting_for_a_copy_postpones_once_and_keeps_the_order() -> None:
    first = Suppressor("relay-a", slot_s=3.0, jitter_s=0.0)
    second = Suppressor("relay-b", slot_s=3.0, jitter_s=0.0)
    alert_id = next(
        n.to_bytes(8, "big")
        for n in range(100)
        if rank_of("relay-a", n.to_bytes(8, "big"), ["relay-b", "relay-c"]) == 1
        and rank_of("relay-b", n.to_bytes(8, "big"), ["relay-a", "relay-c"]) == 2
    )
    assert not first.wait_for_copy(alert_id, 40.0)  # not held: nothing to postpone
    assert first.hold(alert_id, 10.0, ["relay-b", "relay-c"]) == 13.0
    assert second.hold(alert_id, 10.0, ["relay-a", "relay-c"]) == 16.0
    # relay-c transmitted; neither has classified it yet: both wait for its RF copy.
    for _ in range(3):  # every further unknown peer's event: still postponed only once
        assert first.wait_for_copy(alert_id, 40.0)
        assert second.wait_for_copy(alert_id, 40.0)
    assert first.due(52.9) == []
    assert first.due(53.0) == [alert_id]
    assert second.due(55.9) == []
    assert second.due(56.0) == [alert_id]  # one slot after relay-a: it hears relay-a first


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
    peer_heard = {
        r: draw(st.frozensets(st.sampled_from([*sorted(nodes.values()), 0x9999]), max_size=4))
        for r in draw(st.frozensets(st.sampled_from(sorted(peers) or [me]), max_size=8)) - {me}
    }
    memory = NeighbourMemory(
        peer_nodes=nodes, heard_nodes=heard, heard_by=heard_by, unheard=unheard, peer_heard=peer_heard
    )
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
    # Half the far relays were heard of only through their "transmitted" events (unheard), the
    # others only through statuses listing relays of their own cluster.
    far_nodes = {r: 0x9000 + i for i, r in enumerate(sorted(far))}
    by_events = frozenset(sorted(far)[::2])
    city = NeighbourMemory(
        peer_nodes={**memory.peer_nodes, **far_nodes},
        heard_nodes=memory.heard_nodes,
        heard_by=memory.heard_by,
        unheard=memory.unheard | by_events,
        peer_heard={**memory.peer_heard, **{r: frozenset({0x8000}) for r in far - by_events}},
    )
    has_neighbour = any(adjacency(r, memory) is Adjacency.NEIGHBOUR for r in memory.peer_nodes)
    if not has_neighbour:
        # With no neighbour of our own we cannot tell a far cluster from ours by its status
        # (a cold start): only relays unheard while we listened are apart.
        city = NeighbourMemory(
            peer_nodes=city.peer_nodes,
            heard_nodes=city.heard_nodes,
            heard_by=city.heard_by,
            unheard=memory.unheard | far,
            peer_heard=memory.peer_heard,
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
