"""Clock without internet: implausible clocks are flagged, and alerts still verify within bounds."""

from __future__ import annotations

from relayd.core.clockrule import (
    MAX_CLOCK_ADVANCE_S,
    StepDetector,
    advances_floor,
    assess_clock,
    best_time_s,
    clamped_floor,
    verification_time_s,
)
from relayd.core.model import Role

BUILD = 1_790_000_000.0
SKEW = 300.0


def test_clock_before_build_date_is_implausible() -> None:
    a = assess_clock(0.0, BUILD, None, SKEW)
    assert not a.plausible
    assert a.warning is not None
    assert "before this relayd build" in a.warning


def test_clock_behind_newest_verified_alert_is_implausible() -> None:
    a = assess_clock(BUILD + 100, BUILD, BUILD + 10_000, SKEW)
    assert not a.plausible
    assert a.floor_s == BUILD + 10_000


def test_plausible_clock_verifies_at_system_time() -> None:
    a = assess_clock(BUILD + 5000, BUILD, BUILD + 4000, SKEW)
    assert a.plausible
    assert verification_time_s(a, BUILD + 5000, int(BUILD + 4999), SKEW) == BUILD + 5000


def test_implausible_clock_accepts_alert_issued_within_the_bound() -> None:
    a = assess_clock(0.0, BUILD, BUILD + 1000, SKEW)
    issued = int(BUILD + 2000)
    assert verification_time_s(a, 0.0, issued, SKEW) == issued


def test_implausible_clock_does_not_jump_beyond_the_bound() -> None:
    a = assess_clock(0.0, BUILD, BUILD + 1000, SKEW)
    far = int(BUILD + 1000 + MAX_CLOCK_ADVANCE_S + 60)
    assert verification_time_s(a, 0.0, far, SKEW) == a.floor_s
    old = int(BUILD + 1000 - 2 * SKEW)
    assert verification_time_s(a, 0.0, old, SKEW) == a.floor_s


# --- a clock rule the least trusted keys cannot move (issue 13, finding 5) ----------------------


def test_only_dispatcher_and_verifier_alerts_advance_the_floor() -> None:

    assert {r for r in Role if advances_floor(r)} == {Role.DISPATCHER, Role.VERIFIER}
    assert not advances_floor(None)


def test_a_set_clock_is_plausible_and_clamps_a_floor_ahead_of_it() -> None:

    now = BUILD + 50_000
    poisoned = now + MAX_CLOCK_ADVANCE_S
    unset = assess_clock(now, BUILD, poisoned, SKEW)
    assert not unset.plausible  # without word from the system, the floor wins (stale clock)
    assert clamped_floor(poisoned, unset, now, SKEW) == poisoned
    a = assess_clock(now, BUILD, poisoned, SKEW, clock_set=True)
    assert a.plausible
    assert a.warning is None
    assert verification_time_s(a, now, int(now), SKEW) == now
    assert clamped_floor(poisoned, a, now, SKEW) == now + SKEW
    assert clamped_floor(now - 10, a, now, SKEW) == now - 10


def test_a_set_clock_before_the_build_date_is_still_implausible() -> None:
    a = assess_clock(0.0, BUILD, None, SKEW, clock_set=True)
    assert not a.plausible


def test_best_time_is_the_floor_while_the_clock_is_implausible() -> None:

    a = assess_clock(0.0, BUILD, BUILD + 1000, SKEW)
    assert best_time_s(a, 0.0) == BUILD + 1000
    p = assess_clock(BUILD + 5000, BUILD, BUILD + 4000, SKEW)
    assert best_time_s(p, BUILD + 5000) == BUILD + 5000


def test_step_detector_notices_a_set_clock_but_not_steady_time() -> None:

    d = StepDetector(SKEW)
    assert not d.observe(0.0, 100.0)
    assert not d.observe(5.0, 105.0)
    assert not d.observe(10.2, 110.0)  # slewing, not a step
    assert d.observe(BUILD, 115.0)  # NTP's first sync
    assert not d.observe(BUILD + 5, 120.0)
    assert d.observe(BUILD - 3600, 125.0)  # set back an hour
