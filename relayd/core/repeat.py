"""Late repeats: a second chance on air for the handhelds that missed an urgent alert.

A handheld misses a frame while it is transmitting itself (half duplex), where two floods
overlap, or when the repeater it would have heard dropped the copy from a full transmit
queue. Nobody learns of it: a stock handheld never acknowledges a broadcast. So the relay
whose radio put an urgent alert on air sends it once more, later, under the same packet id:

- a handheld that has it drops the repeat as a duplicate (its PacketHistory holds the
  (from, id)); one that missed it shows it, once;
- a neighbour that has it relays it once more without showing it again (firmware
  NextHopRouter::shouldFilterReceived: a copy straight from its originator, hops away 0, is
  relayed again unless a copy still waits in the transmit queue), so a handheld two hops
  away that missed it gets it too.

Firmware facts bound when a repeat may go:

- A radio ignores a client packet whose id is among the last 20 ids its client sent
  (PhoneAPI::wasSeenRecently; meshtasticd in SimRadio mode skips the check, a radio on
  hardware does not). `ClientIds` mirrors that memory, and a repeat waits until its id has
  left it: after 20 other frames from this relay, which in a burst (where the misses are)
  is 20 alerts later.
- A handheld's PacketHistory keeps 2 x MAX_NUM_NODES records (PACKETHISTORY_MAX), the oldest
  heard making way for a new one: 200 on the smallest handheld (an ESP32-S3 with 4 MB flash;
  nRF52840 and ESP32 boards keep 240; only screenless STM32WL boards keep the floor, 100).
  A repeat after more traffic than that would show twice, so it goes only while the
  relay's radio has heard or sent fewer than `HISTORY_MARGIN` packets since the alert went
  on air: half the smallest history, because a handheld may hear traffic our radio does not.

And the air is shared. Only an alert handed to the radio while other frames of ours waited
for the air (a burst, where floods follow each other closely and the misses are) is
repeated: a steady stream, each alert into a quiet channel, costs nothing extra. A repeat
goes only when its radio has nothing else to send and has spent less than
`REPEAT_BUDGET_SHARE` of its airtime budget, at most one per longest flood; it never delays a
fresh frame by more than the one repeat already on its way, and never spends the airtime
fresh alerts need. It goes only while the alert is still active (not expired, cancelled or
cleared).

Pure: the caller passes the time, the radio's counts and its memory of client ids.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

# PhoneAPI::recentToRadioPacketIds: the last 20 client packet ids a radio remembers.
RECENT_CLIENT_IDS = 20
# PACKETHISTORY_MAX = max(2 x MAX_NUM_NODES, 100) (mesh-pb-constants.h): the smallest handheld's.
HANDHELD_HISTORY_MIN = 200
HISTORY_MARGIN = HANDHELD_HISTORY_MIN // 2
# A repeat spends at most this share of the radio's duty-cycle budget (relayd/core/scheduler.py).
REPEAT_BUDGET_SHARE = 0.5
# Repeats waiting per radio; past this the oldest is given up (a burst longer than any
# handheld's history could not be repeated anyway).
WAITING_MAX = 256
# Alerts already repeated (or given up), remembered so that none goes a third time.
DONE_MAX = 1024


class ClientIds:
    """The packet ids a radio's PhoneAPI remembers from its client: the last 20 distinct ids
    written to it (a repeated id is ignored and does not refresh). One per radio for the
    relay's life: the serial API keeps its memory across reconnects; a TCP reconnect starts
    afresh, so for TCP this errs on the side of waiting."""

    def __init__(self) -> None:
        self._recent: deque[int] = deque(maxlen=RECENT_CLIENT_IDS)

    def wrote(self, packet_id: int) -> bool:
        """A packet with this id is being written to the radio. True if it is new to the
        radio's memory (the radio will act on it), False if the radio will ignore it."""
        if packet_id == 0:
            return True  # id 0 is never remembered
        if packet_id in self._recent:
            return False
        self._recent.append(packet_id)
        return True

    def remembers(self, packet_id: int) -> bool:
        return packet_id in self._recent


@dataclass(frozen=True, slots=True)
class Repeat:
    """An alert our radio put on air, to go once more under the same packet id."""

    alert_id: bytes
    packet_id: int
    onair: str
    severity_rank: int
    expires_at_s: int
    traffic_then: int  # the radio's traffic count (heard or sent) when it went on air


# Why a waiting repeat was given up (the metrics' reasons).
GONE_EXPIRED = "expired"
GONE_INACTIVE = "inactive"  # cancelled or cleared
GONE_HISTORY = "history"  # handhelds may have forgotten it: a repeat could show twice
GONE_RESTART = "restart"  # a handheld may have restarted since, forgetting it
GONE_OVERFLOW = "overflow"
GONE_REASONS = (GONE_EXPIRED, GONE_INACTIVE, GONE_HISTORY, GONE_RESTART, GONE_OVERFLOW)


@dataclass
class LateRepeats:
    """The repeats waiting, per radio. `max_rank`: the severity ranks that are repeated
    (relayd.core.model.Severity.rank, urgent 0); None repeats nothing."""

    max_rank: int | None
    _waiting: dict[str, OrderedDict[bytes, Repeat]] = field(default_factory=dict)
    _done: OrderedDict[tuple[str, bytes], None] = field(default_factory=OrderedDict)
    # Alerts a radio was handed while other frames waited for the air: a burst.
    _crowded: OrderedDict[tuple[str, bytes], None] = field(default_factory=OrderedDict)
    # Per radio: no repeat before this (the last repeat's flood).
    _not_before_s: dict[str, float] = field(default_factory=dict)
    given_up: Counter[str] = field(default_factory=Counter)

    def waiting(self, radio: str) -> int:
        return len(self._waiting.get(radio, ()))

    def handed(self, radio: str, alert_id: bytes, *, crowded: bool) -> None:
        """`radio` took this alert's frame; `crowded`: other frames of ours were waiting for the
        air, in the radio's queue or ours. Only those are repeated: the misses are in bursts,
        where floods follow each other closely; an alert sent into a quiet channel is not, so
        a steady stream costs no extra airtime."""
        key = (radio, alert_id)
        if crowded:
            self._crowded[key] = None
            if len(self._crowded) > DONE_MAX:
                self._crowded.popitem(last=False)

    def aired(self, radio: str, repeat: Repeat) -> None:
        """`radio` confirmed this alert on air (the firmware's word, not just its taking it)."""
        if self.max_rank is None or repeat.severity_rank > self.max_rank:
            return
        if (radio, repeat.alert_id) not in self._crowded:
            return  # sent into a quiet channel
        del self._crowded[radio, repeat.alert_id]
        waiting = self._waiting.setdefault(radio, OrderedDict())
        if repeat.alert_id in waiting or (radio, repeat.alert_id) in self._done:
            return  # confirmed again (an in-doubt resend): one repeat is enough
        waiting[repeat.alert_id] = repeat
        if len(waiting) > WAITING_MAX:
            self._end(radio, waiting.popitem(last=False)[1], GONE_OVERFLOW)

    def node_restarted(self, radio: str) -> None:
        """A handheld `radio` hears announced itself (its boot, or its app reconnecting). If it
        restarted, its PacketHistory is empty and a repeat of an alert it had would show
        twice on it: nothing this radio aired before goes again."""
        for repeat in self._waiting.pop(radio, {}).values():
            self._end(radio, repeat, GONE_RESTART)

    def next_for(
        self,
        radio: str,
        now_s: float,
        *,
        traffic_now: int,
        budget_used: float,
        remembers: Callable[[int], bool],
        still_active: Callable[[bytes], bool],
        spacing_s: float = 0.0,
    ) -> Repeat | None:
        """The repeat to hand `radio` now, which leaves the list, or None. Call only when the
        radio has nothing else to send. `budget_used`: the share of its airtime budget spent
        in the window; `remembers`: whether the radio would ignore an id (`ClientIds`);
        `spacing_s`: how long a repeat's flood lasts, the least time between two repeats
        (a fresh frame does not wait for it: only the next repeat does)."""
        waiting = self._waiting.get(radio)
        if not waiting:
            return None
        for alert_id, repeat in list(waiting.items()):
            gone = self._gone(repeat, now_s, traffic_now, still_active)
            if gone is not None:
                del waiting[alert_id]
                self._end(radio, repeat, gone)
        if budget_used >= REPEAT_BUDGET_SHARE or now_s < self._not_before_s.get(radio, 0.0):
            return None
        for alert_id, repeat in waiting.items():
            if not remembers(repeat.packet_id):
                del waiting[alert_id]
                self._end(radio, repeat, None)
                self._not_before_s[radio] = now_s + spacing_s
                return repeat
        return None

    def _end(self, radio: str, repeat: Repeat, gone: str | None) -> None:
        """It leaves the list: handed out (`gone` None) or given up for that reason."""
        if gone is not None:
            self.given_up[gone] += 1
        self._done[radio, repeat.alert_id] = None
        if len(self._done) > DONE_MAX:
            self._done.popitem(last=False)

    @staticmethod
    def _gone(
        repeat: Repeat, now_s: float, traffic_now: int, still_active: Callable[[bytes], bool]
    ) -> str | None:
        if now_s >= repeat.expires_at_s:
            return GONE_EXPIRED
        if not still_active(repeat.alert_id):
            return GONE_INACTIVE
        if traffic_now - repeat.traffic_then >= HISTORY_MARGIN:
            return GONE_HISTORY
        return None
