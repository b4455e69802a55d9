"""Texts heard before relayd connected (relayd/core/backlog.py): what is delivered, what is counted."""

from __future__ import annotations

from relayd.core.backlog import (
    REPORT_MAX_AGE_S,
    BacklogOutcome,
    backlog_route,
    late_report_text,
    lost_reports,
    report_is_current,
)

NOW_S = 1_800_000_000.0


def route(
    *, answer: bool = False, reply_id: int = 0, report: bool = False, ago_s: float = 60
) -> BacklogOutcome | None:
    return backlog_route(
        is_answer=answer, reply_id=reply_id, is_report=report, heard_at_s=NOW_S - ago_s, now_s=NOW_S
    )


def test_reports_within_the_hour_are_delivered_and_older_ones_counted_lost() -> None:
    assert route(report=True, ago_s=REPORT_MAX_AGE_S) is BacklogOutcome.LATE_REPORT
    assert route(report=True, ago_s=REPORT_MAX_AGE_S + 1) is BacklogOutcome.OLD_REPORT
    assert BacklogOutcome.OLD_REPORT.lost
    assert not BacklogOutcome.LATE_REPORT.lost


def test_a_report_heard_without_a_time_is_delivered() -> None:
    assert report_is_current(0.0, NOW_S)
    assert "time unknown" in late_report_text("vans", 0.0)


def test_answers_need_their_packet_id_and_alerts_go_to_verification() -> None:
    assert route(answer=True, reply_id=0x1234) is BacklogOutcome.LATE_ANSWER
    assert route(answer=True) is BacklogOutcome.UNATTRIBUTED
    assert route() is None  # an alert (or chat): verified, as live


def test_the_late_mark_comes_first_with_the_time_heard() -> None:
    text = late_report_text("two vans at Oak", 1_800_000_000.0)
    assert text == "(late: heard 08:00:00Z, before relayd connected) two vans at Oak"


def test_lost_counts_only_old_reports() -> None:
    assert lost_reports({"old_report": 2, "late_report": 5, "other": 7, "unattributed": 1}) == 2
    assert lost_reports({}) == 0
