"""The console's values: a feed item and its lifecycle, relay rows, inbox entries,
diagnostics, the feed filter and what one message changed. Plain data, no I/O.

`tui.model.Model` owns the instances; widgets read them.
"""

from __future__ import annotations

import enum
import json
from collections import deque
from dataclasses import dataclass, field

from relayd.core.codec import BEL
from relayd.core.model import DropReason, Kind, Role, Severity, SignedAlert
from relayd.core.status import EventKind, RelayStatus
from relayd.core.trust import TrustBundle

MAX_DIAGNOSTIC_LINES = 200
# Rejected frames (forgeries, wrong roles, revoked keys) are not feed items: they are listed
# here by id and reason, without their text, so a flood of them evicts nothing genuine.
MAX_REJECTED_FRAMES = 100


class VerifyState(enum.Enum):
    VERIFIED = "verified"  # signature, key, role and time all check out
    REJECTED = "rejected"  # `reason` says why
    REPORT = "report"  # a report: the relay's signature is valid, the content is unverified
    UNCHECKED = "unchecked"  # no trust bundle loaded


class Source(enum.Enum):
    OUTBOX = "outbox"
    ALERTS = "alerts"
    ACTIVE = "active"
    REPORTS = "reports"
    SENT = "sent"  # composed and published by this TUI


class Lifecycle(enum.Enum):
    """Where an alert stands, as far as verified messages say (the Feed's state column)."""

    ACTIVE = "active"
    UPDATED = "updated"  # active, and a verified update refers to it
    CANCELLED = "cancelled"
    ALLCLEAR = "all-clear"
    EXPIRED = "expired"
    ENDS = "ends"  # a cancel or all-clear itself, until it expires
    REPORT = "report"

    @property
    def live(self) -> bool:
        return self in (Lifecycle.ACTIVE, Lifecycle.UPDATED)


class InboxStatus(enum.Enum):
    NEW = "new"
    VERIFIER_DISPATCHED = "verifier dispatched"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"


class Topic(enum.Enum):
    """Which part of the topic layout a message arrived on (diagnostics count by this)."""

    ALERTS = "alerts"
    OUTBOX = "outbox"
    ACTIVE = "active"
    REPORTS = "reports"
    TRUST = "trust"
    STATUS = "status"
    EVENTS = "events"
    OTHER = "other"


SOURCE_OF_TOPIC = {
    Topic.ALERTS: Source.ALERTS,
    Topic.OUTBOX: Source.OUTBOX,
    Topic.ACTIVE: Source.ACTIVE,
    Topic.REPORTS: Source.REPORTS,
}


@dataclass(slots=True)
class FeedItem:
    """One alert or report, however many times and ways it arrived."""

    alert_id: str
    alert: SignedAlert
    state: VerifyState
    arrival: int  # arrival order, for stable sorting
    first_seen_s: float
    reason: DropReason | None = None
    detail: str = ""
    signer_name: str | None = None
    signer_role: Role | None = None
    sources: set[Source] = field(default_factory=set)
    # relay id -> what it did with this alert: "published" (envelope) or an EventKind value.
    relays: dict[str, set[str]] = field(default_factory=dict)
    drop_reasons: dict[str, str] = field(default_factory=dict)
    active: bool | None = None  # True while retained on <root>/active, False once cleared
    raw: bytes = b""  # the last copy received, as received
    # Set by the model from verified replies only (never from the unsigned active/ clears).
    closed_by: Kind | None = None  # the kind of the cancel or all-clear that ended its thread
    updated: bool = False  # a verified update refers to it
    # Handhelds whose newest verified answer says they are responding (tui/responders.py).
    responding: int = 0

    @property
    def raw_json(self) -> str:
        """The last copy, pretty-printed when it is JSON (computed on demand: detail view only)."""
        return _pretty(self.raw)

    @property
    def kind(self) -> Kind:
        return self.alert.fields.kind

    @property
    def severity(self) -> Severity:
        return self.alert.fields.severity

    @property
    def text(self) -> str:
        return self.alert.fields.text

    @property
    def urgent(self) -> bool:
        return self.severity is Severity.URGENT and self.kind is not Kind.REPORT

    @property
    def ok(self) -> bool:
        return self.state is not VerifyState.REJECTED

    def expired(self, now_s: float) -> bool:
        return self.alert.is_expired(now_s)

    def lifecycle(self, now_s: float) -> Lifecycle:
        kind = self.kind
        if kind is Kind.REPORT:
            return Lifecycle.REPORT
        if kind in (Kind.CANCEL, Kind.ALLCLEAR):
            return Lifecycle.EXPIRED if self.expired(now_s) else Lifecycle.ENDS
        # Ended beats expired: "all-clear" says more than "expired" about the same alert.
        if self.closed_by is Kind.CANCEL:
            return Lifecycle.CANCELLED
        if self.closed_by is Kind.ALLCLEAR:
            return Lifecycle.ALLCLEAR
        if self.expired(now_s):
            return Lifecycle.EXPIRED
        return Lifecycle.UPDATED if self.updated else Lifecycle.ACTIVE

    def transmitted_by(self) -> list[str]:
        return sorted(r for r, ev in self.relays.items() if EventKind.TRANSMITTED.value in ev)

    def seen_by(self) -> list[str]:
        return sorted(self.relays)


@dataclass(slots=True)
class RelayRow:
    status: RelayStatus
    updated_s: float  # when this TUI last received the relay's status


@dataclass(slots=True)
class InboxEntry:
    alert_id: str
    status: InboxStatus = InboxStatus.NEW
    updated_s: float = 0.0
    dispatched: list[tuple[str, float]] = field(default_factory=list)
    confirmed_by: str | None = None  # id of the alert composed from this report


@dataclass(frozen=True, slots=True)
class DiagnosticLine:
    ts_s: float
    topic: Topic
    detail: str


@dataclass(frozen=True, slots=True)
class RejectedFrame:
    """A frame that failed verification: what it claimed to be, never what it said."""

    ts_s: float
    topic: Topic
    alert_id: str
    kind: Kind
    reason: DropReason | None
    detail: str


@dataclass(slots=True)
class Diagnostics:
    malformed: dict[Topic, int] = field(default_factory=dict)
    # Status and events not believed (unsigned, mis-signed, another relay's), by ControlRejection.
    unverified: dict[str, int] = field(default_factory=dict)
    rejected: deque[RejectedFrame] = field(default_factory=lambda: deque(maxlen=MAX_REJECTED_FRAMES))
    rejected_total: int = 0
    messages: dict[Topic, int] = field(default_factory=dict)
    handler_errors: int = 0  # messages that hit a bug (also counted as malformed)
    recent: deque[DiagnosticLine] = field(default_factory=lambda: deque(maxlen=MAX_DIAGNOSTIC_LINES))

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())


@dataclass(slots=True)
class TrustState:
    bundle: TrustBundle | None
    source: str  # "file PATH", "mqtt <root>/trust" or "none"
    note: str = ""  # the last thing that happened to a bundle from MQTT


@dataclass(slots=True)
class Change:
    """What one ingested message changed, so the UI redraws only that."""

    feed_id: str | None = None
    feed_new: bool = False
    related: list[str] = field(default_factory=list)  # other rows whose state this changed
    evicted: list[str] = field(default_factory=list)
    relay: str | None = None
    relay_removed: bool = False
    inbox: bool = False
    trust: bool = False  # the bundle changed: every item was re-verified
    diagnostics: bool = False

    @property
    def empty(self) -> bool:
        return not (
            self.feed_id or self.evicted or self.relay or self.inbox or self.trust or self.diagnostics
        )


@dataclass(frozen=True, slots=True)
class FeedFilter:
    kind: Kind | None = None
    severity: Severity | None = None
    relay: str | None = None
    text: str = ""
    # The landing view shows only live alerts (active or updated); `v` shows everything.
    show_all: bool = False

    @property
    def active(self) -> bool:
        return bool(self.kind or self.severity or self.relay or self.text or not self.show_all)

    def matches(self, item: FeedItem, now_s: float) -> bool:
        if not self.show_all and not item.lifecycle(now_s).live:
            return False
        if self.kind is not None and item.kind is not self.kind:
            return False
        if self.severity is not None and item.severity is not self.severity:
            return False
        if self.relay is not None and self.relay not in item.relays:
            return False
        if self.text:
            needle = self.text.casefold()
            hay = " ".join(
                (item.text, item.alert.fields.area or "", item.alert_id, item.signer_name or "")
            ).casefold()
            if needle not in hay:
                return False
        return True


def visible_onair(onair: str) -> str:
    """The on-air text with BEL shown as ␇ (a terminal would ring it, or show nothing)."""
    return onair.replace(BEL, "\u2407")


def _pretty(payload: bytes) -> str:
    text = payload.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):
            return text
    return text
