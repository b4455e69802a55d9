"""The one "ready" line an operator looks for: what a relay is connected to, said once when
every link is up and again after an outage. Pure: the relay passes what it knows.

Never node ids or alert text (privacy: INFO is what a seized relay's log would show).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RadioSummary:
    name: str
    label: str  # tcp:HOST:PORT or the serial device
    firmware: str
    connected: bool


def ready_line(
    relay_id: str,
    radios: Sequence[RadioSummary],
    broker: str,
    trust_version: int,
    queued: int,
    *,
    again: bool = False,
) -> str:
    radio_text = ", ".join(f"radio {r.name} ({r.label}, firmware {r.firmware or 'unknown'})" for r in radios)
    head = "ready again" if again else "ready"
    return (
        f"{head}: relay {relay_id}; {radio_text}; broker {broker}; trust bundle v{trust_version}; "
        f"{queued} frame(s) queued for air"
    )


class Readiness:
    """Ready when every radio and the broker are connected. `update` returns "ready" the
    first time, "ready again" after any link was lost, and None otherwise."""

    def __init__(self) -> None:
        self._ready = False
        self._ever = False

    def update(self, radios_up: bool, broker_up: bool) -> str | None:
        up = radios_up and broker_up
        if up == self._ready:
            return None
        self._ready = up
        if not up:
            return None
        said = "ready again" if self._ever else "ready"
        self._ever = True
        return said
