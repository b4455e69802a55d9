"""An alert's way to the air, owned in one place.

A broadcast alert a relay accepted from MQTT is first *held* (its suppression turn, see
relayd/core/suppression.py), then *queued* on every radio's airtime scheduler, then *in
flight* on a radio (the radio took the frame, under a packet id, and has not yet said it was
on air), and finally leaves with exactly one terminal outcome: transmitted, unconfirmed,
suppressed, expired, cancelled or refused by the radio. `Outbound` holds every piece of that
state and nothing else does; the relay feeds it events (due, heard on RF, radio accepted,
refused, lost, expired, cancelled, restored after a restart) and applies the effects it
returns (write to the radio, persist, publish an event, count).

The firmware-facing rules live here:

- A frame the radio took but never confirmed is *in doubt*: it goes again under the same
  packet id, so that if it did go out the mesh's (from, id) dedup drops the repeat. It is
  never resent under a new id (that would show it twice on every handheld).
- A radio that ignores a reused id already has that frame: it stays with the radio, and if
  the radio never confirms it the alert ends `unconfirmed`.
- Refusals that clear (rate limit, duty cycle, full queue) pause the whole radio and are
  retried a bounded number of times; refusals that cannot clear end the frame at once.

The write-ahead packet id is persisted per alert, not per radio: with several radios, after a
restart every radio reuses the last id written, so a radio that took the frame under an
earlier id (before another radio's refusal) may be sent it under another id.

Direct messages (report acks, catch-up DMs) and forgery notices share the schedulers and the
radios' limits, but carry no terminal outcome of their own. Pure: the caller passes the time.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from relayd.core.packetid import first_packet_id
from relayd.core.scheduler import Action, AirtimeScheduler, QueueItem, Ready, Wait
from relayd.core.suppression import Suppressor

# Refusals that may clear are retried this many times per frame; a frame that still cannot
# go is given up and its alert reported not sent.
MAX_SEND_ATTEMPTS = 6
HEARD_ON_AIR_MAX = 1024


class Outcome(enum.Enum):
    """How an alert left the way to the air (the history row's outcome)."""

    TRANSMITTED = "transmitted"  # the firmware confirmed it on air
    UNCONFIRMED = "unconfirmed"  # a radio has it, and never said it was on air
    SUPPRESSED = "suppressed"  # another relay put it on air first
    EXPIRED = "expired"
    CANCELLED = "cancelled"  # cancelled, or no longer verifies (reason says which)
    REFUSED = "refused_by_radio"


@dataclass(frozen=True, slots=True)
class QueuedAlert:
    """The one value for an alert on its way to the air (also its persisted queue row)."""

    alert_id: bytes
    onair: str
    severity_rank: int
    issued_at_s: int
    expires_at_s: int
    release_at_s: float
    packet_id: int | None = None  # write-ahead id: it may have gone out before a restart


@dataclass(frozen=True, slots=True)
class InFlight:
    """A frame a radio has taken but not yet confirmed on air."""

    radio: str
    item: QueueItem
    packet_id: int
    deadline_s: float
    # The radio ignored our resend of this id: it had taken it on an earlier connection, so
    # its answer may have gone to that connection and never come.
    ignored: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """A radio's "no" to a frame, by meaning (relayd.meshapi.routing.Answer)."""

    name: str
    retry: bool  # the limit behind it clears (rate, duty cycle, full queue)
    retry_after_s: float = 0.0


# -- effects ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write this frame to the radio under this packet id."""

    radio: str
    item: QueueItem
    packet_id: int
    write_ahead: bool  # persist the packet id before the write (a fresh broadcast id)


@dataclass(frozen=True, slots=True)
class Taken:
    """A radio has the broadcast frame: peers may stand down (event "taken")."""

    radio: str
    alert_id: bytes
    packet_id: int


@dataclass(frozen=True, slots=True)
class OnAir:
    """A radio confirmed a broadcast on air (one per radio that sent it)."""

    radio: str
    alert_id: bytes
    how: str  # the firmware's answer (implicit ACK, MAX_RETRANSMIT)
    packet_id: int  # the id it went under (a late repeat reuses it, relayd/core/repeat.py)
    item: QueueItem


@dataclass(frozen=True, slots=True)
class Retrying:
    radio: str
    alert_id: bytes
    why: str
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class GaveUp:
    """A radio will never send this frame (or it was refused too often)."""

    radio: str
    item: QueueItem
    why: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Terminal:
    """The alert left the way to the air: exactly one per queued alert."""

    alert_id: bytes
    outcome: Outcome
    reason: str | None = None  # for CANCELLED: why, if not cancelled by its author

    @property
    def stored(self) -> str:
        return self.reason or self.outcome.value


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """Nothing more of this alert will be handed to a radio (cancelled, suppressed, expired),
    but a radio still has a frame of it: the persisted queue row goes now, so a restart
    does not send it again; the terminal outcome follows the radio's word."""

    alert_id: bytes
    outcome: str


Effect = Taken | OnAir | Retrying | GaveUp | Withdrawn | Terminal


@dataclass
class _Way:
    """Where one alert is (private: only Outbound changes it)."""

    alert: QueuedAlert
    held: bool = False
    queued_on: set[str] = field(default_factory=set)  # radios whose scheduler has it
    flying: dict[str, int] = field(default_factory=dict)  # radio -> packet id it took
    # In-doubt packet ids to reuse, by radio.
    resend: dict[str, int] = field(default_factory=dict)
    stop: Terminal | None = None  # decided while a radio still holds a frame
    aired: Outcome | None = None
    refused: bool = False

    @property
    def busy(self) -> bool:
        return self.held or bool(self.queued_on) or bool(self.flying)


@dataclass
class Outbound:
    suppressor: Suppressor
    schedulers: dict[str, AirtimeScheduler]
    ack_wait_s: float  # a broadcast's wait for the firmware's word before it is in doubt
    refusal_grace_s: float  # a DM counts as taken once this passes without a refusal
    airtime_s: Callable[[str], float]  # a frame's time on air
    channel: int  # the alerts channel index
    _ways: dict[bytes, _Way] = field(default_factory=dict)
    _flights: dict[tuple[str, int], InFlight] = field(default_factory=dict)  # by (radio, packet id)
    _attempts: dict[bytes, int] = field(default_factory=dict)
    paused_until: dict[str, float] = field(default_factory=dict)
    # Alerts another relay was heard transmitting: an in-doubt resend of ours is moot.
    _heard_on_air: OrderedDict[bytes, None] = field(default_factory=OrderedDict)

    # -- views ------------------------------------------------------------------------

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._ways

    def queued(self) -> list[QueuedAlert]:
        """Every alert still to be sent (held, queued or in flight, and not withdrawn)."""
        return [w.alert for w in self._ways.values() if w.stop is None]

    @property
    def in_flight(self) -> dict[tuple[str, int], InFlight]:
        return dict(self._flights)

    def depth(self) -> int:
        return sum(len(s) for s in self.schedulers.values()) + len(self.suppressor)

    def backlog(self) -> int:
        """Frames ahead of a new alert: held here plus the longest radio queue."""
        return len(self.suppressor) + max((len(s) for s in self.schedulers.values()), default=0)

    def next_deadline_s(self) -> float | None:
        """When a hold is released or an in-flight frame's wait ends."""
        times = [f.deadline_s for f in self._flights.values()]
        release = self.suppressor.next_release_s()
        if release is not None:
            times.append(release)
        return min(times, default=None)

    # -- alerts in ----------------------------------------------------------------------

    def hold(self, alert: QueuedAlert, now_s: float, turn_at_s: float | None = None) -> list[Effect]:
        """A broadcast alert accepted for the air, held until `alert.release_at_s`.
        `turn_at_s`: when its suppression turn alone would end (a later release, for
        backlog, keeps the relays' order when they all wait for an RF copy)."""
        if alert.alert_id in self._ways:
            return []
        way = _Way(alert, held=True)
        self._ways[alert.alert_id] = way
        if turn_at_s is not None:
            self.suppressor.restore(alert.alert_id, turn_at_s, now_s)
            self.suppressor.restore(alert.alert_id, alert.release_at_s)
        else:
            self.suppressor.restore(alert.alert_id, alert.release_at_s, now_s)
        if alert.alert_id in self._heard_on_air:
            # Already heard on air (a copy older than dedup's memory): never ours to send.
            self._unqueue(way)
            return self._stop(way, Terminal(alert.alert_id, Outcome.SUPPRESSED))
        return []

    def restore(self, alert: QueuedAlert, now_s: float, expiry_now_s: float | None = None) -> list[Effect]:
        """An alert persisted before a restart, held until `alert.release_at_s` like any
        other (a neighbour that covered it meanwhile makes it moot). One with a write-ahead
        packet id may have gone out just before: it keeps that id (the mesh drops the resend
        as a duplicate if it did); any other goes under its first, derived id. `expiry_now_s`:
        the best estimate of the time, for expiry, if the clock is not trusted (clockrule)."""
        if alert.alert_id in self._ways:
            return []
        if (now_s if expiry_now_s is None else expiry_now_s) >= alert.expires_at_s:
            return [Terminal(alert.alert_id, Outcome.EXPIRED)]
        effects = self.hold(alert, now_s)
        way = self._ways.get(alert.alert_id)
        if alert.packet_id is not None and way is not None:
            # The persisted id is the alert's, not a radio's (one write-ahead row per
            # alert): every radio reuses it; a radio that never had it sends a new frame.
            way.resend = dict.fromkeys(self.schedulers, alert.packet_id)
        return effects

    def due(self, now_s: float) -> None:
        """Holds whose turn came go to every radio's queue."""
        for alert_id in self.suppressor.due(now_s):
            way = self._ways.get(alert_id)
            if way is not None and way.held:
                way.held = False
                self._enqueue(way)

    def _item(self, alert: QueuedAlert, airtime_s: float, channel: int) -> QueueItem:
        return QueueItem(
            alert.alert_id,
            alert.onair,
            alert.severity_rank,
            alert.issued_at_s,
            alert.expires_at_s,
            airtime_s,
            channel,
        )

    def _enqueue(self, way: _Way) -> None:
        item = self._item(way.alert, self.airtime_s(way.alert.onair), self.channel)
        for name, scheduler in self.schedulers.items():
            scheduler.push(item)
            way.queued_on.add(name)

    def push_direct(self, item: QueueItem, radio: str | None = None) -> bool:
        """An ack, catch-up DM or notice (no terminal outcome): on one radio, or all."""
        targets = [radio] if radio is not None else list(self.schedulers)
        pushed = False
        for name in targets:
            scheduler = self.schedulers.get(name)
            if scheduler is not None:
                scheduler.push(item)
                pushed = True
        return pushed

    # -- evidence and decisions -----------------------------------------------------------

    def heard(self, alert_id: bytes) -> list[Effect]:
        """Another relay put this alert on air (its RF copy, or an honoured peer event):
        stand down if it was still ours to send."""
        self._heard_on_air[alert_id] = None
        self._heard_on_air.move_to_end(alert_id)
        if len(self._heard_on_air) > HEARD_ON_AIR_MAX:
            self._heard_on_air.popitem(last=False)
        way = self._ways.get(alert_id)
        if way is None:
            return []
        held = self.suppressor.heard_on_rf(alert_id)
        if held:
            way.held = False
        queued = False
        for name in list(way.queued_on):
            queued = self.schedulers[name].remove(alert_id) is not None or queued
            way.queued_on.discard(name)
        if not (held or queued):
            return []  # only in flight: our radio has it; an in-doubt resend will be moot
        return self._stop(way, Terminal(alert_id, Outcome.SUPPRESSED))

    def follow(self, relay: str, alert_id: bytes, now_s: float, peers: Iterable[str], step_s: float) -> bool:
        """`relay` took or sent `alert_id`: the holds that wait behind it follow its pacing
        (Suppressor.follow), each up to its own turn's length before it expires. True if
        any hold moved."""
        limits: dict[bytes, float] = {}
        for other, way in self._ways.items():
            if other == alert_id or not way.held or way.stop is not None:
                continue
            turn_s = max(self.suppressor.turn_s(other), self.suppressor.slot_s)
            limits[other] = way.alert.expires_at_s - turn_s
        return bool(self.suppressor.follow(relay, now_s, peers, step_s, limits))

    def wait_for_copy(self, alert_id: bytes, copy_s: float) -> bool:
        return self.suppressor.wait_for_copy(alert_id, copy_s)

    def cancel(self, alert_id: bytes, reason: str | None = None) -> list[Effect]:
        """Cancelled by its author (or no longer verifies: `reason`). A frame a radio has
        already taken cannot be called back; it ends as that radio says."""
        way = self._ways.get(alert_id)
        if way is None:
            return []
        self._unqueue(way)
        return self._stop(way, Terminal(alert_id, Outcome.CANCELLED, reason))

    def expire(self, now_s: float) -> list[Effect]:
        """`now_s` is the best estimate of the time (relayd/core/clockrule.py)."""
        effects: list[Effect] = []
        for scheduler in self.schedulers.values():
            scheduler.drop_expired(now_s)
        for way in list(self._ways.values()):
            if now_s < way.alert.expires_at_s or way.stop is not None:
                continue
            self._unqueue(way)
            effects += self._stop(way, Terminal(way.alert.alert_id, Outcome.EXPIRED))
        return effects

    def _unqueue(self, way: _Way) -> None:
        alert_id = way.alert.alert_id
        if way.held:
            self.suppressor.forget(alert_id)
            way.held = False
        for name in way.queued_on:
            self.schedulers[name].remove(alert_id)
        way.queued_on.clear()

    def _stop(self, way: _Way, terminal: Terminal) -> list[Effect]:
        if way.stop is not None:
            return self._settle(way)
        way.stop = terminal
        settled = self._settle(way)
        if settled:
            return settled
        return [Withdrawn(way.alert.alert_id, terminal.stored)]

    def _settle(self, way: _Way) -> list[Effect]:
        """Once no hold, queue or radio has the alert, it leaves with its one outcome."""
        if way.busy:
            return []
        alert_id = way.alert.alert_id
        del self._ways[alert_id]
        self._attempts.pop(alert_id, None)
        if way.aired is not None:
            return [Terminal(alert_id, way.aired)]
        if way.stop is not None:
            return [way.stop]
        return [Terminal(alert_id, Outcome.REFUSED)]

    # -- the radio ----------------------------------------------------------------------

    def next_action(self, radio: str, now_s: float) -> Action:
        action = self.schedulers[radio].next_action(now_s)
        paused_until = self.paused_until.get(radio, 0.0)
        if now_s < paused_until and isinstance(action, Ready):
            # The radio refused for a limit of its own (rate, duty cycle, full queue).
            return Wait(paused_until - now_s, "radio")
        return action

    def send(self, radio: str, item: QueueItem, fresh_id: Callable[[], int]) -> Send:
        """The frame to write now; it leaves the radio's queue. From here until the write's
        result (`taken`, `not_taken`, `refused`) the radio may have it: nothing can call it
        back, so a cancel or an RF copy meanwhile waits for the radio's word. An in-doubt
        broadcast reuses its packet id; a fresh one has its id persisted before the write."""
        self.schedulers[radio].pop(item.alert_id)
        way = self._ways.get(item.alert_id) if item.to_node is None else None
        if way is None:
            # A direct frame; a late repeat keeps the id its alert went under.
            packet_id = item.packet_id if item.packet_id is not None else fresh_id()
            return Send(radio, item, packet_id, write_ahead=False)
        way.queued_on.discard(radio)
        resend = way.resend.pop(radio, None)
        if resend is not None:
            send = Send(radio, item, resend, write_ahead=False)
        elif item.alert_id not in self._attempts:
            # A first hand-over: its id is derived from the alert (relayd/core/packetid.py),
            # so a restart that does not know whether it went out sends the same id again.
            send = Send(radio, item, first_packet_id(item.alert_id), write_ahead=False)
        else:
            # After a refusal the firmware has seen that id: a fresh one, written ahead.
            send = Send(radio, item, fresh_id(), write_ahead=True)
        way.flying[radio] = send.packet_id
        return send

    def not_taken(self, send: Send) -> list[Effect]:
        """The write failed (link down, radio silent). It may have reached the radio, so a
        broadcast keeps its packet id: if it did go out, the mesh drops the resend."""
        item = send.item
        way = self._ways.get(item.alert_id) if item.to_node is None else None
        if way is None:
            if item.to_node is not None:
                self.schedulers[send.radio].push(item)
            return []
        way.flying.pop(send.radio, None)
        if way.stop is not None:
            return self._settle(way)
        way.resend[send.radio] = send.packet_id
        self.schedulers[send.radio].push(item)
        way.queued_on.add(send.radio)
        return []

    def taken(self, send: Send, now_s: float, *, ignored: bool = False, flood_s: float = 0.0) -> list[Effect]:
        """The radio has the frame (or, `ignored`, already had that id from before). Its next
        frame waits `flood_s` for this one's flood (relayd/core/earshot.py)."""
        item = send.item
        if not ignored:
            self.schedulers[send.radio].record_transmission(item.airtime_s, now_s, flood_s)
        broadcast = item.to_node is None
        wait_s = self.ack_wait_s if broadcast else self.refusal_grace_s
        self._flights[send.radio, send.packet_id] = InFlight(
            send.radio, item, send.packet_id, now_s + wait_s, ignored
        )
        way = self._ways.get(item.alert_id) if broadcast else None
        if way is None:
            return []
        way.flying[send.radio] = send.packet_id
        # Peers stand down now rather than after the firmware's confirmation, which may come
        # several frames later on a busy channel; we own the frame until then.
        return [Taken(send.radio, item.alert_id, send.packet_id)]

    def answered(
        self, radio: str, packet_id: int, refusal: Refusal | None, how: str, now_s: float
    ) -> list[Effect]:
        """The radio's verdict on a frame it had taken: on air (`refusal` None) or refused."""
        flight = self._flights.pop((radio, packet_id), None)
        if flight is None:
            return []  # not a frame we handed this radio
        item = flight.item
        if refusal is not None:
            return self.refused(radio, item, refusal, now_s)
        self._attempts.pop(item.alert_id, None)
        way = self._ways.get(item.alert_id) if item.to_node is None else None
        if way is None:
            return []
        way.flying.pop(radio, None)
        way.aired = Outcome.TRANSMITTED
        return [OnAir(radio, item.alert_id, how, packet_id, item), *self._settle(way)]

    def refused(self, radio: str, item: QueueItem, refusal: Refusal, now_s: float) -> list[Effect]:
        """The radio did not send a frame (at the write, or after taking it)."""
        scheduler = self.schedulers[radio]
        broadcast = item.to_node is None
        way = self._ways.get(item.alert_id) if broadcast else None
        if way is not None:
            way.flying.pop(radio, None)
            if way.stop is not None:
                scheduler.remove(item.alert_id)
                way.queued_on.discard(radio)
                return self._settle(way)  # nothing more to send: it ends as decided
        elif broadcast:
            scheduler.remove(item.alert_id)
            return []
        attempts = self._attempts.get(item.alert_id, 0) + 1
        self._attempts[item.alert_id] = attempts
        if refusal.retry and attempts < MAX_SEND_ATTEMPTS and now_s < item.expires_at_s:
            # The limits behind a retry are the radio's, not the frame's: hold the radio back.
            until = max(self.paused_until.get(radio, 0.0), now_s + refusal.retry_after_s)
            self.paused_until[radio] = until
            scheduler.remove(item.alert_id)
            scheduler.push(item)
            if way is not None:
                way.queued_on.add(radio)
            return [Retrying(radio, item.alert_id, refusal.name, refusal.retry_after_s)]
        scheduler.remove(item.alert_id)
        self._attempts.pop(item.alert_id, None)
        effects: list[Effect] = [GaveUp(radio, item, refusal.name, attempts)]
        if way is not None:
            way.queued_on.discard(radio)
            way.refused = True
            effects += self._settle(way)
        return effects

    def sweep(self, now_s: float) -> list[Effect]:
        """Frames whose answer never came. A DM was taken (no refusal arrived). A broadcast
        the radio ignored as a reused id stays with it, unconfirmed; any other broadcast is
        in doubt and goes again under the same packet id."""
        effects: list[Effect] = []
        for key, flight in list(self._flights.items()):
            if now_s < flight.deadline_s:
                continue
            del self._flights[key]
            if flight.item.to_node is not None:
                self._attempts.pop(flight.item.alert_id, None)
                continue
            effects += self._in_doubt(flight, now_s, unconfirmed=flight.ignored)
        return effects

    def radio_lost(self, radio: str, now_s: float) -> list[Effect]:
        """The link dropped: what that radio held but had not confirmed is in doubt (a reboot
        empties its transmit queue); it goes again under the same ids once it is back."""
        effects: list[Effect] = []
        for key, flight in list(self._flights.items()):
            if flight.radio != radio:
                continue
            del self._flights[key]
            if flight.item.to_node is None:
                effects += self._in_doubt(flight, now_s, unconfirmed=False)
            else:
                self.schedulers[radio].push(flight.item)
        return effects

    def _in_doubt(self, flight: InFlight, now_s: float, *, unconfirmed: bool) -> list[Effect]:
        way = self._ways.get(flight.item.alert_id)
        if way is None:
            return []
        way.flying.pop(flight.radio, None)
        alert_id = way.alert.alert_id
        if unconfirmed:
            # The radio has this id (it refuses it again) and its answer went to an earlier
            # connection. A new id could show it twice on every handheld; the same id is
            # ignored. Leave it with the radio, and say only that: handed over, unconfirmed.
            if way.aired is None:
                way.aired = Outcome.UNCONFIRMED
            return self._settle(way)
        if now_s >= way.alert.expires_at_s:
            return self._stop(way, Terminal(alert_id, Outcome.EXPIRED))
        if alert_id in self._heard_on_air:
            return self._stop(way, Terminal(alert_id, Outcome.SUPPRESSED))
        if way.stop is not None:
            return self._settle(way)
        way.resend[flight.radio] = flight.packet_id
        self.schedulers[flight.radio].push(flight.item)
        way.queued_on.add(flight.radio)
        return []
