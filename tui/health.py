"""Relay health: what makes a relay red, in words. Pure.

A relay is red when it cannot be relied on to put alerts on air or to tell the truth about
them: offline, its radio not connected, its clock not trusted, its storage failing, or
packets its radio heard before relayd connected skipped as backlog (a field report may be
among them).
"""

from __future__ import annotations

from dataclasses import dataclass

from relayd.core.status import LinkState, RelayState, RelayStatus

# The status counter (in `drops`) for packets skipped as backlog when the radio connected.
# The daemon counts these (relayd_radio_skipped_backlog) but its status does not carry them
# yet, and parse_status accepts only DropReason names in `drops`: until both change, this
# rule fires only for statuses built in-process.
BACKLOG_COUNTER = "skipped_backlog"


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
    skipped = status.drops.get(BACKLOG_COUNTER, 0)
    if skipped:
        out.append(
            Problem(
                "BKLOG!",
                f"{skipped} packet(s) heard before relayd connected were skipped as backlog",
            )
        )
    return tuple(out)
