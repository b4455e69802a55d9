"""The airtime scheduler: urgent first, expired dropped, duty cycle and text interval kept."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relayd.core.scheduler import AirtimeScheduler, Idle, QueueItem, Ready, Wait


def item(n: int, rank: int = 2, issued: int = 100, expires: int = 10_000, airtime: float = 2.0) -> QueueItem:
    return QueueItem(n.to_bytes(8, "big"), f"text {n}", rank, issued, expires, airtime)


def test_urgent_goes_first_then_oldest_issue_time() -> None:
    s = AirtimeScheduler()
    s.push(item(1, rank=2, issued=10))
    s.push(item(2, rank=0, issued=50))
    s.push(item(3, rank=2, issued=5))
    order = []
    now = 1000.0
    while len(s):
        action = s.next_action(now)
        assert isinstance(action, Ready)
        order.append(int.from_bytes(action.item.alert_id, "big"))
        s.pop(action.item.alert_id)
        s.record_transmission(action.item.airtime_s, now)
        now += 10
    assert order == [2, 3, 1]


def test_expired_items_are_dropped_never_returned() -> None:
    s = AirtimeScheduler()
    s.push(item(1, expires=500))
    s.push(item(2, expires=5000))
    dropped = s.drop_expired(600.0)
    assert [d.alert_id for d in dropped] == [item(1).alert_id]
    action = s.next_action(600.0)
    assert isinstance(action, Ready)
    assert action.item.alert_id == item(2).alert_id


def test_firmware_text_interval_is_kept() -> None:
    s = AirtimeScheduler(min_interval_s=2.0)
    s.push(item(1))
    s.push(item(2))
    first = s.next_action(0.0)
    assert isinstance(first, Ready)
    s.pop(first.item.alert_id)
    s.record_transmission(first.item.airtime_s, 0.0)
    wait = s.next_action(0.5)
    assert isinstance(wait, Wait)
    assert wait.reason == "interval"
    assert abs(wait.seconds - 1.5) < 1e-9
    assert isinstance(s.next_action(2.0), Ready)


def test_duty_cycle_budget_waits_until_old_airtime_leaves_the_window() -> None:
    s = AirtimeScheduler(duty_cycle=0.1, window_s=100.0, min_interval_s=0.0)  # 10 s per 100 s
    for n in range(6):
        s.push(item(n, airtime=2.0))
    now = 0.0
    sent = 0
    while True:
        action = s.next_action(now)
        if not isinstance(action, Ready):
            break
        s.pop(action.item.alert_id)
        s.record_transmission(2.0, now)
        sent += 1
        now += 1.0
    assert sent == 5
    assert isinstance(action, Wait)
    assert action.reason == "budget"
    assert isinstance(s.next_action(now + action.seconds), Ready)


def test_empty_queue_is_idle_and_removed_items_are_skipped() -> None:
    s = AirtimeScheduler()
    assert isinstance(s.next_action(0.0), Idle)
    s.push(item(1))
    s.remove(item(1).alert_id)
    assert isinstance(s.next_action(0.0), Idle)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1000), st.floats(0.1, 3.0)), min_size=1, max_size=40)
)
def test_airtime_in_any_window_never_exceeds_the_budget(items: list[tuple[int, int, float]]) -> None:
    s = AirtimeScheduler(duty_cycle=0.1, window_s=60.0, min_interval_s=0.0)
    for n, (rank, issued, airtime) in enumerate(items):
        s.push(item(n, rank=rank, issued=issued, airtime=airtime))
    now = 0.0
    sent: list[tuple[float, float]] = []
    for _ in range(500):
        action = s.next_action(now)
        if isinstance(action, Idle):
            break
        if isinstance(action, Wait):
            now += action.seconds
            continue
        s.pop(action.item.alert_id)
        s.record_transmission(action.item.airtime_s, now)
        sent.append((now, action.item.airtime_s))
    for t, _ in sent:
        in_window = sum(a for u, a in sent if t - 60.0 < u <= t)
        assert in_window <= 6.0 + 1e-6


def test_the_airtime_total_keeps_what_the_window_forgets_even_across_a_clock_step_back() -> None:
    s = AirtimeScheduler(duty_cycle=0.1, window_s=60.0, min_interval_s=0.0)
    s.record_transmission(1.5, 100.0)
    s.record_transmission(2.0, 100.0)  # same timestamp: both count
    s.record_transmission(0.5, 50.0)  # the clock was stepped back (NTP after boot)
    assert s.airtime_total_s == 4.0
    assert s.airtime_used_s(1000.0) == 0.0  # the window forgot them all
    assert s.airtime_total_s == 4.0


def test_the_next_frame_waits_for_the_last_ones_flood_when_that_is_longer() -> None:
    s = AirtimeScheduler(min_interval_s=2.5)
    s.push(item(1))
    s.push(item(2))
    s.pop(item(1).alert_id)
    s.record_transmission(2.0, 100.0, flood_s=9.0)
    wait = s.next_action(100.0)
    assert isinstance(wait, Wait)
    assert wait.seconds == 9.0
    assert isinstance(s.next_action(109.0), Ready)
    s.pop(item(2).alert_id)
    s.push(item(3))
    s.record_transmission(2.0, 109.0, flood_s=1.0)  # a short flood: the text interval holds
    wait = s.next_action(109.0)
    assert isinstance(wait, Wait)
    assert wait.seconds == 2.5
