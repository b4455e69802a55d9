"""The routing decision: what the relay does with what arrived, decided without I/O.

What arrives is a text heard by our radio or a message on a parsed MQTT topic; with the
verifier's verdict on it, the relay either publishes it (and, from MQTT, holds it for the
air), wraps it as a handheld's report, treats it as evidence that another relay put an alert
on air, waits for the alert it refers to, answers a forgery, ignores it, or drops it with a
reason. The relay (relayd/daemon/relay.py) only carries the decision out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from relayd.core.model import DropReason, Kind
from relayd.core.notice import claims_to_be_an_alert, is_notice
from relayd.core.status import EventKind
from relayd.core.suppression import Adjacency, RankScope
from relayd.core.topics import TopicKind
from relayd.core.verify import Verdict


@dataclass(frozen=True, slots=True)
class Accept:
    """A genuine alert: publish it; `queue`: also hold it for our radio's turn."""

    queue: bool


@dataclass(frozen=True, slots=True)
class HoldForReference:
    """An update, cancel or all-clear naming an alert not known yet: wait for it."""


@dataclass(frozen=True, slots=True)
class HeardCopy:
    """Another relay's copy of an alert we know: evidence it is on air (and, when `counted`,
    a duplicate frame counted as dropped)."""

    alert_id: bytes
    counted: bool = True


@dataclass(frozen=True, slots=True)
class Drop:
    reason: DropReason
    malformed: bool = False  # counted as malformed under its topic too


@dataclass(frozen=True, slots=True)
class Ignore:
    """Not the relay's business (chat, a notice, a report seen on MQTT)."""

    why: str


Decision = Accept | HoldForReference | HeardCopy | Drop | Ignore


class RfText(enum.Enum):
    """What a text heard on RF is, before any signature is checked."""

    NOT_TEXT = "not_text"  # not UTF-8
    NOTICE = "notice"  # another relay's forgery notice
    REPORT = "report"  # a handheld's report, to wrap and publish
    FRAME = "frame"  # a candidate alert frame, to verify


def is_report(text: str, channel: int, *, report_prefix: str, reports_channel: int | None) -> bool:
    """A handheld's report: the report prefix, or any one line on the reports channel."""
    on_reports = reports_channel is not None and channel == reports_channel
    return text.startswith(report_prefix) or (on_reports and "\n" not in text)


def classify_rf(text: str | None, channel: int, *, report_prefix: str, reports_channel: int | None) -> RfText:
    if text is None:
        return RfText.NOT_TEXT
    if is_notice(text):
        return RfText.NOTICE
    if is_report(text, channel, report_prefix=report_prefix, reports_channel=reports_channel):
        return RfText.REPORT
    return RfText.FRAME


def _waits_for_reference(verdict: Verdict) -> bool:
    ref = verdict.alert.fields.ref if verdict.alert is not None else None
    return verdict.reason is DropReason.UNKNOWN_REFERENCE and ref is not None


def route_rf(verdict: Verdict, text: str, *, backlog: bool) -> Decision:
    """A frame heard by our radio. `backlog`: heard while we were not connected, so it is
    evidence only (never waited on, never counted)."""
    if _waits_for_reference(verdict) and not backlog:
        return HoldForReference()
    if verdict.ok:
        return Accept(queue=False)
    if verdict.reason is DropReason.DUPLICATE and verdict.alert is not None:
        return HeardCopy(verdict.alert.alert_id, counted=not backlog)
    if backlog:
        return Ignore("backlog")
    reason = verdict.reason or DropReason.MALFORMED
    if reason is DropReason.MALFORMED and not claims_to_be_an_alert(text):
        return Ignore("chat")  # plain chat on the alerts channel: not an attempted alert
    return Drop(reason)


def answers_forgery(verdict: Verdict, *, on_alerts_channel: bool, direct: bool, backlog: bool) -> bool:
    """Whether to consider telling handhelds a failed frame is not an alert (the notice's own
    bounds are relayd/core/notice.py's): only broadcasts on the alerts channel, heard live."""
    return (
        on_alerts_channel
        and not direct
        and not backlog
        and not verdict.ok
        and not _waits_for_reference(verdict)
    )


def route_mqtt(kind: TopicKind, verdict: Verdict) -> Decision:
    """An outbox message or another relay's published alert."""
    if _waits_for_reference(verdict):
        return HoldForReference()
    if not verdict.ok:
        reason = verdict.reason or DropReason.MALFORMED
        return Drop(reason, malformed=reason is DropReason.MALFORMED)
    if verdict.alert is not None and verdict.alert.kind is Kind.REPORT:
        return Ignore("report")  # reports go to dispatchers only; never on air
    return Accept(queue=kind in (TopicKind.OUTBOX, TopicKind.ALERTS))


@dataclass(frozen=True, slots=True)
class StandDown:
    """A neighbour whose radio ours hears has the alert on air: ours stands down."""

    alert_id: bytes


@dataclass(frozen=True, slots=True)
class AwaitCopy:
    """A peer we take turns with but have not heard: wait for its RF copy before deciding."""

    alert_id: bytes


PeerDecision = StandDown | AwaitCopy | Ignore


def listens_to(*, honoured: bool, adjacency: Adjacency, scope: RankScope) -> bool:
    """Whether a peer's events count at all: relays in another area never silence ours."""
    return honoured or (scope is RankScope.RF and adjacency is not Adjacency.APART)


def route_peer_event(
    event: EventKind, alert_id_hex: str, *, honoured: bool, scope: RankScope
) -> PeerDecision:
    """A peer relay's signed event, from a peer we listen to. "taken": its radio has the
    frame; "transmitted": the firmware confirmed it on air. Only a peer our own radio has
    heard makes us stand down at once (relayd/core/suppression.py `honours_evidence`); for
    another we take turns with, we wait for its RF copy."""
    if event not in (EventKind.TAKEN, EventKind.TRANSMITTED):
        return Ignore("not evidence")
    try:
        alert_id = bytes.fromhex(alert_id_hex)
    except ValueError:
        return Ignore("not an alert id")
    if honoured:
        return StandDown(alert_id)
    if scope is RankScope.RF:
        return AwaitCopy(alert_id)
    return Ignore("not an RF neighbour")
