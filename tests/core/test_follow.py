"""Suppression follows the pacing: a relay behind another in an alert's order waits while the
one ahead shows progress through its queue, up to the alert's limit, and never transmits an
alert it heard first."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from relayd.core.outbound import Outbound, QueuedAlert
from relayd.core.scheduler import AirtimeScheduler
from relayd.core.suppression import MAX_RANK, Suppressor, rank_of

LEADER, FOLLOWER = "relay-north", "relay-south"
SLOT_S, STEP_S = 1.0, 2.0


def _behind(count: int) -> list[bytes]:
    """Alert ids for which the follower ranks right after the leader."""
    ids = (n.to_bytes(8, "big") for n in range(10_000))
    return [a for a in ids if rank_of(FOLLOWER, a, [LEADER]) == 1][:count]


def _follower() -> Suppressor:
    return Suppressor(FOLLOWER, slot_s=SLOT_S, jitter_s=0.0, rng=random.Random(1))


def _sent_twice(ids: list[bytes], order: list[int], *, follow: bool) -> int:
    """The leader takes the alerts in `order` (its queue: urgent first, retries), one per
    step from t=0; the follower held them in arrival order with its fixed backlog wait.
    How many did the follower release before the leader's "taken" for them arrived?"""
    f = _follower()
    for i, a in enumerate(ids):
        f.hold(a, 0.0, [LEADER], backlog_s=i * STEP_S)
    twice = 0
    for k, index in enumerate(order):
        now = k * STEP_S
        twice += len(f.due(now))  # released before the leader got to them
        f.heard_on_rf(ids[index])
        if follow:
            f.follow(LEADER, now, [LEADER], STEP_S, dict.fromkeys(ids, 1e9))
    return twice


def test_a_reordered_burst_sends_twice_with_a_fixed_wait_and_once_when_following() -> None:
    ids = _behind(12)
    # Six urgent alerts arrived last but go first on the leader's radio.
    order = list(range(6, 12)) + list(range(6))
    assert _sent_twice(ids, order, follow=False) > 0
    assert _sent_twice(ids, order, follow=True) == 0


def test_progress_moves_a_hold_to_one_step_and_our_slots_later_never_earlier() -> None:
    [a] = _behind(1)
    f = _follower()
    release = f.hold(a, 0.0, [LEADER])
    assert f.follow(LEADER, 5.0, [LEADER], STEP_S, {a: 100.0}) == [a]
    assert f.next_release_s() == 5.0 + STEP_S + SLOT_S > release
    assert f.follow(LEADER, 1.0, [LEADER], STEP_S, {a: 100.0}) == []  # an older event
    assert f.next_release_s() == 5.0 + STEP_S + SLOT_S


def test_a_relay_behind_us_or_an_alert_without_a_limit_moves_nothing() -> None:
    [a] = _behind(1)
    leader = Suppressor(LEADER, slot_s=SLOT_S, jitter_s=0.0)
    leader.hold(a, 0.0, [FOLLOWER])
    assert leader.follow(FOLLOWER, 5.0, [FOLLOWER], STEP_S, {a: 100.0}) == []
    f = _follower()
    f.hold(a, 0.0, [LEADER])
    assert f.follow(LEADER, 5.0, [LEADER], STEP_S, {}) == []
    disabled = Suppressor(FOLLOWER, slot_s=SLOT_S, enabled=False)
    disabled.hold(a, 0.0, [LEADER])
    assert disabled.follow(LEADER, 5.0, [LEADER], STEP_S, {a: 100.0}) == []


@given(
    st.lists(st.floats(min_value=0.0, max_value=1000.0), max_size=30),
    st.floats(min_value=1.0, max_value=500.0),
    st.integers(min_value=1, max_value=20),
)
def test_no_stream_of_progress_holds_an_alert_past_its_limit(
    events: list[float], limit: float, peers: int
) -> None:
    others = [f"relay-{n}" for n in range(peers)]
    alert = b"\x01" * 8
    f = Suppressor("relay-me", slot_s=SLOT_S, jitter_s=0.0)
    release = f.hold(alert, 0.0, others)
    for now in sorted(events):
        before = f.next_release_s()
        assert before is not None
        for other in others:
            f.follow(other, now, others, STEP_S, {alert: limit})
        after = f.next_release_s()
        assert after is not None
        assert after >= before  # never earlier
        assert after <= max(release, limit)  # never past the limit
        assert after <= max(release, now + STEP_S + MAX_RANK * SLOT_S)  # bounded by MAX_RANK
    assert f.due(max(release, limit)) == [alert]


@given(st.lists(st.tuples(st.booleans(), st.floats(min_value=0.0, max_value=50.0)), max_size=30))
def test_a_relay_that_hears_the_copy_first_never_transmits(steps: list[tuple[bool, float]]) -> None:
    ids = _behind(4)
    f = _follower()
    for a in ids:
        f.hold(a, 0.0, [LEADER])
    heard: set[bytes] = set()
    released: list[bytes] = []
    now = 0.0
    for n, (hear, dt) in enumerate(steps):
        now += dt
        if hear:
            a = ids[n % len(ids)]
            if a not in released:
                f.heard_on_rf(a)
                heard.add(a)
        else:
            f.follow(LEADER, now, [LEADER], STEP_S, dict.fromkeys(ids, 1e9))
        released += f.due(now)
    released += f.due(1e12)
    assert not heard & set(released)


def _outbound(relay: str) -> Outbound:
    return Outbound(
        Suppressor(relay, SLOT_S, jitter_s=0.0, rng=random.Random(0)),
        {"radio": AirtimeScheduler(duty_cycle=1.0, window_s=3600.0, min_interval_s=0.0)},
        ack_wait_s=20.0,
        refusal_grace_s=1.0,
        airtime_s=lambda _text: 0.2,
        channel=0,
    )


def test_outbound_holds_follow_the_peer_until_each_alert_nearly_expires() -> None:
    a, b = _behind(2)
    out = _outbound(FOLLOWER)
    for alert_id, expires in ((a, 30.0), (b, 1000.0)):
        turn = out.suppressor.delay_s(alert_id, [LEADER])
        out.hold(QueuedAlert(alert_id, "text", 1, 0, int(expires), turn, None), 0.0, turn_at_s=turn)
    # The leader took `a`: that moves `b` (and never `a`, which it has).
    assert out.follow(LEADER, a, 5.0, [LEADER], STEP_S)
    assert out.suppressor.next_release_s() == SLOT_S  # `a` still at its own turn
    out.heard(a)
    assert out.suppressor.next_release_s() == 5.0 + STEP_S + SLOT_S
    # Progress near the end cannot push `b` past its expiry less its own turn.
    out.follow(LEADER, a, 2000.0, [LEADER], STEP_S)
    assert out.suppressor.next_release_s() == 1000.0 - SLOT_S
