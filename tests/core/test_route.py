"""The routing decision (relayd/core/route.py) on real verdicts from the real verifier."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relayd.core.model import DropReason, Kind
from relayd.core.route import (
    Accept,
    AwaitCopy,
    Drop,
    HeardCopy,
    HoldForReference,
    Ignore,
    RfText,
    StandDown,
    answers_forgery,
    classify_rf,
    listens_to,
    route_mqtt,
    route_peer_event,
    route_rf,
)
from relayd.core.status import EventKind
from relayd.core.suppression import Adjacency, RankScope
from relayd.core.topics import TopicKind
from relayd.core.verify import Verdict, Verifier, VerifyPolicy
from relayd.testing.keys import TestNetwork

NOW = 1_700_000_000.0


def _verifier(network: TestNetwork) -> Verifier:
    policy = VerifyPolicy(require_known_reference=True)
    policy.rate_limits.clear()
    return Verifier(network.bundle, policy)


def test_a_genuine_alert_heard_on_rf_is_published_not_queued(network: TestNetwork) -> None:
    alert = network.sign("dispatcher", "Observers needed at Elm & 3rd", now_s=NOW)
    verdict = _verifier(network).verify(alert.onair, NOW)
    assert route_rf(verdict, alert.onair, backlog=False) == Accept(queue=False)


def test_a_second_copy_is_evidence_counted_as_a_duplicate_unless_backlog(network: TestNetwork) -> None:
    alert = network.sign("dispatcher", "Observers needed at Elm & 3rd", now_s=NOW)
    verifier = _verifier(network)
    verifier.verify(alert.onair, NOW)
    again = verifier.verify(alert.onair, NOW)
    assert again.reason is DropReason.DUPLICATE
    assert route_rf(again, alert.onair, backlog=False) == HeardCopy(alert.alert_id, counted=True)
    assert route_rf(again, alert.onair, backlog=True) == HeardCopy(alert.alert_id, counted=False)


def test_an_update_to_an_unknown_alert_waits_for_it_live_but_not_from_backlog(network: TestNetwork) -> None:
    original = network.sign("dispatcher", "Observers needed at Elm & 3rd", now_s=NOW)
    cancel = network.sign(
        "dispatcher", "Cancelled: all clear at Elm", kind=Kind.CANCEL, ref=original.alert_id, now_s=NOW
    )
    verdict = _verifier(network).verify(cancel.onair, NOW)
    assert verdict.reason is DropReason.UNKNOWN_REFERENCE
    assert route_rf(verdict, cancel.onair, backlog=False) == HoldForReference()
    assert route_rf(verdict, cancel.onair, backlog=True) == Ignore("backlog")
    assert route_mqtt(TopicKind.OUTBOX, verdict) == HoldForReference()
    assert not answers_forgery(verdict, on_alerts_channel=True, direct=False, backlog=False)


def test_chat_is_ignored_and_a_forgery_is_dropped_and_answered() -> None:
    chat = Verdict(DropReason.MALFORMED, "not a frame")
    assert route_rf(chat, "anyone at the park?", backlog=False) == Ignore("chat")
    forged = Verdict(DropReason.UNKNOWN_KEY, "no such key")
    assert route_rf(forged, "URGENT: evacuate now", backlog=False) == Drop(DropReason.UNKNOWN_KEY)
    assert answers_forgery(forged, on_alerts_channel=True, direct=False, backlog=False)
    assert not answers_forgery(forged, on_alerts_channel=True, direct=True, backlog=False)
    assert not answers_forgery(forged, on_alerts_channel=False, direct=False, backlog=False)


def test_from_mqtt_an_alert_is_queued_a_report_never_goes_on_air(network: TestNetwork) -> None:
    verifier = _verifier(network)
    alert = network.sign("dispatcher", "Observers needed at Elm & 3rd", now_s=NOW)
    assert route_mqtt(TopicKind.OUTBOX, verifier.verify(alert.onair, NOW)) == Accept(queue=True)
    report = network.sign("dispatcher", "seen at the corner", kind=Kind.REPORT, now_s=NOW)
    assert route_mqtt(TopicKind.ALERTS, verifier.verify(report.onair, NOW)) == Ignore("report")
    assert route_mqtt(TopicKind.OUTBOX, Verdict(DropReason.MALFORMED, "x")) == Drop(
        DropReason.MALFORMED, malformed=True
    )


def test_text_kinds_before_any_signature_check() -> None:
    def kind(text: str | None, channel: int) -> RfText:
        return classify_rf(text, channel, report_prefix="!r ", reports_channel=2)

    assert kind(None, 0) is RfText.NOT_TEXT
    assert kind("!r tree down on Oak", 0) is RfText.REPORT
    assert kind("tree down on Oak", 2) is RfText.REPORT  # the reports channel: any one-liner
    assert kind("tree down\non Oak", 2) is RfText.FRAME
    assert kind('NOT FROM DISPATCH: the message starting "Evac" is not a verified alert.', 2) is RfText.NOTICE


@given(
    event=st.sampled_from(list(EventKind)),
    honoured=st.booleans(),
    adjacency=st.sampled_from(list(Adjacency)),
    scope=st.sampled_from(list(RankScope)),
)
def test_only_a_heard_neighbour_makes_us_stand_down(
    event: EventKind, honoured: bool, adjacency: Adjacency, scope: RankScope
) -> None:
    alert_id = b"\x01" * 8
    if not listens_to(honoured=honoured, adjacency=adjacency, scope=scope):
        assert not honoured
        return
    decision = route_peer_event(event, alert_id.hex(), honoured=honoured, scope=scope)
    if event not in (EventKind.TAKEN, EventKind.TRANSMITTED):
        assert isinstance(decision, Ignore)
    elif honoured:
        assert decision == StandDown(alert_id)
    else:
        assert decision == AwaitCopy(alert_id)  # a peer we take turns with: wait for its copy


def test_a_peer_event_naming_no_alert_id_is_ignored() -> None:
    decision = route_peer_event(EventKind.TRANSMITTED, "not hex", honoured=True, scope=RankScope.RF)
    assert isinstance(decision, Ignore)
