"""Multi-gateway suppression: with N relays covering one area, about one transmits.

Trickle (RFC 6206) with redundancy constant k = 1: each relay that holds an alert from MQTT
waits a delay and transmits only if it has not heard the alert on RF meanwhile. Plain
Trickle draws the delay uniformly, which needs a long interval (about 10x the airtime) to
keep collisions between near-simultaneous picks rare. relayd orders the relays instead: for
each alert, every relay computes the same pseudo-random permutation of the relays it knows
(hash of alert id and relay id), and waits `rank * slot_s` plus a small jitter. The first
relay transmits at once; the next waits one slot (longer than a frame's airtime plus
latency), hears the first and stands down. If the first relay's radio is down, the next
one covers after one slot, and the load rotates between relays from alert to alert.

Who counts as "the relays it knows" is the relay's RF neighbourhood (`rank_peers`), not every
relay on the broker: on a city broker with many separate clusters, ranking among all of them
would make each cluster wait for relays whose frames can never reach it. A neighbour is a
relay whose radio this relay's radio has heard (directly or through a rebroadcast), or one
whose status says its radio heard ours; a relay that heard one of our neighbours is two hops
away and counts too. A relay nothing is known about yet (a fresh install) still counts, so
that a cold start does not put three copies on air; one that transmitted while we listened
and was never heard, or that hears relays but none of ours, is apart and does not count.
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from relayd.core.airtime import LoRaPreset

# The most slots any relay waits, however many peers are online: a relay ranked lower still
# holds for MAX_RANK slots (by then rank 0 has long been heard) instead of one slot per peer,
# so no set of peers -- genuine or not -- can hold an alert back without bound.
MAX_RANK = 8


def rank_of(relay_id: str, alert_id: bytes, peers: Iterable[str]) -> int:
    """This relay's position in the alert's transmission order among `peers` (+ itself)."""
    everyone = set(peers) | {relay_id}

    def draw(r: str) -> bytes:
        return hashlib.sha256(alert_id + r.encode()).digest()

    ordered = sorted(everyone, key=draw)
    return ordered.index(relay_id)


class Adjacency(enum.Enum):
    NEIGHBOUR = "neighbour"  # one radio heard the other: rank with it
    TWO_HOP = "two-hop"  # it heard a neighbour of ours, whose radio rebroadcasts its frames to us
    UNKNOWN = "unknown"  # nothing to go by yet: rank with it
    APART = "apart"  # another cluster: unheard while we listened, or it hears none of ours


class RankScope(enum.Enum):
    RF = "rf"  # rank among RF neighbours (and relays not classified yet)
    BROKER = "broker"  # rank among every online relay on the broker (the old behaviour)


@dataclass(frozen=True, slots=True)
class NeighbourMemory:
    """What a relay knows about which relays share its air (kept across restarts)."""

    peer_nodes: Mapping[str, int] = field(default_factory=dict)  # relay -> its radio's node
    heard_nodes: frozenset[int] = frozenset()  # nodes our radio heard (any hop)
    heard_by: frozenset[str] = frozenset()  # relays whose status says they heard our radio
    unheard: frozenset[str] = frozenset()  # relays that transmitted unheard while we listened
    # relay -> the relay radios its status says it heard (status "rf_heard")
    peer_heard: Mapping[str, frozenset[int]] = field(default_factory=dict)


def _direct(relay: str, memory: NeighbourMemory) -> bool:
    node = memory.peer_nodes.get(relay)
    return (node is not None and node in memory.heard_nodes) or relay in memory.heard_by


def adjacency(relay: str, memory: NeighbourMemory) -> Adjacency:
    """Evidence of hearing (either way) wins over evidence of not hearing: a lossy link
    heard once is a neighbour, and a false "neighbour" costs a duplicate, never a miss.

    Relays of one cluster hear the same frames and read the same statuses, so they classify
    an outsider alike and keep taking turns in the same order."""
    if _direct(relay, memory):
        return Adjacency.NEIGHBOUR
    if relay in memory.unheard:
        return Adjacency.APART
    theirs = memory.peer_heard.get(relay, frozenset())
    ours = {n for r, n in memory.peer_nodes.items() if r != relay and _direct(r, memory)}
    if theirs & ours:
        return Adjacency.TWO_HOP
    if theirs and ours:
        return Adjacency.APART
    return Adjacency.UNKNOWN


def rank_peers(
    relay_id: str, online: Iterable[str], memory: NeighbourMemory, scope: RankScope = RankScope.RF
) -> frozenset[str]:
    """The online peers this relay ranks itself among for an alert."""
    peers = frozenset(online) - {relay_id}
    if scope is RankScope.BROKER:
        return peers
    return frozenset(p for p in peers if adjacency(p, memory) is not Adjacency.APART)


def honours_evidence(relay: str, memory: NeighbourMemory) -> bool:
    """Stand down at once on this peer's "transmitted" only if our own radio has heard its
    radio: its frame reaches our area, and no MQTT message can fake that. A relay in another
    neighbourhood must never silence ours, and neither must a status that only claims to
    have heard us (a compromised relay account could publish one). For every other ranked
    peer, the relay waits for the RF copy instead (`Suppressor.wait_for_copy`)."""
    node = memory.peer_nodes.get(relay)
    return node is not None and node in memory.heard_nodes


# Meshtastic's contention window (RadioInterface: CWmin 3, CWmax 8) in slots, and the extra
# wait of a ROUTER_LATE rebroadcast (FloodingRouter: after every CLIENT's window).
_CW_MAX = 8
_CLIENT_WINDOW_SLOTS = 2 * _CW_MAX + (1 << _CW_MAX)
_ROUTER_LATE_SLOTS = 2 * _CW_MAX + (1 << _CW_MAX)


def mac_slot_s(preset: LoRaPreset) -> float:
    """RadioInterface::applyModemConfig slotTimeMsec (CAD + propagation + turnaround + MAC)."""
    symbols_ms: float = 8.5 * float(1 << preset.spreading_factor) / (preset.bandwidth_hz / 1000.0)
    return (symbols_ms + 7.6) / 1000.0


def relayed_copy_s(preset: LoRaPreset, frame_s: float) -> float:
    """The longest a neighbour's frame takes to reach us through one rebroadcast by a
    ROUTER_LATE relay radio: its frame, the rebroadcaster's full wait, the copy. A relay
    waits this long for the RF copy of an unclassified peer's transmission (once per peer)."""
    return 2 * frame_s + (_CLIENT_WINDOW_SLOTS + _ROUTER_LATE_SLOTS) * mac_slot_s(preset)


@dataclass
class Suppressor:
    relay_id: str
    slot_s: float
    jitter_s: float = 0.2
    enabled: bool = True
    rng: random.Random = field(default_factory=random.Random)
    _held: dict[bytes, float] = field(default_factory=dict)  # alert id -> release time
    # alert id -> (hold start, this relay's own delay): a postponed hold keeps the order
    _since: dict[bytes, tuple[float, float]] = field(default_factory=dict)
    suppressed: int = 0

    def delay_s(self, alert_id: bytes, peers: Iterable[str], backlog_s: float = 0.0) -> float:
        """`backlog_s`: how long a relay ahead of us may need before it can transmit this
        alert (a burst queues behind the firmware's text interval); each rank waits for it."""
        if not self.enabled:
            return 0.0
        rank = min(rank_of(self.relay_id, alert_id, peers), MAX_RANK)
        return rank * (self.slot_s + backlog_s) + self.rng.uniform(0, self.jitter_s)

    def hold(self, alert_id: bytes, now_s: float, peers: Iterable[str], backlog_s: float = 0.0) -> float:
        """Start holding; returns the release time."""
        delay = self.delay_s(alert_id, peers, backlog_s)
        self._held[alert_id] = now_s + delay
        self._since[alert_id] = (now_s, delay)
        return now_s + delay

    def restore(self, alert_id: bytes, release_s: float, now_s: float | None = None) -> None:
        self._held[alert_id] = release_s
        if now_s is not None or alert_id not in self._since:
            start = release_s if now_s is None else now_s
            self._since[alert_id] = (start, release_s - start)

    def wait_for_copy(self, alert_id: bytes, copy_s: float) -> bool:
        """Postpone a held alert by `copy_s` past its turn, counted from when the hold
        started: relays that all postpone keep their order (the first still goes first, the
        next still hears it), and any number of calls postpone it once. True if held."""
        current = self._held.get(alert_id)
        if current is None:
            return False
        start, delay = self._since.get(alert_id, (current, 0.0))
        self._held[alert_id] = max(current, start + delay + copy_s)
        return True

    def turn_s(self, alert_id: bytes) -> float:
        """How long this relay's own turn for a held alert is (0 if not held)."""
        return self._since.get(alert_id, (0.0, 0.0))[1]

    def follow(
        self,
        relay: str,
        now_s: float,
        peers: Iterable[str],
        step_s: float,
        limits: Mapping[bytes, float],
    ) -> list[bytes]:
        """`relay`, ranked ahead of us, shows progress (its radio took or sent another alert
        at `now_s`): its queue is moving, and the alerts we hold behind it may be next. Our
        turn for each of them moves to one `step_s` (its next frame) plus our rank's slots
        after that progress, so a burst paced by its radio -- urgent first, retries, waits on a
        full queue -- keeps its order instead of our fixed wait running out first. Never
        earlier than before, and never past the alert's limit (`limits`: by its expiry, so
        no peer can hold one back without bound); alerts without a limit are left alone.
        Returns the alerts postponed."""
        if not self.enabled:
            return []
        everyone = frozenset(peers) | {relay}
        moved: list[bytes] = []
        for alert_id, current in self._held.items():
            limit = limits.get(alert_id)
            if limit is None:
                continue
            ours = rank_of(self.relay_id, alert_id, everyone)
            if rank_of(relay, alert_id, everyone) >= ours:
                continue  # it comes after us for this one: its progress says nothing
            until = min(now_s + step_s + min(ours, MAX_RANK) * self.slot_s, limit)
            if until > current:
                self._held[alert_id] = until
                moved.append(alert_id)
        return moved

    def heard_on_rf(self, alert_id: bytes) -> bool:
        """Someone else put it on air: stand down. True if we were holding it."""
        if not self.enabled:
            return False
        self._since.pop(alert_id, None)
        if self._held.pop(alert_id, None) is not None:
            self.suppressed += 1
            return True
        return False

    def forget(self, alert_id: bytes) -> None:
        self._held.pop(alert_id, None)
        self._since.pop(alert_id, None)

    def due(self, now_s: float) -> list[bytes]:
        """Alerts whose hold is over, in release order; they leave the table."""
        ready = sorted((t, a) for a, t in self._held.items() if t <= now_s)
        for _, a in ready:
            del self._held[a]
            self._since.pop(a, None)
        return [a for _, a in ready]

    def next_release_s(self) -> float | None:
        return min(self._held.values(), default=None)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._held

    def __len__(self) -> int:
        return len(self._held)
