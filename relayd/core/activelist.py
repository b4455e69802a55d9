"""Which retained `<root>/active/<id>` messages to believe: a pure judgement for tools.

Relays keep each live alert, update and drill retained on `active/<id>` and clear it on
expiry, cancel or all-clear. Anyone who may publish there could also leave a forgery or an
old alert, so each message is checked as the console checks the feed: decoded, its id
matched to the topic, authenticated against the pinned trust bundle (signature, key, role,
time and who may update whose alert), and dropped once expired. What is not believed is
listed with its reason, never silently left out.

An emptied topic is unsigned and cannot be told from a clear a relay sent; an alert whose
topic was emptied is simply not there to judge (docs/mqtt.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from relayd.core.codec import MalformedFrame, decode
from relayd.core.jsonform import MalformedMessage, onair_from_message
from relayd.core.model import DropReason, Kind, Role, SignedAlert
from relayd.core.trust import TrustBundle
from relayd.core.verify import Verifier

ACTIVE_KINDS = (Kind.ALERT, Kind.UPDATE, Kind.TEST)


@dataclass(frozen=True, slots=True)
class ActiveAlert:
    alert: SignedAlert
    signer_name: str
    signer_role: Role
    payload: bytes  # the retained message as received


@dataclass(frozen=True, slots=True)
class NotBelieved:
    topic_id: str  # the <id> in active/<id>
    reason: str  # a DropReason value, or "wrong_topic" / "not_active_kind"
    detail: str


@dataclass(slots=True)
class ActiveList:
    alerts: list[ActiveAlert] = field(default_factory=list)  # newest first
    not_believed: list[NotBelieved] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)  # still retained, past their expiry

    def find(self, alert_id: str) -> ActiveAlert | None:
        return next((a for a in self.alerts if a.alert.id_hex == alert_id), None)


def judge_active(messages: Iterable[tuple[str, bytes]], bundle: TrustBundle, now_s: float) -> ActiveList:
    """Judge retained active messages as (topic id, payload) pairs; empty payloads are skipped."""
    out = ActiveList()
    decoded = []
    for topic_id, payload in messages:
        if not payload:
            continue
        try:
            frame = decode(onair_from_message(payload))
        except MalformedMessage as exc:
            out.not_believed.append(NotBelieved(topic_id, DropReason.MALFORMED.value, exc.detail))
            continue
        except MalformedFrame as exc:
            out.not_believed.append(NotBelieved(topic_id, DropReason.MALFORMED.value, exc.detail))
            continue
        if frame.alert_id.hex() != topic_id:
            out.not_believed.append(
                NotBelieved(topic_id, "wrong_topic", f"the message is alert {frame.alert_id.hex()}")
            )
            continue
        if frame.fields.kind not in ACTIVE_KINDS:
            out.not_believed.append(
                NotBelieved(topic_id, "not_active_kind", f"a {frame.fields.kind.value} is never active")
            )
            continue
        decoded.append((frame, payload))
    # Alerts before the updates that refer to them, so an update's author can be checked.
    decoded.sort(key=lambda fp: (fp[0].fields.kind is Kind.UPDATE, fp[0].fields.issued_at_s))
    verifier = Verifier(bundle)
    for frame, payload in decoded:
        topic_id = frame.alert_id.hex()
        verdict = verifier.authenticate(frame, now_s)
        if verdict.reason is DropReason.EXPIRED:
            # Judged as of just before expiry: an expired forgery is still a forgery.
            verdict = verifier.authenticate(frame, frame.fields.expires_at_s - 1)
            if verdict.ok:
                out.expired.append(topic_id)
                continue
        if not verdict.ok or verdict.signer is None or verdict.alert is None:
            reason = verdict.reason.value if verdict.reason else DropReason.MALFORMED.value
            out.not_believed.append(NotBelieved(topic_id, reason, verdict.detail))
            continue
        verifier.known.remember(frame.alert_id, frame.fields)
        out.alerts.append(ActiveAlert(verdict.alert, verdict.signer.name, verdict.signer.role, payload))
    out.alerts.sort(key=lambda a: -a.alert.fields.issued_at_s)
    return out
