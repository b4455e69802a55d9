"""Late-joiner catch-up decisions: who is sent what, and never twice."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relayd.core.catchup import ActiveFrame, CatchupPolicy, LateJoiners
from relayd.core.model import Severity

T0 = 1_800_000_000.0
POLICY = CatchupPolicy(absent_s=1800.0, per_node_interval_s=600.0, max_alerts=3)


def frame(n: int, issued: float, severity: Severity = Severity.URGENT) -> ActiveFrame:
    return ActiveFrame(bytes([n]) * 8, f"alert {n}", severity, int(issued), int(issued) + 7200)


def test_a_handheld_back_after_a_long_silence_gets_what_was_issued_meanwhile() -> None:
    lj = LateJoiners(T0, POLICY)
    assert lj.heard(7, T0 + 10, []) == []
    before = frame(1, T0 + 5)  # issued while the handheld could hear it
    during = frame(2, T0 + 600)
    info = frame(3, T0 + 700, Severity.INFO)
    got = lj.heard(7, T0 + 10 + 1800 + 1, [before, during, info])
    assert got == [during]


def test_an_alert_from_the_half_minute_before_a_boot_announcement_is_not_sent_again() -> None:
    """Stock firmware announces a boot 30 s after it: whatever went out in those 30 s the
    handheld heard itself, and a DM of it would show it twice."""
    lj = LateJoiners(T0, POLICY)
    assert lj.heard(7, T0 + 10, []) == []
    announced = T0 + 10 + 1800 + 100
    while_booting = frame(1, announced - 20)  # issued after the boot, before the announcement
    while_off = frame(2, announced - 45)  # issued before the boot: missed
    assert lj.heard(7, announced, [while_booting, while_off]) == [while_off]


def test_nodes_heard_recently_and_a_freshly_started_relay_send_nothing() -> None:
    lj = LateJoiners(T0, POLICY)
    alert = frame(1, T0 + 1)
    assert lj.heard(7, T0 + 60, [alert]) == []  # relay just started: everyone is "new"
    assert lj.heard(7, T0 + 120, [alert]) == []  # heard a minute ago


def test_each_alert_goes_to_a_node_once_and_catch_ups_are_spaced() -> None:
    lj = LateJoiners(T0, POLICY)
    alerts = [frame(i, T0 + 100 + i) for i in range(5)]
    first = lj.heard(7, T0 + 4000, alerts)
    assert len(first) == 3
    assert lj.heard(7, T0 + 4000 + 1800 + 1, alerts) == []  # within the interval? no: once only
    later = lj.heard(7, T0 + 4000 + 1800 + 700, [*alerts, frame(9, T0 + 5000)])
    assert {a.alert_id for a in later}.isdisjoint({a.alert_id for a in first})


@given(st.lists(st.tuples(st.integers(1, 4), st.floats(0, 20_000)), max_size=80))
def test_no_node_is_ever_sent_the_same_alert_twice(hearings: list[tuple[int, float]]) -> None:
    lj = LateJoiners(T0, POLICY)
    alerts = [frame(i, T0 + 1000 * i) for i in range(1, 10)]
    sent: list[tuple[int, bytes]] = []
    for node, offset in sorted(hearings, key=lambda h: h[1]):
        now = T0 + offset
        for a in lj.heard(node, now, [a for a in alerts if a.issued_at_s <= now]):
            sent.append((node, a.alert_id))
    assert len(sent) == len(set(sent))
