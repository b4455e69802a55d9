"""Relay health: what makes a relay red, in words. Pure.

A relay is red when it cannot be relied on to put alerts on air or to tell the truth about
them: offline, its radio not connected, its clock not trusted, its storage failing, or a
field report its radio heard before relayd connected that was too old to deliver (counted in
the signed status's `backlog`, relayd/core/backlog.py; late but current reports are
delivered, marked late, and make nothing red).
"""

from __future__ import annotations

from dataclasses import dataclass

from relayd.core.backlog import REPORT_MAX_AGE_S, lost_reports
from relayd.core.status import LinkState, RelayState, RelayStatus


@dataclass(frozen=True, slots=True)
class Problem:
    short: str  # fits a table cell: OFFLINE, RADIO!, ...
    detail: str  # a sentence for the banner and the detail pane


def relay_problems(status: RelayStatus) -> tuple[Problem, ...]:
    """Everything wrong with a relay, worst first. Empty: healthy."""
    if status.state is RelayState.OFFLINE:
        # Whatever else the last status said is stale: offline says it all.
        return (Problem("OFFLINE", "offline: its last will was published or it shut down"),)
    out: list[Problem] = []
    if status.radio is not LinkState.CONNECTED:
        device = f" ({status.radio_device})" if status.radio_device else ""
        out.append(Problem("RADIO!", f"radio {status.radio.value}{device}: nothing goes on air here"))
    if status.storage_error:
        out.append(Problem("DISK!", f"storage: {status.storage_error}"))
    if status.clock_warning:
        out.append(Problem("CLOCK!", f"clock: {status.clock_warning}"))
    lost = lost_reports(status.backlog)
    if lost:
        hours = REPORT_MAX_AGE_S // 3600
        out.append(
            Problem(
                "BKLOG!",
                f"{lost} field report(s) heard before relayd connected were over {hours} h old: "
                "not delivered",
            )
        )
    return tuple(out)
