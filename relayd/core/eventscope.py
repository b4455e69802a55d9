"""Whose events a relay subscribes to: the peers whose events it can act on.

A relay acts on a peer's "taken"/"transmitted" events only for peers whose frames can reach
its area (relay.py `_on_peer_event`, relayd/core/suppression.py): with `rank_among = "rf"`,
every peer not known to be apart (a neighbour, two hops away, or not classified yet, whose
events teach the relay whether its RF copy arrives); with `rank_among = "broker"`, only
peers whose radio ours has heard. Every other peer's events would be delivered only to be
dropped, and on one city broker those are most of them: each relay's events to every relay
is relays² deliveries per alert, against relays x neighbours when scoped.
"""

from __future__ import annotations

from collections.abc import Iterable

from relayd.core.suppression import Adjacency, NeighbourMemory, RankScope, adjacency, honours_evidence


def event_peers(
    relay_id: str, known: Iterable[str], memory: NeighbourMemory, scope: RankScope = RankScope.RF
) -> frozenset[str]:
    """The peers (of those `known`, from their statuses or the neighbour memory) whose
    events this relay subscribes to; never itself."""
    peers = frozenset(known) - {relay_id}
    if scope is RankScope.BROKER:
        return frozenset(p for p in peers if honours_evidence(p, memory))
    return frozenset(p for p in peers if adjacency(p, memory) is not Adjacency.APART)
