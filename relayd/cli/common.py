"""Helpers shared by CLI commands: time arguments and key loading."""

from __future__ import annotations

import time

from relayd.core.timefmt import parse_duration_s, parse_iso
from relayd.errors import RelaydError


class UsageError(RelaydError):
    """A bad command-line value."""


def now_from_arg(value: str | None) -> float:
    """The `--now ISO8601` override, or the system clock."""
    if value is None:
        return time.time()
    try:
        return parse_iso(value)
    except ValueError:
        raise UsageError(f"--now {value!r} is not an ISO 8601 time such as 2026-11-21T13:00:00Z") from None


def duration_arg(value: str, flag: str) -> int:
    try:
        seconds = parse_duration_s(value)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"{flag} must be longer than zero")
    return seconds


def expiry_arg(value: str | None, now_s: float, flag: str = "--expires") -> int | None:
    """A duration from now (30m, 90d) or an absolute ISO 8601 time."""
    if value is None:
        return None
    if value[:1].isdigit() and ("-" in value or "T" in value):
        try:
            return int(parse_iso(value))
        except ValueError:
            raise UsageError(
                f"{flag} {value!r} is neither a duration (30m, 90d) nor an ISO 8601 time"
            ) from None
    return int(now_s) + duration_arg(value, flag)
