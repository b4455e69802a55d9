"""Authority beyond the role table: who may ring a drill, who may end whose alert.

The role table (relayd.core.model.ROLE_MAY_SIGN) says which kinds a key may sign. Two
rules need more than the kind (docs/protocol.md, "Authority"):

* A drill that rings (an urgent `test`: the handheld shows it behind a BEL) only from a
  dispatcher. Reporter and relay keys may sign quiet drills to test their path; a relay
  key sits on every unattended Pi, so a seized one must not be able to ring every handheld.
* An alert is ended (update, cancel, all-clear) only by its author or by a dispatcher. A
  verifier may update or all-clear its own alerts, never another's. That needs to know who
  wrote the referenced alert: `KnownAlerts` remembers the author of every accepted alert
  (bounded), and `ReferenceHold` keeps a frame whose reference is not known yet for a
  bounded time, in case the referenced alert is still on its way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from relayd.core.codec import BEL, display_prefix
from relayd.core.dedup import BoundedMap
from relayd.core.model import AlertFields, Kind, Role

KNOWN_ALERTS_MAX = 20_000
# A frame naming an alert this relay does not know waits this long, and at most this many
# wait at once (oldest dropped first): the referenced alert normally arrives within
# seconds (another topic, another relay's copy on RF).
HOLD_S = 120.0
HOLD_MAX = 64


@dataclass(frozen=True, slots=True)
class KnownAlert:
    key_id: bytes
    expires_at_s: int


class KnownAlerts:
    """Authors of accepted alerts, by alert id; bounded, oldest forgotten first."""

    def __init__(self, max_entries: int = KNOWN_ALERTS_MAX) -> None:
        self._by_id: BoundedMap[bytes, KnownAlert] = BoundedMap(max_entries)

    def remember(self, alert_id: bytes, fields: AlertFields) -> None:
        if fields.kind is not Kind.REPORT:
            self._by_id.put(alert_id, KnownAlert(fields.key_id, fields.expires_at_s))

    def get(self, alert_id: bytes) -> KnownAlert | None:
        return self._by_id.get(alert_id)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)


def rings(fields: AlertFields) -> bool:
    return BEL in display_prefix(fields.kind, fields.severity)


def authority_problem(role: Role, fields: AlertFields, referenced: KnownAlert | None) -> str | None:
    """Why this signer may not say this (None: it may). `referenced` is the author record of
    `fields.ref`, or None when unknown (the caller decides what unknown means)."""
    if fields.kind is Kind.TEST and rings(fields) and role is not Role.DISPATCHER:
        return f"only a dispatcher key may sign a drill that rings; a {role.value} key may not"
    ends_another_authors = (
        fields.kind.needs_reference and referenced is not None and referenced.key_id != fields.key_id
    )
    if ends_another_authors and role is not Role.DISPATCHER:
        ref = fields.ref.hex() if fields.ref else ""
        return (
            f"only its author or a dispatcher may {fields.kind.value} alert {ref}; "
            f"this {role.value} key is not its author"
        )
    return None


@dataclass(frozen=True, slots=True)
class Held:
    payload: bytes
    via: str
    until_s: float


class ReferenceHold:
    """Frames that name an alert not known yet, by the alert they name; bounded in count and time."""

    def __init__(self, hold_s: float = HOLD_S, max_frames: int = HOLD_MAX) -> None:
        self.hold_s = hold_s
        self._frames: BoundedMap[bytes, tuple[bytes, Held]] = BoundedMap(max_frames)

    def hold(self, ref: bytes, payload: bytes, via: str, now_s: float) -> Held | None:
        """Keep a frame (keyed by its bytes: the same frame twice is held once). Returns the
        oldest held frame if it had to make room (the caller drops it)."""
        evicted = self._frames.put(payload, (ref, Held(payload, via, now_s + self.hold_s)))
        return evicted[1][1] if evicted is not None else None

    def __contains__(self, payload: object) -> bool:
        return payload in self._frames

    def __len__(self) -> int:
        return len(self._frames)

    def _take(self, want: Callable[[tuple[bytes, Held]], bool]) -> list[Held]:
        out: list[Held] = []
        for payload in self._frames.snapshot():
            entry = self._frames.get(payload)
            if entry is not None and want(entry):
                self._frames.pop(payload)
                out.append(entry[1])
        return out

    def release(self, alert_id: bytes) -> list[Held]:
        """The frames waiting for `alert_id`, which is known now."""
        return self._take(lambda e: e[0] == alert_id)

    def expired(self, now_s: float) -> list[Held]:
        """The frames whose wait is over: drop them as `unknown_reference`."""
        return self._take(lambda e: e[1].until_s <= now_s)
