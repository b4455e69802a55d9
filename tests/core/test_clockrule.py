"""Clock without internet: implausible clocks are flagged, and alerts still verify within bounds."""

from __future__ import annotations

from relayd.core.clockrule import MAX_CLOCK_ADVANCE_S, assess_clock, verification_time_s

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
