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
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

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


@dataclass
class Suppressor:
    relay_id: str
    slot_s: float
    jitter_s: float = 0.2
    enabled: bool = True
    rng: random.Random = field(default_factory=random.Random)
    _held: dict[bytes, float] = field(default_factory=dict)  # alert id -> release time
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
        release = now_s + self.delay_s(alert_id, peers, backlog_s)
        self._held[alert_id] = release
        return release

    def restore(self, alert_id: bytes, release_s: float) -> None:
        self._held[alert_id] = release_s

    def heard_on_rf(self, alert_id: bytes) -> bool:
        """Someone else put it on air: stand down. True if we were holding it."""
        if not self.enabled:
            return False
        if self._held.pop(alert_id, None) is not None:
            self.suppressed += 1
            return True
        return False

    def forget(self, alert_id: bytes) -> None:
        self._held.pop(alert_id, None)

    def due(self, now_s: float) -> list[bytes]:
        """Alerts whose hold is over, in release order; they leave the table."""
        ready = sorted((t, a) for a, t in self._held.items() if t <= now_s)
        for _, a in ready:
            del self._held[a]
        return [a for _, a in ready]

    def next_release_s(self) -> float | None:
        return min(self._held.values(), default=None)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._held

    def __len__(self) -> int:
        return len(self._held)
