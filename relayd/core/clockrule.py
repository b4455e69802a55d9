"""Clock without internet: a Pi has no real-time clock.

After a power cut without NTP, the system clock may read 1970 or the last shutdown time.
Rejecting every alert as "not yet valid" then would silence the network exactly when it is
needed. The rule (docs/protocol.md, "Clock without internet"):

* The clock is *implausible* when it reads before the build date, or more than the clock
  skew allowance behind the newest verified alert this relay has seen.
* While implausible, the relay verifies an alert as of `max(floor, issued_at)`, where
  `floor = max(build date, newest verified issue time)`, provided the alert was issued no
  earlier than `floor - skew` and no later than `floor + MAX_CLOCK_ADVANCE_S`. The
  signature, key, role, replay and dedup checks are unchanged, so only an alert signed by
  a trusted key can move the relay's notion of time, and only by a bounded step.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_CLOCK_ADVANCE_S = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class ClockAssessment:
    plausible: bool
    warning: str | None
    floor_s: float


def assess_clock(
    system_now_s: float, build_epoch_s: float, newest_verified_s: float | None, skew_s: float
) -> ClockAssessment:
    if system_now_s < build_epoch_s:
        return ClockAssessment(
            False,
            "system clock is before this relayd build: set the time (NTP or an RTC)",
            max(build_epoch_s, newest_verified_s or 0.0),
        )
    if newest_verified_s is not None and system_now_s < newest_verified_s - skew_s:
        return ClockAssessment(
            False,
            "system clock is behind the newest verified alert: set the time (NTP or an RTC)",
            newest_verified_s,
        )
    return ClockAssessment(True, None, system_now_s)


def verification_time_s(
    assessment: ClockAssessment, system_now_s: float, issued_at_s: int, skew_s: float
) -> float:
    """The `now` to verify an alert against under the rule above."""
    if assessment.plausible:
        return system_now_s
    floor = assessment.floor_s
    if floor - skew_s <= issued_at_s <= floor + MAX_CLOCK_ADVANCE_S:
        return max(floor, float(issued_at_s))
    # Outside the bound: verify against the floor, which rejects it as expired or not yet valid.
    return floor
