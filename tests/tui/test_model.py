"""The console's state without Textual: merging, verification, chains, inbox, bounds."""

from __future__ import annotations

from relayd.core.control import ControlKind, seal
from relayd.core.jsonform import Envelope, encode_alert
from relayd.core.model import DropReason, Kind, Severity
from relayd.core.status import EventKind, RelayEvent, RelayState, RelayStatus, encode_event, encode_status
from relayd.core.topics import Topics
from relayd.testing.hostile import hostile_payloads
from relayd.testing.keys import TestNetwork
from tests.tui.support import FIXED_NOW_S
from tui.fmt import relays_cell, sparkline
from tui.model import DEFAULT_MAX_FEED_ITEMS, FeedFilter, InboxStatus, Model, Source, Topic, VerifyState

T = Topics("relayd")


def model(
    net: TestNetwork,
    now_s: float = FIXED_NOW_S,
    *,
    max_feed_items: int = DEFAULT_MAX_FEED_ITEMS,
) -> Model:
    return Model(T, net.bundle, lambda: now_s, max_feed_items=max_feed_items)


def test_copies_of_one_alert_merge_into_one_item(fixed_net: TestNetwork) -> None:
    m = model(fixed_net)
    alert = fixed_net.sign("dispatcher", "Raid at 5th", now_s=FIXED_NOW_S - 10)
    event = RelayEvent("relay-south", EventKind.TRANSMITTED, alert.id_hex, FIXED_NOW_S)
    sealed = fixed_net.seal("relay-south", ControlKind.EVENT, encode_event(event))
    assert m.ingest(T.events("relay-south"), sealed).empty  # before the alert itself
    first = m.ingest(T.outbox, alert.onair.encode())
    again = m.ingest(T.alerts, encode_alert(alert, Envelope(relay="relay-north", via="rf")))
    m.ingest(T.active(alert.id_hex), encode_alert(alert))
    assert first.feed_new
    assert not again.feed_new
    assert len(m.feed) == 1
    item = m.feed[alert.id_hex]
    assert item.sources == {Source.OUTBOX, Source.ALERTS, Source.ACTIVE}
    assert item.relays == {"relay-north": {"heard"}, "relay-south": {"transmitted"}}
    assert relays_cell(item) == "south⇡ north"


def test_expired_alert_is_not_called_forged(fixed_net: TestNetwork) -> None:
    m = model(fixed_net)
    old = fixed_net.sign("dispatcher", "old news", now_s=FIXED_NOW_S - 4000, lifetime_s=600)
    m.ingest(T.alerts, encode_alert(old))
    item = m.feed[old.id_hex]
    assert item.state is VerifyState.VERIFIED
    assert item.expired(FIXED_NOW_S)


def test_reports_reach_the_inbox_and_alerts_do_not(fixed_net: TestNetwork) -> None:
    m = model(fixed_net)
    report = fixed_net.sign("relay-north", "cops at gate", kind=Kind.REPORT, now_s=FIXED_NOW_S)
    alert = fixed_net.sign("dispatcher", "confirmed", now_s=FIXED_NOW_S)
    assert m.ingest(T.reports, encode_alert(report)).inbox
    m.ingest(T.alerts, encode_alert(alert))
    assert list(m.inbox) == [report.id_hex]
    assert m.feed[report.id_hex].state is VerifyState.REPORT
    m.dispatch_verifier(report.id_hex, "team-1")
    assert m.inbox[report.id_hex].status is InboxStatus.VERIFIER_DISPATCHED
    m.confirm_report(report.id_hex, alert.id_hex)
    assert m.inbox[report.id_hex].confirmed_by == alert.id_hex
    assert m.inbox_new == 0


def test_forged_report_stays_out_of_the_inbox(fixed_net: TestNetwork) -> None:
    m = model(fixed_net)
    report = fixed_net.sign("relay-north", "cops at gate", kind=Kind.REPORT, now_s=FIXED_NOW_S)
    m.ingest(T.reports, report.onair.replace("gate", "door").encode())
    assert not m.feed
    (rejected,) = m.diagnostics.rejected
    assert rejected.reason is DropReason.BAD_SIGNATURE
    assert not m.inbox


def test_reference_chain_and_active_alerts(fixed_net: TestNetwork) -> None:
    m = model(fixed_net)
    a = fixed_net.sign("dispatcher", "raid", now_s=FIXED_NOW_S - 60)
    u = fixed_net.sign("dispatcher2", "more vans", kind=Kind.UPDATE, ref=a.alert_id, now_s=FIXED_NOW_S - 30)
    c = fixed_net.sign("dispatcher", "over", kind=Kind.ALLCLEAR, ref=a.alert_id, now_s=FIXED_NOW_S - 5)
    for x in (a, u):
        m.ingest(T.alerts, encode_alert(x))
    assert [i.alert_id for i in m.active_alerts()] == [u.id_hex, a.id_hex]
    m.ingest(T.alerts, encode_alert(c))
    assert [(d, i.kind) for d, i in m.chain(u.id_hex)] == [
        (0, Kind.ALERT),
        (1, Kind.UPDATE),
        (1, Kind.ALLCLEAR),
    ]
    assert a.id_hex not in {i.alert_id for i in m.active_alerts()}


def test_malformed_input_on_every_topic_is_counted(fixed_net: TestNetwork) -> None:
    m = model(fixed_net)
    for topic in (T.alerts, T.outbox, T.reports, T.active("ab"), T.status("r1"), T.events("r1"), T.trust):
        assert m.ingest(topic, b"\x00{garbage").diagnostics
    m.ingest("relayd/unknown/thing", b"x")
    assert m.diagnostics.malformed_total == 8
    assert m.diagnostics.malformed[Topic.OTHER] == 1


def test_feed_is_bounded(fixed_net: TestNetwork) -> None:
    m = model(fixed_net, max_feed_items=3)
    ids = []
    for n in range(5):
        alert = fixed_net.sign("dispatcher", f"alert {n}", severity=Severity.INFO, now_s=FIXED_NOW_S)
        ids.append(alert.id_hex)
        m.ingest(T.alerts, encode_alert(alert))
    assert list(m.feed) == ids[2:]


def test_filters(fixed_net: TestNetwork) -> None:
    m = model(fixed_net)
    a = fixed_net.sign("dispatcher", "raid at Pine", area="9q8yyk", now_s=FIXED_NOW_S)
    b = fixed_net.sign("dispatcher", "training", severity=Severity.INFO, kind=Kind.TEST, now_s=FIXED_NOW_S)
    m.ingest(T.alerts, encode_alert(a, Envelope(relay="relay-north")))
    m.ingest(T.alerts, encode_alert(b))

    def ids(f: FeedFilter) -> list[str]:
        return [i.alert_id for i in m.items(f)]

    assert ids(FeedFilter(kind=Kind.TEST)) == [b.id_hex]
    assert ids(FeedFilter(severity=Severity.URGENT)) == [a.id_hex]
    assert ids(FeedFilter(relay="relay-north")) == [a.id_hex]
    assert ids(FeedFilter(text="9Q8")) == [a.id_hex]


def test_sparkline_scales_to_budget() -> None:
    assert sparkline((), 4) == "    "
    assert sparkline((0.0, 6.0, 3.0, 0.0), 4, ceiling=6.0) == " █▄ "


def test_hostile_payloads_on_every_topic_are_counted_not_fatal(fixed_net: TestNetwork) -> None:
    m = model(fixed_net)
    topics = {
        Topic.OUTBOX: T.outbox,
        Topic.ALERTS: T.alerts,
        Topic.ACTIVE: T.active("e70f58add945c0e0"),
        Topic.REPORTS: T.reports,
        Topic.TRUST: T.trust,
        Topic.STATUS: T.status("mallory"),
        Topic.EVENTS: T.events("mallory"),
    }
    payloads = {k: v for k, v in hostile_payloads("mallory").items() if v}
    for kind, topic in topics.items():
        unverified_before = sum(m.diagnostics.unverified.values())
        for payload in payloads.values():
            m.ingest(topic, payload)
        # Status and events that are JSON objects but unsigned are not read at all.
        unverified = sum(m.diagnostics.unverified.values()) - unverified_before
        assert m.diagnostics.malformed.get(kind, 0) + unverified == len(payloads), kind
    assert not m.relays
    assert not m.feed
    # Still working: a genuine alert is shown.
    alert = fixed_net.sign("dispatcher", "Raid at 5th", now_s=FIXED_NOW_S - 10)
    assert m.ingest(T.outbox, encode_alert(alert)).feed_new


def test_only_a_verified_end_or_expiry_clears_an_active_alert(fixed_net: TestNetwork) -> None:
    m = model(fixed_net)
    raid = fixed_net.sign("dispatcher", "raid at Pine", now_s=FIXED_NOW_S - 60, lifetime_s=600)
    m.ingest(T.active(raid.id_hex), encode_alert(raid))
    # Anyone who may write active/<id> can send an empty retained message: it hides nothing.
    m.ingest(T.active(raid.id_hex), b"")
    assert [i.alert_id for i in m.active_alerts()] == [raid.id_hex]
    cancel = fixed_net.sign("dispatcher", "over", kind=Kind.CANCEL, ref=raid.alert_id, now_s=FIXED_NOW_S)
    m.ingest(T.alerts, encode_alert(cancel))
    assert m.active_alerts() == []
    later = Model(T, fixed_net.bundle, lambda: FIXED_NOW_S + 600)
    later.ingest(T.active(raid.id_hex), encode_alert(raid))
    assert later.active_alerts() == []  # expired


def test_events_are_attributed_by_topic_and_signature_only(fixed_net: TestNetwork) -> None:
    m = model(fixed_net)
    alert = fixed_net.sign("dispatcher", "Raid at 5th", now_s=FIXED_NOW_S - 10)
    m.ingest(T.outbox, encode_alert(alert))
    claim = encode_event(RelayEvent("relay-north", EventKind.TRANSMITTED, alert.id_hex, FIXED_NOW_S))
    m.ingest(T.events("relay-north"), claim)  # unsigned
    m.ingest(T.events("relay-south"), fixed_net.seal("relay-north", ControlKind.EVENT, claim))  # wrong topic
    stranger = fixed_net.identities["dispatcher"]
    m.ingest(
        T.events("relay-north"), seal(ControlKind.EVENT, "relay-north", claim, stranger.key_id, stranger.sign)
    )
    assert m.feed[alert.id_hex].transmitted_by() == []
    assert m.diagnostics.unverified == {"unsigned": 1, "wrong_relay": 1, "not_a_relay_key": 1}
    m.ingest(T.events("relay-north"), fixed_net.seal("relay-north", ControlKind.EVENT, claim))
    assert m.feed[alert.id_hex].transmitted_by() == ["relay-north"]


def test_rejected_frames_stay_out_of_the_feed_and_keep_no_text(fixed_net: TestNetwork) -> None:
    m = model(fixed_net, max_feed_items=5)
    genuine = fixed_net.sign("dispatcher", "Raid at 5th", now_s=FIXED_NOW_S - 10)
    m.ingest(T.outbox, encode_alert(genuine))
    for n in range(500):
        forged = fixed_net.sign("dispatcher", f"Fake raid {n} at Elm", now_s=FIXED_NOW_S).onair
        m.ingest(T.outbox, forged.replace("Elm", "Oak").encode())
    assert list(m.feed) == [genuine.id_hex]  # nothing evicted
    assert m.diagnostics.rejected_total == 500
    assert len(m.diagnostics.rejected) <= 100
    assert not any("raid" in repr(r).lower() for r in m.diagnostics.rejected)


def test_an_unsigned_status_or_a_replayed_one_changes_no_relay_row(fixed_net: TestNetwork) -> None:
    m = model(fixed_net)
    online = RelayStatus("relay-north", RelayState.ONLINE, FIXED_NOW_S)
    m.ingest(
        T.status("relay-north"), fixed_net.seal("relay-north", ControlKind.STATUS, encode_status(online))
    )
    fake = RelayStatus("relay-north", RelayState.ONLINE, FIXED_NOW_S + 5, clock_warning="fake")
    m.ingest(T.status("relay-north"), encode_status(fake))
    m.ingest(T.status("relay-north"), b"")  # an unsigned clear does not hide an online relay
    old = RelayStatus("relay-north", RelayState.ONLINE, FIXED_NOW_S - 100, storage_error="old")
    m.ingest(T.status("relay-north"), fixed_net.seal("relay-north", ControlKind.STATUS, encode_status(old)))
    assert m.relays["relay-north"].status == online
    assert m.diagnostics.unverified == {"unsigned": 1, "stale": 1}


def test_a_revoked_relay_row_goes_with_the_new_bundle(fixed_net: TestNetwork) -> None:
    m = model(fixed_net)
    for relay in ("relay-north", "relay-south"):
        status = encode_status(RelayStatus(relay, RelayState.ONLINE, FIXED_NOW_S))
        m.ingest(T.status(relay), fixed_net.seal(relay, ControlKind.STATUS, status))
    seized = fixed_net.identities["relay-south"].key_id
    m.replace_bundle(fixed_net.bundle.with_revoked(seized), "test")
    assert list(m.relays) == ["relay-north"]
