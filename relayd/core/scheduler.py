"""The airtime scheduler: what goes on air next, and when.

A priority queue (urgent first, then oldest issue time), with expired items dropped, a
duty-cycle airtime budget over a sliding window (EU868 allows 10 %), and a minimum gap
between text frames because the firmware drops client texts sent less than 2 s apart
(firmware MeshService: "Rate limiting text messages"). Pure: the caller passes the time.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field

# The firmware rejects a client TEXT_MESSAGE_APP less than 2 s after the previous one it
# accepted (PhoneAPI::handleToRadioPacket, measured against its wall clock when its API loop
# reads the packet). Its serial and TCP loops may poll only every ~250 ms, so two texts we
# write 2.0 s apart can reach it 1.75 s apart: keep a 500 ms margin (two polls).
FIRMWARE_TEXT_INTERVAL_S = 2.5
DEFAULT_BUDGET_WINDOW_S = 3600.0


@dataclass(frozen=True, slots=True)
class QueueItem:
    alert_id: bytes
    onair: str
    severity_rank: int
    issued_at_s: int
    expires_at_s: int
    airtime_s: float
    channel_index: int = 0
    to_node: int | None = None  # None: broadcast; a node number: a direct message (report ack)
    packet_id: int | None = None  # a late repeat's: the id its alert first went under


@dataclass(frozen=True, slots=True)
class Ready:
    item: QueueItem


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float
    reason: str  # "interval" or "budget"


@dataclass(frozen=True, slots=True)
class Idle:
    pass


Action = Ready | Wait | Idle


@dataclass
class AirtimeScheduler:
    duty_cycle: float = 0.10
    window_s: float = DEFAULT_BUDGET_WINDOW_S
    min_interval_s: float = FIRMWARE_TEXT_INTERVAL_S
    _heap: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    _items: dict[bytes, QueueItem] = field(default_factory=dict)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    _sent: deque[tuple[float, float]] = field(default_factory=deque)  # (time, airtime)
    _next_tx_s: float | None = None  # not before: the text interval, or the last frame's flood
    # Every transmission ever recorded, never forgotten with the window: the metrics'
    # airtime counter (Prometheus takes the rate itself).
    airtime_total_s: float = 0.0

    @property
    def budget_s(self) -> float:
        return self.duty_cycle * self.window_s

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._items

    def push(self, item: QueueItem) -> None:
        if item.alert_id in self._items:
            return
        self._items[item.alert_id] = item
        heapq.heappush(self._heap, (item.severity_rank, item.issued_at_s, next(self._counter), item.alert_id))

    def remove(self, alert_id: bytes) -> QueueItem | None:
        """Take an item out (suppressed, cancelled). Lazy deletion from the heap."""
        return self._items.pop(alert_id, None)

    def drop_expired(self, now_s: float) -> list[QueueItem]:
        expired = [i for i in self._items.values() if now_s >= i.expires_at_s]
        for item in expired:
            del self._items[item.alert_id]
        return expired

    def _peek(self) -> QueueItem | None:
        while self._heap:
            alert_id = self._heap[0][3]
            item = self._items.get(alert_id)
            if item is not None:
                return item
            heapq.heappop(self._heap)
        return None

    def airtime_used_s(self, now_s: float) -> float:
        self._forget_old(now_s)
        return sum(a for _, a in self._sent)

    def _forget_old(self, now_s: float) -> None:
        while self._sent and self._sent[0][0] <= now_s - self.window_s:
            self._sent.popleft()

    def next_action(self, now_s: float) -> Action:
        """What to do now. Call `drop_expired` first so an expired item is never returned."""
        item = self._peek()
        if item is None:
            return Idle()
        if self._next_tx_s is not None:
            gap = self._next_tx_s - now_s
            if gap > 0:
                return Wait(gap, "interval")
        used = self.airtime_used_s(now_s)
        if used + item.airtime_s > self.budget_s and self._sent:
            # Wait until enough old transmissions leave the window.
            need = used + item.airtime_s - self.budget_s
            freed = 0.0
            for t, a in self._sent:
                freed += a
                if freed >= need:
                    return Wait(max(0.001, t + self.window_s - now_s), "budget")
            return Wait(self.window_s, "budget")
        return Ready(item)

    def pop(self, alert_id: bytes) -> QueueItem | None:
        return self._items.pop(alert_id, None)

    def record_transmission(self, airtime_s: float, now_s: float, flood_s: float = 0.0) -> None:
        """A frame went to the radio at `now_s`. The next one waits the firmware's text
        interval, or `flood_s` (how long this frame's flood keeps the channel busy,
        relayd/core/earshot.py) if that is longer."""
        self._sent.append((now_s, airtime_s))
        self._next_tx_s = now_s + max(self.min_interval_s, flood_s)
        self.airtime_total_s += airtime_s

    def airtime_history_s(
        self, now_s: float, buckets: int = 60, bucket_s: float | None = None
    ) -> list[float]:
        """Airtime per bucket (default: per minute of the window), oldest first."""
        self._forget_old(now_s)
        width = bucket_s if bucket_s is not None else self.window_s / buckets
        out = [0.0] * buckets
        for t, a in self._sent:
            idx = buckets - 1 - int((now_s - t) // width)
            if 0 <= idx < buckets:
                out[idx] += a
        return out
