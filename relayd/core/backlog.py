"""What a relay does with texts its radio heard before relayd connected (a restart, a radio
unplugged for a while). Pure: the relay passes the text, when the radio heard it, and now.

The firmware keeps what it received while no client was connected and hands it over at the
next connection. None of it is news to put on air again, but it must not vanish either:

- an alert is verified as usual: accepted if still valid, or taken as a neighbour's copy that
  stands us down (relayd/daemon/relay.py `_on_backlog_text`);
- a field report heard within `REPORT_MAX_AGE_S` reaches dispatchers, its text marked late
  with the time the radio heard it (signed by the relay with the rest of the report);
- an older field report is not delivered as if it were current: it is counted
  (`old_report`), and its relay turns red on the console until restarted;
- an answer to an alert (relayd/core/replies.py) is taken if it names the alert by packet
  id; a bare keyword heard back then cannot be tied to an alert for sure (`unattributed`);
- anything else (chat, notices) is counted as `other`.

The counts travel in the relay's signed status (`backlog`), so the console can show them.
"""

from __future__ import annotations

import enum
import time

# A field report heard this long before relayd connected is still worth a dispatcher's
# look (an hour: a restart or an unplugged cable noticed late). Older ones are counted.
REPORT_MAX_AGE_S = 3600


class BacklogOutcome(enum.Enum):
    """The status counter (`backlog` in the relay's status) for one backlog text."""

    ALERT = "alert"  # verified: accepted, or a copy that stood us down
    LATE_REPORT = "late_report"  # delivered to dispatchers, marked late
    LATE_ANSWER = "late_answer"  # an answer naming its alert by packet id: counted
    OLD_REPORT = "old_report"  # a field report too old to deliver: lost, shown red
    UNATTRIBUTED = "unattributed"  # a bare answer keyword: which alert is unknown
    OTHER = "other"  # chat, notices, frames that fail verification

    @property
    def lost(self) -> bool:
        """Something a person sent for dispatchers that did not reach them."""
        return self is BacklogOutcome.OLD_REPORT


def report_is_current(heard_at_s: float, now_s: float, max_age_s: float = REPORT_MAX_AGE_S) -> bool:
    """Whether a backlog report is still worth delivering. A radio whose clock was not set
    when it heard the packet gives no time (0): delivered, since nothing says it is old."""
    return not heard_at_s or now_s - heard_at_s <= max_age_s


def late_report_text(text: str, heard_at_s: float) -> str:
    """The report text with when the radio heard it, first, so no reader takes it for news."""
    if not heard_at_s:
        return f"(late: heard before relayd connected, time unknown) {text}"
    heard = time.strftime("%H:%M:%SZ", time.gmtime(heard_at_s))
    return f"(late: heard {heard}, before relayd connected) {text}"


def backlog_route(
    *, is_answer: bool, reply_id: int, is_report: bool, heard_at_s: float, now_s: float
) -> BacklogOutcome | None:
    """What to do with a backlog text that is not an alert: LATE_REPORT and LATE_ANSWER are
    to be delivered (an answer may still be dropped: then it is UNATTRIBUTED); None means
    verify it as an alert."""
    if is_answer:
        return BacklogOutcome.LATE_ANSWER if reply_id else BacklogOutcome.UNATTRIBUTED
    if is_report:
        current = report_is_current(heard_at_s, now_s)
        return BacklogOutcome.LATE_REPORT if current else BacklogOutcome.OLD_REPORT
    return None


def lost_reports(backlog: dict[str, int]) -> int:
    """From a status's `backlog` counters: field reports that never reached dispatchers."""
    return sum(n for name, n in backlog.items() if name in _LOST)


_LOST = {o.value for o in BacklogOutcome if o.lost}
