"""Whose events a relay subscribes to (relayd/core/eventscope.py) and the topics that gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relayd.core.eventscope import event_peers
from relayd.core.suppression import Adjacency, NeighbourMemory, RankScope, adjacency, honours_evidence
from relayd.core.topics import Topics

RELAYS = [f"r{i}" for i in range(6)]


def memory_strategy() -> st.SearchStrategy[NeighbourMemory]:
    nodes = st.dictionaries(st.sampled_from(RELAYS), st.integers(1, 8), max_size=6)
    names = st.frozensets(st.sampled_from(RELAYS))
    return st.builds(
        NeighbourMemory,
        peer_nodes=nodes,
        heard_nodes=st.frozensets(st.integers(1, 8)),
        heard_by=names,
        unheard=names,
        peer_heard=st.dictionaries(st.sampled_from(RELAYS), st.frozensets(st.integers(1, 8)), max_size=6),
    )


@given(memory_strategy(), st.frozensets(st.sampled_from(RELAYS)), st.sampled_from(list(RankScope)))
def test_a_relay_subscribes_to_exactly_the_events_it_would_act_on(
    memory: NeighbourMemory, known: frozenset[str], scope: RankScope
) -> None:
    me = "r0"
    chosen = event_peers(me, known, memory, scope)
    assert me not in chosen
    for peer in known - {me}:
        # The same test as Relay._on_peer_event: an event it would drop is not subscribed.
        acted_on = honours_evidence(peer, memory) or (
            scope is RankScope.RF and adjacency(peer, memory) is not Adjacency.APART
        )
        assert (peer in chosen) == acted_on, peer


def test_a_relay_in_another_cluster_is_not_subscribed_once_known_apart() -> None:
    near = NeighbourMemory(peer_nodes={"north": 1, "far": 9}, heard_nodes=frozenset({1}))
    assert event_peers("me", ["north", "far"], near) == {"north", "far"}  # far: not classified yet
    apart = NeighbourMemory(
        peer_nodes={"north": 1, "far": 9}, heard_nodes=frozenset({1}), unheard=frozenset({"far"})
    )
    assert event_peers("me", ["north", "far"], apart) == {"north"}


def test_the_topics_keep_statuses_and_the_control_plane_and_name_only_chosen_events() -> None:
    t = Topics("city")
    subs = t.relay_subscriptions(["south", "north", "bad/id"])
    assert subs[:5] == [t.outbox, t.alerts, t.reports, t.trust, t.status_wildcard]
    assert subs[5:] == [t.events("north"), t.events("south")]  # an invalid id is no topic
    assert t.events_wildcard not in subs
