"""What a relay has learned about which relays share its air, and its persisted form.

The suppression rules (relayd/core/suppression.py) read a `NeighbourMemory` snapshot; this is
the one owner of the facts behind it: which radio node each peer relay owns (from its signed
status), which of those our radio has heard, which peers say they heard ours, which peers
transmitted while we listened without our hearing them, and the peers whose RF copy we are
waiting for. Pure: the caller passes the time and persists `doc()` when a method says the
memory changed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from relayd.core.control import MAX_PEERS
from relayd.core.status import RelayState, RelayStatus
from relayd.core.suppression import Adjacency, NeighbourMemory, adjacency


def _node_id(num: int) -> str:
    return f"!{num & 0xFFFFFFFF:08x}"


@dataclass
class Neighbours:
    peer_nodes: dict[str, int] = field(default_factory=dict)  # peer relay -> its radio's node
    heard_nodes: set[int] = field(default_factory=set)  # relay radios our radio has heard
    heard_by: set[str] = field(default_factory=set)  # peers whose status says they hear us
    unheard: set[str] = field(default_factory=set)  # transmitted unheard while we listened
    peer_heard: dict[str, frozenset[int]] = field(default_factory=dict)  # not kept across restarts
    # Unclassified peer -> (when to decide, our radios' connect count then): its RF copy is due.
    _awaiting: dict[str, tuple[float, int]] = field(default_factory=dict)

    def memory(self) -> NeighbourMemory:
        return NeighbourMemory(
            peer_nodes=self.peer_nodes,
            heard_nodes=frozenset(self.heard_nodes),
            heard_by=frozenset(self.heard_by),
            unheard=frozenset(self.unheard),
            peer_heard=self.peer_heard,
        )

    def load(self, raw: str) -> bool:
        """Restore from `doc()`. True if the stored form should be rewritten (an older relay
        kept every handheld it heard: forget them now)."""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            doc = json.loads(raw)
            peers = list(doc.get("peers", {}).items())[:MAX_PEERS]
            self.peer_nodes = {str(k): int(v) for k, v in peers}
            stored = {int(n) for n in doc.get("heard", [])}
            self.heard_nodes = stored & set(self.peer_nodes.values())
            self.heard_by = {str(r) for r in doc.get("heard_by", [])[:MAX_PEERS]}
            self.unheard = {str(r) for r in doc.get("unheard", [])[:MAX_PEERS]}
            return stored != self.heard_nodes
        return False

    def doc(self) -> str:
        # Only peer relays' radios: a seized relay must not list the handhelds it heard.
        peers = set(self.peer_nodes.values())
        return json.dumps(
            {
                "peers": self.peer_nodes,
                "heard": sorted(self.heard_nodes & peers),
                "heard_by": sorted(self.heard_by),
                "unheard": sorted(self.unheard),
            }
        )

    def rf_heard(self) -> tuple[str, ...]:
        """The peer relay radios ours has heard (our status's "rf_heard")."""
        return tuple(sorted({_node_id(n) for n in self.peer_nodes.values() if n in self.heard_nodes}))

    def knows_a_neighbour(self) -> bool:
        """Some peer relay's radio has been heard by ours, or says it hears ours."""
        return bool(self.heard_by) or any(n in self.heard_nodes for n in self.peer_nodes.values())

    def is_relay_radio(self, node: int) -> bool:
        return node in self.peer_nodes.values()

    def heard_node(self, node: int) -> bool:
        """Our radio heard `node`. True if that changed what is persisted."""
        if node in self.heard_nodes:
            return False
        self.heard_nodes.add(node)
        if node not in self.peer_nodes.values():
            return False
        self.unheard -= {r for r, n in self.peer_nodes.items() if n == node}
        return True

    def peer_status(self, relay: str, peer: RelayStatus, my_node: int | None) -> bool:
        """Learn a peer's radio node, and whether its radio hears ours. True if changed."""
        changed = False
        if peer.radio_node.startswith("!"):
            with contextlib.suppress(ValueError):
                node = int(peer.radio_node[1:], 16)
                if self.peer_nodes.get(relay) != node:
                    self.peer_nodes[relay] = node
                    changed = True
        heard: set[int] = set()
        for n in peer.rf_heard:
            with contextlib.suppress(ValueError):
                heard.add(int(n.removeprefix("!"), 16))
        self.peer_heard[relay] = frozenset(heard)
        if my_node is not None and peer.state is not RelayState.OFFLINE:
            hears_us = _node_id(my_node) in peer.rf_heard
            if hears_us != (relay in self.heard_by):
                changed = True
                if hears_us:
                    self.heard_by.add(relay)
                    self.unheard.discard(relay)
                else:
                    self.heard_by.discard(relay)
        return changed

    def forget(self, relay: str) -> None:
        """A peer whose relay key was revoked (a seized relay) stops steering us."""
        self.peer_nodes.pop(relay, None)

    def claimed_twice(self, relay: str, own: set[int | None]) -> bool:
        """Two relays (or we and a relay) claim one radio: one of them lies (a seized key)."""
        node = self.peer_nodes.get(relay)
        return node in own or any(n == node for r, n in self.peer_nodes.items() if r != relay)

    def await_copy(self, relay: str, deadline_s: float, connects: int) -> None:
        """A peer not heard yet transmitted: learn from whether its RF copy comes by
        `deadline_s`, while our radios (connected `connects` times so far) listen."""
        if relay not in self._awaiting:
            self._awaiting[relay] = (deadline_s, connects)

    def classify_awaited(self, now_s: float, listened: Callable[[int], bool]) -> bool:
        """A peer whose transmission never reached our listening radio is apart. `listened`
        says whether our radios stayed connected since the given connect count. True if
        changed."""
        changed = False
        for relay, (deadline, connects) in list(self._awaiting.items()):
            if now_s < deadline:
                continue
            del self._awaiting[relay]
            if listened(connects) and adjacency(relay, self.memory()) in (
                Adjacency.UNKNOWN,
                Adjacency.TWO_HOP,
            ):
                self.unheard.add(relay)
                changed = True
        return changed
