"""The bounded intake between paho's socket reader and the relay's MQTT handler.

aiomqtt puts every delivery into one queue and, once it is full, discards the newest with
a log line. Under a flood of distinct forgeries (each costs the relay a decode and, under
a genuine key id, an Ed25519 check) that queue fills, and what it discards includes
genuine QoS 1 alerts. Those are never acknowledged (relayd acks only after handling), so
the broker counts them in flight until the next reconnect: once its in-flight window
(Mosquitto: 20) is full of them it sends the relay no QoS 1 message at all.

relayd's own publishers (dispatcher consoles, relays) publish at QoS 1, and the relay
subscribes at QoS 1. So the intake keeps two lanes:

- QoS 1 deliveries are always admitted and handled first. They need no bound of ours: the
  broker sends at most its in-flight window of unacknowledged ones, and each is
  acknowledged only once handled.
- QoS 0 deliveries (nothing of relayd's; a flood publisher's choice because it is
  cheapest) wait behind them, at most `bulk_limit`; beyond that the newest is shed and
  counted (`shed`). A QoS 0 message carries no promise of delivery.

A flood at QoS 1 is paced by the broker's in-flight window instead, and shares it with
genuine alerts; that case is not solved here.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable

import aiomqtt

log = logging.getLogger("relayd.mqtt")

DEFAULT_BULK_LIMIT = 10_000
# The drop reason a shed delivery is counted under in the relay's status.
SHED_REASON = "intake_overload"
# At most one "shedding" warning per this many seconds, with the rate since the last one.
SHED_LOG_INTERVAL_S = 10.0


class IntakeStats:
    """What the intakes of one MQTT link shed, across its reconnects (each gets a new queue)."""

    def __init__(self) -> None:
        self.shed = 0

    def as_drops(self) -> dict[str, int]:
        """For the relay's status `drops`, beside the verifier's reasons."""
        return {SHED_REASON: self.shed} if self.shed else {}


class IntakeQueue(asyncio.Queue[aiomqtt.Message]):
    """QoS 1 first and unbounded (the broker bounds it); QoS 0 after, bounded, shed when full."""

    def __init__(
        self,
        maxsize: int = 0,
        *,
        stats: IntakeStats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # aiomqtt passes its max_queued_incoming_messages as `maxsize`: it bounds QoS 0 only.
        # asyncio's own bound stays off, or put_nowait would raise for a QoS 1 delivery.
        self.bulk_limit = maxsize if maxsize > 0 else DEFAULT_BULK_LIMIT
        self.stats = stats if stats is not None else IntakeStats()
        self._clock = clock
        self._logged_at = clock()
        self._logged_shed = 0
        super().__init__(0)

    @property
    def shed(self) -> int:
        return self.stats.shed

    def _init(self, maxsize: int) -> None:
        self._acked: collections.deque[aiomqtt.Message] = collections.deque()
        self._bulk: collections.deque[aiomqtt.Message] = collections.deque()
        self._queue = self._bulk  # asyncio's repr() reads it

    def _put(self, item: aiomqtt.Message) -> None:
        if item.qos > 0:
            self._acked.append(item)
        elif len(self._bulk) < self.bulk_limit:
            self._bulk.append(item)
        else:
            self.stats.shed += 1
            self._maybe_log()

    def _get(self) -> aiomqtt.Message:
        return self._acked.popleft() if self._acked else self._bulk.popleft()

    def qsize(self) -> int:
        return len(self._acked) + len(self._bulk)

    def empty(self) -> bool:
        return not self._acked and not self._bulk

    def full(self) -> bool:
        return False  # a QoS 1 delivery is always taken; QoS 0 is shed inside _put

    def _maybe_log(self) -> None:
        now = self._clock()
        elapsed = now - self._logged_at
        if elapsed < SHED_LOG_INTERVAL_S and self._logged_shed:
            return
        rate = (self.shed - self._logged_shed) / elapsed if elapsed > 0 else 0.0
        log.warning(
            "MQTT intake overloaded: shedding QoS 0 messages (%d shed, %.0f/s), QoS 1 still taken first",
            self.shed,
            rate,
        )
        self._logged_at = now
        self._logged_shed = self.shed


def intake_queue_type(stats: IntakeStats) -> type[IntakeQueue]:
    """An IntakeQueue class for aiomqtt's `queue_type` (it calls it with `maxsize` only)
    that counts into `stats`."""

    class _LinkIntake(IntakeQueue):
        def __init__(self, maxsize: int = 0) -> None:
            super().__init__(maxsize, stats=stats)

    return _LinkIntake
