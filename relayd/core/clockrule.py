"""Clock without internet: a Pi has no real-time clock.

After a power cut without NTP, the system clock may read 1970 or the last shutdown time.
Rejecting every alert as "not yet valid" then would silence the network exactly when it is
needed. The rule (docs/protocol.md, "Clock without internet"):

* The *floor* is the newest time this relay has signed evidence of: the newest issue time of
  an alert from a dispatcher or verifier key (`advances_floor`), the trust bundle's issue
  time (root-signed), and the build date. Reporter and relay keys sit on handhelds' owners
  and unattended Pis; their alerts never move the floor, so they cannot push it ahead.
* The clock is *implausible* when it reads before the build date, or more than the clock
  skew allowance behind the floor (a stale clock, e.g. the last shutdown time).
* While implausible, the relay verifies an alert as of `max(floor, issued_at)`, provided the
  alert was issued no earlier than `floor - skew` and no later than `floor +
  MAX_CLOCK_ADVANCE_S`. The signature, key, role, replay and dedup checks are unchanged.
* The clock is *set* when the kernel says NTP synchronised it, or when it stepped while the
  relay ran (someone or something set it). A set clock that reads after the build date is
  plausible whatever the floor says, and the floor is clamped to `now + skew`: a floor pushed
  ahead (by a trusted key while the clock was implausible) cannot make genuine alerts look
  expired once the time is known.
* Expiry of what waits in the queue is judged by `best_time_s`: the system clock when it is
  plausible, the floor otherwise, so a relay back after a long absence with a 1970 clock
  drops what its newest evidence says has expired.
"""

from __future__ import annotations

from dataclasses import dataclass

from relayd.core.model import Role

MAX_CLOCK_ADVANCE_S = 7 * 86400.0
# Keys whose alerts may advance the floor: people at a console, not handhelds or Pis.
FLOOR_ROLES = frozenset({Role.DISPATCHER, Role.VERIFIER})


@dataclass(frozen=True, slots=True)
class ClockAssessment:
    plausible: bool
    warning: str | None
    floor_s: float
    # The clock was set (NTP-synchronised, or stepped while running): the floor is clamped.
    clock_set: bool = False


def advances_floor(role: Role | None) -> bool:
    """May an accepted alert signed with this role move the persisted floor?"""
    return role in FLOOR_ROLES


def assess_clock(
    system_now_s: float,
    build_epoch_s: float,
    newest_verified_s: float | None,
    skew_s: float,
    *,
    clock_set: bool = False,
) -> ClockAssessment:
    """`newest_verified_s` is the floor evidence (newest dispatcher/verifier issue time, the
    bundle's issue time); `clock_set` says the system vouches for its clock."""
    if system_now_s < build_epoch_s:
        return ClockAssessment(
            False,
            "system clock is before this relayd build: set the time (NTP or an RTC)",
            max(build_epoch_s, newest_verified_s or 0.0),
        )
    if clock_set:
        return ClockAssessment(True, None, system_now_s, clock_set=True)
    if newest_verified_s is not None and system_now_s < newest_verified_s - skew_s:
        return ClockAssessment(
            False,
            "system clock is behind the newest signed time this relay has seen (a dispatcher "
            "alert or the trust bundle): it is stale; set the time (NTP or an RTC)",
            newest_verified_s,
        )
    return ClockAssessment(True, None, system_now_s)


def clamped_floor(
    newest_s: float | None, assessment: ClockAssessment, system_now_s: float, skew_s: float
) -> float | None:
    """The persisted floor after this assessment: never more than the skew ahead of a set clock."""
    if newest_s is None or not assessment.clock_set:
        return newest_s
    return min(newest_s, system_now_s + skew_s)


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


def best_time_s(assessment: ClockAssessment, system_now_s: float) -> float:
    """The best estimate of the real time, for expiring what is queued."""
    if assessment.plausible:
        return system_now_s
    return max(system_now_s, assessment.floor_s)


@dataclass(slots=True)
class StepDetector:
    """Notices the wall clock being set while the relay runs.

    Between two readings the wall clock and the monotonic clock advance alike unless the
    wall clock was stepped (NTP's first sync, `date -s`, an RTC read late). Slewing NTP
    corrections are far below the threshold.
    """

    threshold_s: float
    _offset_s: float | None = None

    def observe(self, wall_s: float, monotonic_s: float) -> bool:
        """True if the wall clock stepped by more than the threshold since the last call."""
        offset = wall_s - monotonic_s
        previous, self._offset_s = self._offset_s, offset
        return previous is not None and abs(offset - previous) > self.threshold_s
