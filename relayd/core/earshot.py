"""Pacing to the air: how long one alert's flood keeps the channel busy where this relay is.

A relay's frame is repeated by the nodes that hear it (Meshtastic floods every broadcast, and
a DM without a known route). Where the relay is, those repeats take the channel one after
another (CSMA, half duplex): each for the frame's airtime plus the repeater's contention wait.
A relay that hands its radio the next alert while the last one's flood is still going puts
two floods on the air at once. Handhelds that are repeating cannot hear (half duplex), and
repeats are dropped from full transmit queues. In the chaos run (docs/performance.md) the
backlog released after a backhaul cut lost 21 of 1,125 handheld deliveries that way when
sent at the firmware's text interval, and 2 when paced as below, in the same run.

So after each frame the relay waits for its flood: one frame for itself and one for each
node in its earshot, capped. The nodes in earshot are the transmitters its radio heard
lately: a packet's originator when it came directly, the node that repeated it otherwise
(the header's `relay_node`, the low byte of the repeater's node number, firmware 2.6+), and
the nodes the radio's own node DB lists as heard with no hop. Only those bytes and times
are kept, in memory and bounded, for `window_s`: which node was near which relay is no one's
business after that.

A relay alone, or one that has heard nobody yet, waits for its own frame only. The firmware's
text interval (relayd/core/scheduler.py) still applies when it is the longer wait.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from relayd.core.airtime import LoRaPreset
from relayd.core.suppression import mac_slot_s

# Repeaters counted at most: past this many a crowded area's clients cancel their repeats
# on hearing each other's (FloodingRouter), so more nodes do not mean more frames.
MAX_REPEATERS = 7
# RadioInterface: an idle channel's contention window is 2^CWmin slots; a repeater waits a
# random part of it, half on average.
_CW_MIN = 3
_MEAN_CONTENTION_SLOTS = (1 << _CW_MIN) / 2
# Bytes remembered at most (there are only 255 non-zero ones).
_TRANSMITTERS_MAX = 256


def flood_s(frame_s: float, repeaters: int, preset: LoRaPreset, time_scale: float = 1.0) -> float:
    """How long a flood of one `frame_s` frame keeps the channel busy in earshot, with
    `repeaters` nodes there to repeat it (in the caller's time: LoRa seconds / time_scale)."""
    frames = 1 + min(max(repeaters, 0), MAX_REPEATERS)
    return frames * (frame_s + _MEAN_CONTENTION_SLOTS * mac_slot_s(preset) / time_scale)


@dataclass
class Earshot:
    """The transmitters one radio heard lately (by the low byte of their node number)."""

    own_byte: int | None = None  # our radio's low byte: never counted
    window_s: float = 3600.0
    _heard: OrderedDict[int, float] = field(default_factory=OrderedDict)

    def heard(self, transmitter_byte: int, now_s: float) -> None:
        byte = transmitter_byte & 0xFF
        if byte in (0, self.own_byte):
            return  # 0: no repeater named (older firmware), or our own frame repeated back
        self._heard[byte] = now_s
        self._heard.move_to_end(byte)
        if len(self._heard) > _TRANSMITTERS_MAX:
            self._heard.popitem(last=False)

    def repeaters(self, now_s: float) -> int:
        """Transmitters heard within the window (older ones are forgotten here)."""
        while self._heard:
            byte, at = next(iter(self._heard.items()))
            if at > now_s - self.window_s:
                break
            del self._heard[byte]
        since = now_s - self.window_s
        return sum(1 for b, at in self._heard.items() if at > since and b != self.own_byte)


def transmitter_byte(from_node: int, relay_node: int, hop_start: int, hop_limit: int) -> int | None:
    """Who put the copy we heard on air: the originator if it came straight (no hop used),
    else the repeater the header names; None when the header does not say."""
    if hop_start > 0 and hop_start == hop_limit:
        return from_node & 0xFF
    if relay_node & 0xFF:
        return relay_node & 0xFF
    return None
