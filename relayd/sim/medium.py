"""A pure discrete-event model of a shared LoRa channel with Meshtastic managed flooding.

No asyncio, no sockets, no wall clock: the medium owns its event queue and its sim time, and
is deterministic for a given seed. Callers drive it with `step()` (process the next instant's
events) or `advance_to(t)`, and feed it with `send()`; it answers with `MediumEvent` values.

What is modelled (firmware sources in meshtastic/firmware):

* time on air from the Semtech formula (relayd.core.airtime) for the configured preset;
* listen-before-talk: a radio never starts transmitting while it hears a transmission that
  started earlier (RadioLibInterface CAD + startTransmitTimer), it backs off by a random
  number of slots after the channel clears;
* half duplex: a radio that is transmitting hears nothing;
* managed flooding (FloodingRouter): a new broadcast with hop_limit > 0 is rebroadcast with
  hop_limit - 1 after RadioInterface::getTxDelayMsecWeighted(snr) (weaker SNR = shorter
  delay, so the farthest receiver tends to go first); a (from, id) already seen is dropped
  and, if its rebroadcast is still pending, the pending rebroadcast is cancelled
  (FloodingRouter::shouldFilterReceived -> cancelSending);
* per-link loss (independent per frame and receiver) and optional collisions (two frames
  overlapping at a receiver are both lost there; no capture effect).
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum, auto

from relayd.core.airtime import LONG_FAST, MESHTASTIC_HEADER_BYTES, LoRaPreset, time_on_air_s
from relayd.sim.frames import (
    AirLoss,
    AirPacket,
    Delivery,
    EchoHeard,
    LossReason,
    MediumEvent,
    MediumStats,
    NodeStats,
    TimerFired,
    Transmitted,
)
from relayd.sim.topology import LinkQuality, Topology

# What callers import from here; the link graph (relayd.sim.topology) and the frame, events and stats
# the medium trades with its callers (relayd.sim.frames) have modules of their own.
__all__ = [
    "CAD_SYMBOLS",
    "CW_MAX",
    "CW_MIN",
    "MAX_TX_QUEUE",
    "SEEN_CAPACITY",
    "SNR_MAX_DB",
    "SNR_MIN_DB",
    "AirPacket",
    "Delivery",
    "EchoHeard",
    "FloodingMode",
    "LinkQuality",
    "Medium",
    "MediumEvent",
    "MediumStats",
    "NodeStats",
    "SendResult",
    "TimerFired",
    "Topology",
    "Transmitted",
    "slot_time_s",
]

# RadioInterface.h: contention window bounds (exponents of two, in slots).
CW_MIN = 3
CW_MAX = 8
# RadioInterface::getTxDelayMsecWeighted maps SNR from this range onto CW_MIN..CW_MAX.
SNR_MIN_DB = -20
SNR_MAX_DB = 15
# RadioLibInterface: a radio's transmit queue holds at most this many packets
# (MAX_TX_QUEUE); QueueStatus.maxlen reports it to the client.
MAX_TX_QUEUE = 16
# PacketHistory remembers recently seen (from, id) pairs, the oldest-heard record making way
# for a new one: PACKETHISTORY_MAX = max(2 x MAX_NUM_NODES, 100) records (mesh-pb-constants.h),
# 200 on the smallest handheld (ESP32-S3, 4 MB flash). A resend under the same id after more
# traffic than that shows twice here, as it would on that handheld.
SEEN_CAPACITY = 200
# How many packets a node's air-loss record keeps (the simulator's bookkeeping, not firmware).
AIR_LOST_CAPACITY = 4096


# RadioInterface::computeSlotTimeMsec (2.8): the SX126x CAD lasts NUM_SYM_CAD + 0.5 symbols
# (at least 2.25), RadioLib's default NUM_SYM_CAD being 2.
CAD_SYMBOLS = max(2.25, 2 + 0.5)


def slot_time_s(preset: LoRaPreset) -> float:
    """RadioInterface::computeSlotTimeMsec: CAD duration + 0.2 + 0.4 + 7 ms (propagation,
    turnaround, MAC processing): 28 ms on LONG_FAST, as meshtasticd 2.8.0 logs at start."""
    symbol_ms = float(2**preset.spreading_factor) / (preset.bandwidth_hz / 1000.0)
    return (CAD_SYMBOLS * symbol_ms + 0.2 + 0.4 + 7.0) / 1000.0


def _arduino_map(x: float, in_lo: int, in_hi: int, out_lo: int, out_hi: int) -> int:
    # Arduino's map() truncates towards zero; the firmware passes a float SNR into it.
    return int((x - in_lo) * (out_hi - out_lo) / (in_hi - in_lo) + out_lo)


class FloodingMode(Enum):
    MANAGED = auto()  # Meshtastic FloodingRouter: duplicate suppression + cancel on overhear
    NAIVE = auto()  # rebroadcast every copy heard while hop_limit > 0 (benchmark baseline)
    NONE = auto()  # no rebroadcast at all: single-hop broadcast (benchmark baseline)
    # The radios route for themselves (real firmware, relayd.sim.fwbackend): the medium only
    # carries frames -- no rebroadcasts, no duplicate filtering, no contention delay before a
    # frame (the firmware already waited); every frame heard is delivered, the sender's own
    # rebroadcast copies too (the firmware takes them as implicit ACKs).
    EXTERNAL = auto()


class SendResult(Enum):
    QUEUED = auto()
    QUEUE_FULL = auto()
    RADIO_OFF = auto()


# --- internals ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _PendingTx:
    tx_id: int
    node: str
    packet: AirPacket
    rebroadcast: bool
    cancelled: bool = False


@dataclass(slots=True)
class _Transmission:
    tx_id: int
    node: str
    packet: AirPacket
    start_s: float
    end_s: float
    rebroadcast: bool
    # receiver -> (still receivable, link quality)
    receivers: dict[str, bool] = field(default_factory=dict)


@dataclass(slots=True)
class _NodeState:
    name: str
    num: int
    enabled: bool = True
    rebroadcasts_enabled: bool = True
    # ROUTER_LATE (firmware FloodingRouter::perhapsCancelDupe): never cancel a pending
    # rebroadcast on overhearing a copy; rebroadcast late instead.
    router_late: bool = False
    # Packets whose every copy this node loses (Medium.fade_for): a fault a test injects.
    faded: set[tuple[int, int]] = field(default_factory=set)
    current_tx: _Transmission | None = None
    pending: dict[int, _PendingTx] = field(default_factory=dict)
    pending_by_key: dict[tuple[int, int], int] = field(default_factory=dict)
    seen: OrderedDict[tuple[int, int], None] = field(default_factory=OrderedDict)
    incoming: dict[int, _Transmission] = field(default_factory=dict)
    own_unechoed: set[int] = field(default_factory=set)
    frames_sent: int = 0
    airtime_s: float = 0.0
    busy_s: float = 0.0
    deliveries: int = 0
    rebroadcasts: int = 0
    cancelled: int = 0
    duplicates: int = 0
    # Packets whose copy this node lost on the air (receiver transmitting, overlap, link loss),
    # so a test can tell the air's misses from a relay's; first reason kept.
    air_lost: OrderedDict[tuple[int, int], AirLoss] = field(default_factory=OrderedDict)

    def remember(self, key: tuple[int, int]) -> None:
        self.seen[key] = None
        if len(self.seen) > SEEN_CAPACITY:
            self.seen.popitem(last=False)

    def lose(self, packet: AirPacket, reason: LossReason) -> None:
        if packet.key in self.seen:
            return  # a copy of something it has: nothing lost
        if packet.key not in self.air_lost:
            self.air_lost[packet.key] = AirLoss(packet, reason)
            if len(self.air_lost) > AIR_LOST_CAPACITY:
                self.air_lost.popitem(last=False)


class _Kind(Enum):
    ATTEMPT = 0
    TX_END = 1
    TIMER = 2


class Medium:
    """The shared channel. Names are node names; numbers are Meshtastic node nums."""

    def __init__(
        self,
        nodes: dict[str, int],
        topology: Topology,
        *,
        preset: LoRaPreset = LONG_FAST,
        seed: int = 1,
        collisions: bool = False,
        flooding: FloodingMode = FloodingMode.MANAGED,
        start_s: float = 0.0,
        relay_origin_copies: bool = False,
    ) -> None:
        self.preset = preset
        self.topology = topology
        self.collisions = collisions
        self.flooding = flooding
        # The firmware relays a copy straight from its originator once more even when it has
        # the packet (below). Off unless asked for: with it on, every want_ack retransmission
        # is relayed again by every neighbour, and the suite's strict delivery tests, written
        # against the quieter air, missed alerts (2 per full run): they need revisiting first.
        self.relay_origin_copies = relay_origin_copies
        self._rng = random.Random(seed)
        self._now = start_s
        self._start = start_s
        self._queue: list[tuple[float, int, _Kind, int]] = []
        self._seq = 0
        self._next_tx_id = 1
        self._nodes = {name: _NodeState(name, num) for name, num in nodes.items()}
        self._by_num = {num: name for name, num in nodes.items()}
        self._live: dict[int, _Transmission] = {}
        self._slot_s = slot_time_s(preset)
        self._frames_sent = 0
        self._receptions = 0
        self._collisions = 0
        self._lost = 0
        self._half_duplex = 0
        self._queue_full = 0
        self._timer_tokens = 0
        self._owner: dict[int, str] = {}  # pending tx_id -> node

    # -- clock -------------------------------------------------------------------------------------

    @property
    def now_s(self) -> float:
        return self._now

    def next_event_time(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def advance_to(self, t_s: float) -> list[MediumEvent]:
        """Process every event up to and including `t_s`, then set the clock to `t_s`."""
        out: list[MediumEvent] = []
        while self._queue and self._queue[0][0] <= t_s:
            out.extend(self.step())
        self._now = max(self._now, t_s)
        return out

    def step(self) -> list[MediumEvent]:
        """Process all events of the next instant; returns what happened."""
        if not self._queue:
            return []
        t = self._queue[0][0]
        self._now = max(self._now, t)
        out: list[MediumEvent] = []
        while self._queue and self._queue[0][0] == t:
            _, _, kind, ref = heapq.heappop(self._queue)
            if kind is _Kind.ATTEMPT:
                self._attempt(ref, out)
            elif kind is _Kind.TX_END:
                self._tx_end(ref, out)
            else:
                out.append(TimerFired(t, ref))
        return out

    def schedule_timer(self, at_s: float) -> int:
        """A `TimerFired` with the returned token will come out of `step()` at `at_s`."""
        self._timer_tokens += 1
        self._push(max(at_s, self._now), _Kind.TIMER, self._timer_tokens)
        return self._timer_tokens

    # -- node control ------------------------------------------------------------------------------

    def node_names(self) -> tuple[str, ...]:
        return tuple(self._nodes)

    def name_of(self, num: int) -> str | None:
        return self._by_num.get(num)

    def is_enabled(self, node: str) -> bool:
        return self._nodes[node].enabled

    def set_enabled(self, node: str, enabled: bool) -> None:
        """Power a radio off (it neither hears nor transmits; its tx queue is lost) or on."""
        st = self._nodes[node]
        st.enabled = enabled
        if not enabled:
            for p in st.pending.values():
                p.cancelled = True
            st.pending.clear()
            st.pending_by_key.clear()
            st.seen.clear()  # PacketHistory lives in RAM
            st.own_unechoed.clear()
            for tx in list(st.incoming.values()):
                tx.receivers[node] = False
            st.incoming.clear()

    def tx_queue_free(self, node: str) -> int:
        return MAX_TX_QUEUE - len(self._nodes[node].pending)

    def send(self, node: str, packet: AirPacket) -> SendResult:
        """Queue a packet originated by `node` (from its client, or its own firmware).

        Firmware: a locally originated packet waits getTxDelayMsec() -- a random number of
        slots in the contention window -- before its first channel check.
        """
        st = self._nodes[node]
        if not st.enabled:
            return SendResult.RADIO_OFF
        if len(st.pending) >= MAX_TX_QUEUE:
            self._queue_full += 1
            return SendResult.QUEUE_FULL
        if self.flooding is FloodingMode.EXTERNAL:
            self._enqueue(st, packet, delay_s=0.0, rebroadcast=False)
            return SendResult.QUEUED
        st.remember(packet.key)
        if packet.from_num == st.num:
            st.own_unechoed.add(packet.packet_id)
        self._enqueue(st, packet, delay_s=self._contention_delay_s(), rebroadcast=False)
        return SendResult.QUEUED

    # -- internals ---------------------------------------------------------------------------------

    def _push(self, t: float, kind: _Kind, ref: int) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (t, self._seq, kind, ref))

    def _contention_delay_s(self) -> float:
        # getTxDelayMsec: random(0, 2^CWsize) slots; CWsize grows with channel utilisation.
        # We use the idle-channel window (CW_MIN) -- see docs/simulator.md.
        return self._rng.randrange(2**CW_MIN) * self._slot_s

    def rebroadcast_delay_s(self, snr_db: float) -> float:
        """getTxDelayMsecWeighted for the CLIENT role (what relays and handhelds run)."""
        snr = min(max(snr_db, SNR_MIN_DB), SNR_MAX_DB)
        cw = _arduino_map(snr, SNR_MIN_DB, SNR_MAX_DB, CW_MIN, CW_MAX)
        # "offset the maximum delay for routers: (2 * CWmax * slotTimeMsec)"
        return (2 * CW_MAX + self._rng.randrange(2**cw)) * self._slot_s

    def _enqueue(self, st: _NodeState, packet: AirPacket, *, delay_s: float, rebroadcast: bool) -> None:
        tx_id = self._next_tx_id
        self._next_tx_id += 1
        st.pending[tx_id] = _PendingTx(tx_id, st.name, packet, rebroadcast)
        if rebroadcast:
            st.pending_by_key[packet.key] = tx_id
        self._push(self._now + delay_s, _Kind.ATTEMPT, tx_id)
        self._owner[tx_id] = st.name

    def _channel_busy_until(self, st: _NodeState) -> float | None:
        """End of the latest transmission `st` can hear that started before now, if any."""
        busy: float | None = None
        for tx in st.incoming.values():
            if tx.start_s < self._now and (busy is None or tx.end_s > busy):
                busy = tx.end_s
        return busy

    def _attempt(self, tx_id: int, out: list[MediumEvent]) -> None:
        owner = self._owner.pop(tx_id, None)
        if owner is None:
            return
        st = self._nodes[owner]
        pend = st.pending.get(tx_id)
        if pend is None or pend.cancelled or not st.enabled:
            return
        busy_until = self._channel_busy_until(st)
        if st.current_tx is not None:
            busy_until = max(busy_until or 0.0, st.current_tx.end_s)
        if busy_until is not None:
            # Listen before talk: channel busy -> try again a random backoff after it clears.
            self._owner[tx_id] = owner
            self._push(busy_until + self._contention_delay_s() + 1e-9, _Kind.ATTEMPT, tx_id)
            return
        del st.pending[tx_id]
        if pend.rebroadcast:
            st.pending_by_key.pop(pend.packet.key, None)
        self._start_tx(st, pend, out)

    def _start_tx(self, st: _NodeState, pend: _PendingTx, out: list[MediumEvent]) -> None:
        packet = pend.packet
        toa = time_on_air_s(MESHTASTIC_HEADER_BYTES + len(packet.data), self.preset)
        tx = _Transmission(pend.tx_id, st.name, packet, self._now, self._now + toa, pend.rebroadcast)
        st.current_tx = tx
        st.frames_sent += 1
        st.airtime_s += toa
        st.busy_s += toa
        if pend.rebroadcast:
            st.rebroadcasts += 1
        self._frames_sent += 1
        # Half duplex: whatever this node was receiving is lost.
        for other in st.incoming.values():
            if other.receivers.get(st.name):
                other.receivers[st.name] = False
                self._half_duplex += 1
                st.lose(other.packet, LossReason.HALF_DUPLEX)
        st.incoming.clear()
        for rx_name, _q in self.topology.hearers(st.name):
            rx = self._nodes.get(rx_name)
            if rx is None or not rx.enabled:
                continue
            rx.busy_s += toa
            ok = rx.current_tx is None
            if not ok:
                self._half_duplex += 1
                rx.lose(packet, LossReason.HALF_DUPLEX)
            if self.collisions and rx.incoming:
                for other in rx.incoming.values():
                    if other.receivers.get(rx_name):
                        self._collisions += 1
                        rx.lose(other.packet, LossReason.COLLISION)
                    other.receivers[rx_name] = False
                if ok:
                    self._collisions += 1
                    rx.lose(packet, LossReason.COLLISION)
                ok = False
            tx.receivers[rx_name] = ok
            rx.incoming[tx.tx_id] = tx
        self._live[tx.tx_id] = tx
        self._push(tx.end_s, _Kind.TX_END, tx.tx_id)
        out.append(Transmitted(self._now, st.name, packet, toa, pend.rebroadcast))

    def _tx_end(self, tx_id: int, out: list[MediumEvent]) -> None:
        tx = self._live.pop(tx_id)
        sender = self._nodes[tx.node]
        if sender.current_tx is tx:
            sender.current_tx = None
        for rx_name, q in self.topology.hearers(tx.node):
            rx = self._nodes.get(rx_name)
            if rx is None:
                continue
            rx.incoming.pop(tx_id, None)
            if not tx.receivers.get(rx_name) or not rx.enabled:
                continue
            if tx.packet.key in rx.faded:
                rx.lose(tx.packet, LossReason.FADE)
                continue
            if q.loss > 0.0 and self._rng.random() < q.loss:
                self._lost += 1
                rx.lose(tx.packet, LossReason.LINK_LOSS)
                continue
            self._receptions += 1
            rx.air_lost.pop(tx.packet.key, None)  # a copy got through after all
            self._receive(rx, tx, q, out)

    def _receive(self, rx: _NodeState, tx: _Transmission, q: LinkQuality, out: list[MediumEvent]) -> None:
        packet = tx.packet
        key = packet.key
        if self.flooding is FloodingMode.EXTERNAL:
            rx.deliveries += 1
            out.append(Delivery(self._now, rx.name, packet, q.snr_db, q.rssi_dbm, tx.node))
            return
        if packet.from_num == rx.num:
            # We hear our own packet being rebroadcast: ReliableRouter treats it as an implicit ACK.
            if packet.packet_id in rx.own_unechoed:
                rx.own_unechoed.discard(packet.packet_id)
                out.append(EchoHeard(self._now, rx.name, packet.packet_id))
            rx.duplicates += 1
            self._cancel_pending(rx, key)
            return
        managed = self.flooding is FloodingMode.MANAGED
        if key in rx.seen:
            rx.duplicates += 1
            rx.seen.move_to_end(key)  # PacketHistory::insert refreshes the record's time
            from_origin = packet.hop_start > 0 and packet.hop_start == packet.hop_limit
            if managed and self.relay_origin_copies and from_origin:
                # From its originator again (a retransmission or a late repeat: hops away 0):
                # NextHopRouter::shouldFilterReceived relays it again unless a copy still waits
                # in the transmit queue, and shows it to nobody a second time.
                if key not in rx.pending_by_key:
                    self._rebroadcast(rx, packet, q)
                return
            if managed and not rx.router_late:
                self._cancel_pending(rx, key)
            if self.flooding is not FloodingMode.NAIVE:
                return
        else:
            rx.remember(key)
            if packet.is_broadcast or packet.to_num == rx.num:
                rx.deliveries += 1
                out.append(Delivery(self._now, rx.name, packet, q.snr_db, q.rssi_dbm, tx.node))
        if self.flooding is not FloodingMode.NONE and (
            self.flooding is FloodingMode.NAIVE or key not in rx.pending_by_key
        ):
            self._rebroadcast(rx, packet, q)

    def _rebroadcast(self, rx: _NodeState, packet: AirPacket, q: LinkQuality) -> None:
        """NextHopRouter::perhapsRebroadcast: queue a copy with one hop less."""
        if rx.rebroadcasts_enabled and packet.to_num != rx.num and packet.hop_limit > 0:
            again = AirPacket(
                from_num=packet.from_num,
                to_num=packet.to_num,
                packet_id=packet.packet_id,
                channel_index=packet.channel_index,
                hop_limit=packet.hop_limit - 1,
                hop_start=packet.hop_start,
                want_ack=packet.want_ack,
                data=packet.data,
            )
            if len(rx.pending) < MAX_TX_QUEUE:
                delay = self.rebroadcast_delay_s(q.snr_db)
                if rx.router_late:
                    # After every CLIENT's window: (2 * CWmax + 2^CWmax) slots later.
                    delay += (2 * CW_MAX + 2**CW_MAX) * self._slot_s
                self._enqueue(rx, again, delay_s=delay, rebroadcast=True)
            else:
                self._queue_full += 1

    def air_losses(self, node: str) -> tuple[AirLoss, ...]:
        """The packets `node` lost a copy of on the air and has not received from any copy since."""
        return tuple(self._nodes[node].air_lost.values())

    def carrying(self, key: tuple[int, int]) -> bool:
        """Whether a copy of packet `key` is on the air or waits in a transmit queue: its flood
        is not over."""
        return any(tx.packet.key == key for tx in self._live.values()) or any(
            key in st.pending_by_key for st in self._nodes.values()
        )

    def fade_for(self, node: str, key: tuple[int, int], faded: bool = True) -> None:
        """`node` loses every copy of packet `key` (from, id) on the air, or (`faded` false)
        hears it again: the handheld that was unlucky with every copy of a flood (transmitting
        or in a fade each time one came), which a test needs to make happen on purpose."""
        if faded:
            self._nodes[node].faded.add(key)
        else:
            self._nodes[node].faded.discard(key)

    def set_router_late(self, node: str, on: bool = True) -> None:
        self._nodes[node].router_late = on

    def _cancel_pending(self, st: _NodeState, key: tuple[int, int]) -> None:
        tx_id = st.pending_by_key.pop(key, None)
        if tx_id is None:
            return
        pend = st.pending.pop(tx_id, None)
        if pend is not None:
            pend.cancelled = True
            st.cancelled += 1

    # -- stats -------------------------------------------------------------------------------------

    def stats(self) -> MediumStats:
        nodes = {
            n: NodeStats(
                frames_sent=s.frames_sent,
                airtime_s=s.airtime_s,
                busy_s=s.busy_s,
                deliveries=s.deliveries,
                rebroadcasts=s.rebroadcasts,
                cancelled_rebroadcasts=s.cancelled,
                duplicates_heard=s.duplicates,
            )
            for n, s in self._nodes.items()
        }
        return MediumStats(
            now_s=self._now - self._start,
            frames_sent=self._frames_sent,
            rebroadcasts=sum(s.rebroadcasts for s in self._nodes.values()),
            cancelled_rebroadcasts=sum(s.cancelled for s in self._nodes.values()),
            receptions=self._receptions,
            deliveries=sum(s.deliveries for s in self._nodes.values()),
            collisions=self._collisions,
            lost=self._lost,
            half_duplex_misses=self._half_duplex,
            queue_full_drops=self._queue_full,
            total_airtime_s=sum(s.airtime_s for s in self._nodes.values()),
            nodes=nodes,
        )
