"""Responders' answers in the console's model: counted per alert, by alias, verified first."""

from __future__ import annotations

from relayd.core.jsonform import Envelope, encode_alert
from relayd.core.model import Kind, Severity, SignedAlert
from relayd.core.replies import ReplyWord
from relayd.core.topics import Topics
from relayd.testing.keys import TestNetwork
from tests.tui.support import FIXED_NOW_S
from tui.model import Model
from tui.responders import Responders

T = Topics("relayd")


def answer(
    net: TestNetwork, ref: SignedAlert, node: int, word: str, ago_s: float, *, signer: str = "relay-north"
) -> bytes:
    wrapped = net.sign(
        signer, word, kind=Kind.REPORT, severity=Severity.INFO, now_s=FIXED_NOW_S - ago_s,
        ref=ref.alert_id, origin_node=node,
    )  # fmt: skip
    return encode_alert(wrapped, Envelope(relay=signer, via="rf"))


def test_answers_count_per_alert_and_the_newest_answer_of_a_handheld_wins(fixed_net: TestNetwork) -> None:
    m = Model(T, fixed_net.bundle, lambda: FIXED_NOW_S)
    alert = fixed_net.sign("dispatcher", "Raid at 5th", now_s=FIXED_NOW_S - 300)
    other = fixed_net.sign("dispatcher", "Checkpoint at Oak", now_s=FIXED_NOW_S - 200)
    m.ingest(T.alerts, encode_alert(alert))
    m.ingest(T.alerts, encode_alert(other))
    assert m.ingest(T.reports, answer(fixed_net, alert, 1, "!y", 100)).feed_id == alert.id_hex
    m.ingest(T.reports, answer(fixed_net, alert, 2, "!omw", 90))
    m.ingest(T.reports, answer(fixed_net, other, 1, "!n", 80))
    assert m.feed[alert.id_hex].responding == 2
    assert m.feed[other.id_hex].responding == 0
    # Handheld 1 changes its mind; a late copy of its older answer does not undo that.
    m.ingest(T.reports, answer(fixed_net, alert, 1, "!n", 50))
    m.ingest(T.reports, answer(fixed_net, alert, 1, "!here", 120))
    assert m.feed[alert.id_hex].responding == 1
    assert [(a.alias, a.word) for a in m.responders.answers(alert.id_hex)] == [
        ("R1", ReplyWord.NO),
        ("R2", ReplyWord.ON_MY_WAY),
    ]
    # Answers are neither feed rows nor inbox entries.
    assert len(m.feed) == 2
    assert not m.inbox


def test_answers_before_their_alert_count_once_it_arrives(fixed_net: TestNetwork) -> None:
    m = Model(T, fixed_net.bundle, lambda: FIXED_NOW_S)
    alert = fixed_net.sign("dispatcher", "Raid at 5th", now_s=FIXED_NOW_S - 300)
    assert m.ingest(T.reports, answer(fixed_net, alert, 7, "!omw", 100)).feed_id is None
    m.ingest(T.alerts, encode_alert(alert))
    assert m.feed[alert.id_hex].responding == 1


def test_only_a_relays_verified_answer_counts(fixed_net: TestNetwork) -> None:
    m = Model(T, fixed_net.bundle, lambda: FIXED_NOW_S)
    alert = fixed_net.sign("dispatcher", "Raid at 5th", now_s=FIXED_NOW_S - 300)
    m.ingest(T.alerts, encode_alert(alert))
    # A reporter key may sign reports, but it heard no handheld: its "answers" are not counted.
    change = m.ingest(T.reports, answer(fixed_net, alert, 9, "!y", 10, signer="reporter"))
    assert change.diagnostics
    assert "not a relay's" in m.diagnostics.recent[-1].detail
    # A relay's answer altered after signing is rejected as any forged frame.
    forged = answer(fixed_net, alert, 9, "!y", 10).replace(b'"onair":"!y', b'"onair":"!n', 1)
    m.ingest(T.reports, forged)
    assert m.feed[alert.id_hex].responding == 0
    # A field report that happens to refer to nothing is still a field report.
    report = fixed_net.sign("relay-north", "!omw", kind=Kind.REPORT, now_s=FIXED_NOW_S, origin_node=3)
    assert m.ingest(T.reports, encode_alert(report)).inbox


def test_aliases_are_stable_and_bounded() -> None:
    r = Responders(max_aliases=2)
    assert [r.alias(n) for n in (5, 6, 5)] == ["R1", "R2", "R1"]
    r.alias(7)
    assert r.alias(5) == "R4"  # forgotten beyond the bound: a new alias, never a node number


def test_answers_to_an_update_count_for_the_incident_on_its_first_alert(fixed_net: TestNetwork) -> None:
    m = Model(T, fixed_net.bundle, lambda: FIXED_NOW_S)
    alert = fixed_net.sign("dispatcher", "Raid at 5th", now_s=FIXED_NOW_S - 300)
    update = fixed_net.sign(
        "dispatcher", "3 vans now", kind=Kind.UPDATE, now_s=FIXED_NOW_S - 200, ref=alert.alert_id
    )
    m.ingest(T.alerts, encode_alert(alert))
    # The relay named the update (the newest active alert) before this console had it.
    m.ingest(T.reports, answer(fixed_net, update, 1, "!omw", 100))
    m.ingest(T.alerts, encode_alert(update))
    m.ingest(T.reports, answer(fixed_net, update, 2, "!y", 90))
    m.ingest(T.reports, answer(fixed_net, alert, 1, "!here", 80))
    assert m.feed[alert.id_hex].responding == 2
    assert m.feed[update.id_hex].responding == 0  # counted once, on the incident's first alert
    assert [(a.alias, a.word) for a in m.answers(update.id_hex)] == [
        ("R1", ReplyWord.HERE),
        ("R2", ReplyWord.YES),
    ]
