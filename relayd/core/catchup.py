"""Late-joiner catch-up: a responder who switches a handheld on after an alert went out.

A stock handheld shows only what it heard while it was on. When a relay hears a node it has
not heard for a while (its radio booted: Meshtastic announces itself with a NodeInfo), the
active urgent and warning alerts issued while it was silent are sent to it by direct
message, so the responder sees what is going on now. Decided here without I/O:

* a node counts as absent only after `absent_s` of silence, and only alerts issued *during*
  that silence are sent (an alert issued while we could hear it, it heard too);
* stock firmware announces a boot 30 s after it (MESHMODULE_MIN_BROADCAST_DELAY_MS), so an
  alert issued in the `boot_announce_s` before the announcement went out while the handheld
  was already on and listening: not sent again;
* a node first heard after this relay has been up for `absent_s` is treated as silent since
  the relay started; at startup every node is new, so nothing is sent until then;
* each (node, alert) pair at most once; at most `max_alerts` per catch-up, urgent first,
  and one catch-up per node per `per_node_interval_s`;
* only node numbers and times are kept, in memory, bounded: nothing about where anyone is.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from relayd.core.model import Severity

# Stock firmware's first broadcast after a boot (NodeInfoModule: MESHMODULE_MIN_BROADCAST_DELAY_MS).
BOOT_ANNOUNCE_S = 30.0
_CATCH_UP_SEVERITIES = frozenset({Severity.URGENT, Severity.WARNING})
_NODES_MAX = 2048
_SENT_MAX = 8192


@dataclass(frozen=True, slots=True)
class CatchupPolicy:
    absent_s: float = 1800.0
    per_node_interval_s: float = 600.0
    max_alerts: int = 3
    boot_announce_s: float = BOOT_ANNOUNCE_S


@dataclass(frozen=True, slots=True)
class ActiveFrame:
    """An active alert as the relay would put it on air again."""

    alert_id: bytes
    onair: str
    severity: Severity
    issued_at_s: int
    expires_at_s: int


class LateJoiners:
    """One per relay; the caller passes the time and the currently active alerts."""

    def __init__(self, started_at_s: float, policy: CatchupPolicy | None = None) -> None:
        self.policy = policy or CatchupPolicy()
        self.started_at_s = started_at_s
        self._last_heard: OrderedDict[int, float] = OrderedDict()
        self._last_catchup: dict[int, float] = {}
        self._sent: OrderedDict[tuple[int, bytes], None] = OrderedDict()

    def heard(self, node: int, now_s: float, active: Iterable[ActiveFrame]) -> list[ActiveFrame]:
        """The node was just heard: which alerts to send it now (often none)."""
        silent_since = self._last_heard.get(node, self.started_at_s)
        self._last_heard[node] = now_s
        self._last_heard.move_to_end(node)
        if len(self._last_heard) > _NODES_MAX:
            self._last_heard.popitem(last=False)
        if now_s - silent_since < self.policy.absent_s:
            return []
        last = self._last_catchup.get(node)
        if last is not None and now_s - last < self.policy.per_node_interval_s:
            return []
        missed = [
            a
            for a in active
            if a.severity in _CATCH_UP_SEVERITIES
            # Issue times are whole seconds: one in the second the silence began counts.
            and int(silent_since) <= a.issued_at_s
            and a.issued_at_s < now_s - self.policy.boot_announce_s
            and now_s < a.expires_at_s
            and (node, a.alert_id) not in self._sent
        ]
        missed.sort(key=lambda a: (a.severity.rank, -a.issued_at_s))
        chosen = missed[: self.policy.max_alerts]
        if chosen:
            self._last_catchup[node] = now_s
            if len(self._last_catchup) > _NODES_MAX:
                self._last_catchup.pop(next(iter(self._last_catchup)))
        for a in chosen:
            self._sent[(node, a.alert_id)] = None
            if len(self._sent) > _SENT_MAX:
                self._sent.popitem(last=False)
        return chosen
