"""Catch-up after a gap (relayd/core/reconcile.py): what a relay back from an absence puts on
air, what it takes without airing, and that nothing goes on air twice."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relayd.core.jsonform import MalformedMessage
from relayd.core.model import AlertFields, Kind, Severity, SignedAlert
from relayd.core.reconcile import (
    Action,
    Evidence,
    Reconciler,
    SyncAnswer,
    SyncBatch,
    SyncPolicy,
    SyncRequest,
    decide,
    encode_batch,
    encode_request,
    parse_sync,
)

T0 = 1_800_000_000.0
NONCE = bytes.fromhex("0102030405060708")


def alert(
    n: int,
    kind: Kind = Kind.ALERT,
    severity: Severity = Severity.URGENT,
    ref: bytes | None = None,
    expires: float = T0 + 3600,
) -> SignedAlert:
    fields = AlertFields(kind, severity, b"\x01\x02\x03\x04", int(T0), n, int(expires), f"alert {n}", ref=ref)
    return SignedAlert(fields, b"\x00" * 64, f"onair {n}", bytes([n]) * 8)


def answer(by: str, evidence: Evidence, nonce: bytes = NONCE, to: str = "me", n: int = 1) -> SyncAnswer:
    return SyncAnswer(by, to, nonce.hex(), f"onair {n}", evidence)


def test_a_missed_alert_goes_on_air_unless_an_rf_neighbour_aired_it() -> None:
    assert decide(Evidence.PENDING, known=False, honoured=True) is Action.AIR
    assert decide(Evidence.HEARD, known=False, honoured=True) is Action.AIR  # its area, not ours
    assert decide(Evidence.AIRED, known=False, honoured=False) is Action.AIR  # another area
    assert decide(Evidence.AIRED, known=False, honoured=True) is Action.COVERED


def test_an_alert_already_held_is_nothing_new_unless_a_neighbour_aired_it() -> None:
    assert decide(Evidence.PENDING, known=True, honoured=True) is Action.IGNORE
    assert decide(Evidence.AIRED, known=True, honoured=False) is Action.IGNORE
    assert decide(Evidence.AIRED, known=True, honoured=True) is Action.STAND_DOWN


def test_answers_count_only_for_our_own_outstanding_request() -> None:
    rec = Reconciler("me", SyncPolicy(answer_window_s=30.0, min_request_interval_s=5.0))
    req = rec.request(T0, NONCE)
    assert req == SyncRequest("me", NONCE.hex())

    def judge(a: SyncAnswer, now: float = T0 + 1) -> Action:
        return rec.judge(a, bytes([1]) * 8, now, known=lambda _: False, honoured=lambda _: False)

    assert judge(answer("north", Evidence.PENDING, to="someone-else")) is Action.IGNORE
    assert judge(answer("me", Evidence.PENDING)) is Action.IGNORE  # our own echo
    assert judge(answer("north", Evidence.PENDING, nonce=b"\x09" * 8)) is Action.IGNORE  # a replay
    assert judge(answer("north", Evidence.PENDING), now=T0 + 31) is Action.IGNORE  # too late
    assert judge(answer("north", Evidence.PENDING)) is Action.AIR
    # A second peer's answer about the same alert: already decided, never aired twice.
    assert judge(answer("south", Evidence.PENDING)) is Action.IGNORE


def test_a_flapping_link_does_not_flood_peers_with_requests() -> None:
    rec = Reconciler("me", SyncPolicy(min_request_interval_s=5.0))
    assert rec.request(T0, NONCE) is not None
    assert rec.request(T0 + 1, b"\x02" * 8) is None
    assert rec.request(T0 + 6, b"\x03" * 8) is not None


def test_peers_answer_with_active_alerts_most_urgent_first_and_rate_limited() -> None:
    rec = Reconciler("north", SyncPolicy(per_asker_interval_s=10.0))
    rec.accepted(alert(1, severity=Severity.INFO), heard_on_rf=False)
    rec.accepted(alert(2, severity=Severity.URGENT), heard_on_rf=True)
    rec.accepted(alert(3, expires=T0 + 10), heard_on_rf=False)
    rec.aired(bytes([1]) * 8)
    req = SyncRequest("south", NONCE.hex())
    got = rec.answers_for(req, T0 + 20, peers={"south"})
    assert [(a.onair, a.evidence) for a in got] == [
        ("onair 2", Evidence.HEARD),
        ("onair 1", Evidence.AIRED),
    ]
    assert all(a.to == "south" and a.nonce == NONCE.hex() and a.relay == "north" for a in got)
    assert rec.answers_for(req, T0 + 25, peers={"south"}) == []  # asked again too soon
    assert rec.answers_for(SyncRequest("mallory", NONCE.hex()), T0 + 20, peers={"south"}) == []
    assert rec.answers_for(SyncRequest("north", NONCE.hex()), T0 + 20, peers={"north"}) == []


def test_a_request_too_soon_after_an_answer_is_answered_when_the_interval_ends() -> None:
    """A relay restarted seconds after its last catch-up still gets one: rate limited, not lost."""
    rec = Reconciler("north", SyncPolicy(per_asker_interval_s=10.0))
    rec.accepted(alert(1), heard_on_rf=False)
    assert rec.answers_for(SyncRequest("south", NONCE.hex()), T0, peers={"south"})
    assert rec.deferred_due_s("south") is None
    again = SyncRequest("south", (b"\x02" * 8).hex())
    newest = SyncRequest("south", (b"\x03" * 8).hex())
    assert rec.answers_for(again, T0 + 2, peers={"south"}) == []
    assert rec.answers_for(newest, T0 + 3, peers={"south"}) == []
    assert rec.deferred_due_s("south") == T0 + 10
    assert rec.take_deferred("south") == newest  # only the newest nonce is answered
    assert rec.take_deferred("south") is None
    got = rec.answers_for(newest, T0 + 10, peers={"south"})
    assert [a.nonce for a in got] == [newest.nonce]
    # A relay the bundle does not name is never deferred either.
    assert rec.answers_for(SyncRequest("mallory", NONCE.hex()), T0 + 11, peers={"south"}) == []
    assert rec.deferred_due_s("mallory") is None


def test_a_cancel_ends_the_alert_and_its_updates_in_the_ledger() -> None:
    rec = Reconciler("north")
    first = alert(1)
    rec.accepted(first, heard_on_rf=False)
    rec.accepted(alert(2, kind=Kind.UPDATE, ref=first.alert_id), heard_on_rf=False)
    rec.accepted(alert(3), heard_on_rf=False)
    rec.accepted(alert(4, kind=Kind.CANCEL, ref=first.alert_id), heard_on_rf=False)
    assert [a for a, _ in rec.active(T0)] == [bytes([3]) * 8]


def test_evidence_only_grows() -> None:
    rec = Reconciler("north")
    a = alert(1)
    rec.accepted(a, heard_on_rf=False)
    rec.aired(a.alert_id)
    rec.heard(a.alert_id)
    rec.accepted(a, heard_on_rf=True)
    assert rec.evidence(a.alert_id) is Evidence.AIRED


def test_sync_messages_round_trip_and_bad_ones_are_malformed() -> None:
    req = SyncRequest("relay-north", NONCE.hex())
    batch = SyncBatch(
        "relay-south",
        "relay-north",
        NONCE.hex(),
        (("a frame \u00e9", Evidence.HEARD), ("another", Evidence.AIRED)),
    )
    assert parse_sync(encode_request(req)) == req
    assert parse_sync(encode_batch(batch)) == batch
    assert batch.answers()[1] == SyncAnswer(
        "relay-south", "relay-north", NONCE.hex(), "another", Evidence.AIRED
    )
    for bad in (
        b"{}",
        b'{"format":"relayd-sync/1","type":"request","relay":"a/b","nonce":"0102030405060708"}',
        b'{"format":"relayd-sync/1","type":"request","relay":"a","nonce":"01"}',
        b'{"format":"relayd-sync/1","type":"request","relay":"a","nonce":"zz02030405060708"}',
        b'{"format":"relayd-sync/1","type":"answer","relay":"a","to":"b","nonce":"0102030405060708",'
        b'"alerts":[{"onair":"x","evidence":"maybe"}]}',
        b'{"format":"relayd-sync/1","type":"answer","relay":"a","to":"b","nonce":"0102030405060708",'
        b'"alerts":[{"onair":7,"evidence":"aired"}]}',
        b'{"format":"relayd-sync/1","type":"answer","relay":"a","to":"b","nonce":"0102030405060708",'
        b'"alerts":"x"}',
        b'{"format":"relayd-sync/1","type":"answer","relay":"a","to":"b","nonce":"0102030405060708",'
        b'"alerts":[7]}',
        b'{"format":"relayd-sync/1","type":"gossip","relay":"a","nonce":"0102030405060708"}',
        b"not json",
    ):
        with pytest.raises(MalformedMessage):
            parse_sync(bad)


_answers = st.lists(
    st.tuples(
        st.integers(1, 4),  # which alert
        st.sampled_from(["north", "south", "east", "me"]),
        st.sampled_from(list(Evidence)),
        st.floats(0, 40),
    ),
    max_size=60,
)


@given(_answers, st.frozensets(st.sampled_from(["north", "south", "east"])), st.frozensets(st.integers(1, 4)))
def test_nothing_goes_on_air_twice_nor_after_a_neighbour_aired_it(
    answers: list[tuple[int, str, Evidence, float]],
    honoured: frozenset[str],
    held: frozenset[int],
) -> None:
    """However answers interleave: at most one AIR per alert, never for an alert already
    held, and never after an RF neighbour said it put it on air."""
    rec = Reconciler("me", SyncPolicy(answer_window_s=30.0))
    assert rec.request(T0, NONCE) is not None
    known: set[bytes] = {bytes([n]) * 8 for n in held}
    aired: dict[bytes, int] = {}
    covered: set[bytes] = set()
    for n, by, evidence, offset in sorted(answers, key=lambda a: a[3]):
        alert_id = bytes([n]) * 8
        action = rec.judge(
            answer(by, evidence, n=n),
            alert_id,
            T0 + offset,
            known=known.__contains__,
            honoured=honoured.__contains__,
        )
        if action is Action.AIR:
            assert alert_id not in known
            assert alert_id not in covered
            aired[alert_id] = aired.get(alert_id, 0) + 1
        if action in (Action.AIR, Action.COVERED):
            known.add(alert_id)  # the relay accepted it
        if action in (Action.COVERED, Action.STAND_DOWN):
            assert by in honoured
            assert evidence is Evidence.AIRED
            covered.add(alert_id)
        if by == "me" or offset > 30:
            assert action is Action.IGNORE
    assert all(count == 1 for count in aired.values())


@given(st.lists(st.tuples(st.integers(1, 6), st.sampled_from(list(Kind)), st.booleans()), max_size=40))
def test_the_ledger_answers_only_active_alert_kinds_and_is_bounded(
    steps: list[tuple[int, Kind, bool]],
) -> None:
    rec = Reconciler("north")
    for n, kind, rf in steps:
        rec.accepted(
            alert(n, kind=kind, ref=bytes([n - 1]) * 8 if kind is not Kind.ALERT else None), heard_on_rf=rf
        )
    answers = rec.answers_for(SyncRequest("south", NONCE.hex()), T0, peers={"south"})
    assert len(answers) <= rec.policy.max_answers
    assert len({a.onair for a in answers}) == len(answers)


def test_answers_are_packed_into_few_messages_that_fit_the_control_plane() -> None:
    rec = Reconciler("north", SyncPolicy(max_answers=32))
    for n in range(1, 30):
        a = alert(n)
        long = SignedAlert(a.fields, a.signature, f"onair {n} " + "x" * 380, a.alert_id)
        rec.accepted(long, heard_on_rf=False)
    req = SyncRequest("south", NONCE.hex())
    batches = rec.batches_for(req, T0, peers={"south"})
    assert 1 < len(batches) < 29
    assert sum(len(b.items) for b in batches) == 29
    assert all(len(encode_batch(b)) <= 6000 for b in batches)
    assert all(b.to == "south" and b.relay == "north" for b in batches)
