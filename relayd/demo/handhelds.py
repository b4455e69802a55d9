"""What a person sees on each simulated stock handheld, as rows for the console's Handhelds
panel (no Textual here; the widget is tui/widgets/handhelds.py, fed by `HandheldWatch`).

A stock handheld shows every text it hears, forged or not; the panel adds what a smart
client holding the trust bundle would know: whether the frame verifies, and who signed it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from relayd.core.codec import MalformedFrame, decode
from relayd.core.verify import Verifier
from relayd.sim.firmware import DisplayedMessage

BEL = "\x07"


@dataclass(frozen=True, slots=True)
class HandheldLine:
    handheld: str
    clock: str  # HH:MM:SS, local time, when it was displayed
    sender: str  # the radio it came from (relays re-send others' alerts)
    text: str  # the human text: the signature token line and BEL removed
    bell: bool  # BEL rang the handheld's bell (urgent alerts)
    dm: bool  # a direct message (e.g. a relay's "report received" ack)
    check: str  # "✓ dispatcher", "✗ bad_signature", or "" for plain text


def describe(d: DisplayedMessage, verifier: Verifier, now_s: float | None = None) -> HandheldLine:
    text = d.text
    check = ""
    try:
        frame = decode(text)
    except MalformedFrame:
        pass  # a field report, an ack or chat: not a signed frame
    else:
        verdict = verifier.authenticate(frame, time.time() if now_s is None else now_s)
        if verdict.ok and verdict.signer is not None:
            check = f"✓ {verdict.signer.name}"
        else:
            check = f"✗ {verdict.reason.value if verdict.reason else 'rejected'}"
        text = text.rsplit("\n", 1)[0]  # the token line is for machines
    text = text.replace(BEL, "").replace("\n", " ").strip()
    return HandheldLine(
        handheld=d.handheld,
        clock=time.strftime("%H:%M:%S", time.localtime(d.wall_time)),
        sender=d.sender_name or d.sender_id,
        text=text,
        bell=d.bell,
        dm=d.dm,
        check=check,
    )


class HandheldWatch:
    """What the handhelds displayed since the last look, as lines, oldest first.

    `displays(name)` is the simulator's list of what handheld `name` has shown so far (it
    only grows), e.g. `Neighborhood.displays`."""

    def __init__(
        self, names: Sequence[str], displays: Callable[[str], Sequence[DisplayedMessage]], verifier: Verifier
    ) -> None:
        self.names = list(names)
        self._displays = displays
        self._verifier = verifier
        self.counts: dict[str, int] = dict.fromkeys(self.names, 0)

    def poll(self) -> list[HandheldLine]:
        new: list[DisplayedMessage] = []
        for name in self.names:
            shown = self._displays(name)
            new += shown[self.counts[name] :]
            self.counts[name] = len(shown)
        return [describe(d, self._verifier) for d in sorted(new, key=lambda d: d.wall_time)]
