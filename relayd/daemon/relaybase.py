"""What every part of the relay shares: its state (declared here, built by
relayd/daemon/relay.py), its counters, and the helpers each part uses (storage calls that
survive a failing disk, drops, events, verification, sealing, neighbour memory, the clock rule).

The relay is layered, each layer a module with one concern, each using only those below it:
relaybase -> sending (outbound effects, the radio write) -> intake (accept, hold, reverify)
-> reports (handheld reports) -> radio_side (what the radio hears, the transmit loop)
-> broker_side (what MQTT brings, trust) -> relay (construction, lifecycle, status).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relayd import BUILD_EPOCH_S
from relayd.core.airtime import mesh_frame_time_on_air_s
from relayd.core.authority import ReferenceHold
from relayd.core.catchup import ActiveFrame, LateJoiners
from relayd.core.clockrule import (
    ClockAssessment,
    StepDetector,
    assess_clock,
    clamped_floor,
    verification_time_s,
)
from relayd.core.control import (
    ControlKind,
    ControlRejection,
    PeerTable,
    open_sealed,
    relay_ids,
    seal,
)
from relayd.core.dedup import BoundedMap
from relayd.core.earshot import MAX_REPEATERS, Earshot, flood_s
from relayd.core.eventscope import event_peers
from relayd.core.identity import Identity
from relayd.core.jsonform import MalformedMessage
from relayd.core.model import DropReason
from relayd.core.neighbours import Neighbours
from relayd.core.notice import ForgeryNotices
from relayd.core.outbound import Outbound
from relayd.core.ratelimit import RateLimit, TokenBuckets
from relayd.core.repeat import LateRepeats
from relayd.core.replies import ReplyDesk
from relayd.core.scheduler import AirtimeScheduler
from relayd.core.status import (
    EventKind,
    RelayEvent,
    RelayState,
    RelayStatus,
    encode_event,
)
from relayd.core.suppression import (
    NeighbourMemory,
    RankScope,
    Suppressor,
    rank_peers,
)
from relayd.core.topics import TopicKind, Topics
from relayd.core.trust import SignedBundle
from relayd.core.verify import Verdict, Verifier
from relayd.daemon.config import Config
from relayd.daemon.radio import (
    RadioLink,
    ReceivedText,
)
from relayd.daemon.storage import Storage, StorageError

if TYPE_CHECKING:
    from relayd.daemon.mqtt import MqttLink
    from relayd.daemon.sync import SyncLink

log = logging.getLogger("relayd.relay")

REPORT_LIFETIME_S = 2 * 3600
# The RF-only suppression slot, in max-size frames: a neighbour's frame may wait behind a
# few mesh rebroadcasts in its radio's queue before we hear it (measured in the simulator
# at up to ~4 frames under a steady stream). The MQTT event path is much faster; this
# slot is the fallback when the broker is down.
SLOT_FRAMES = 4
DROP_LOG_INTERVAL_S = 10.0
REPORTS_SEEN_MAX = 4096
_UNAUTHENTICATED = frozenset(
    {DropReason.MALFORMED, DropReason.BAD_SIGNATURE, DropReason.UNKNOWN_KEY, DropReason.DUPLICATE}
)
_EVENT_RATE = RateLimit(burst=50, per_s=10.0)
# Drop lines at INFO: a burst of 30, then one a second (the rest are DEBUG and in the summary).
_DROP_LOG_RATE = RateLimit(burst=30, per_s=1.0)
# An MQTT alert issued longer ago than this is treated as backlog, not fresh news.
STALE_AFTER_S = 2.0
# Keep this many slots of the radio's transmit queue (firmware MAX_TX_QUEUE = 16) free for
# the mesh's own rebroadcasts.
RADIO_QUEUE_RESERVE = 4
# Acks and notices go after every alert: a handheld's thank-you never delays an alert.
ACK_RANK = 9
# A late repeat goes after everything else (relayd/core/repeat.py).
REPEAT_RANK = ACK_RANK + 1
# Reports a handheld may send: a burst of 5, then one each 30 s (anyone can type fast, and
# anyone can claim any node number, so the table of handhelds is bounded too).
REPORTS_PER_HANDHELD = RateLimit(burst=5, per_s=1 / 30)
REPORT_SENDERS_MAX = 1024
HOUSEKEEPING_INTERVAL_S = 5.0
# A broadcast sent with want_ack is answered by the firmware when it hears a neighbour repeat
# it, or with MAX_RETRANSMIT after three tries (ReliableRouter; each try waits a couple of
# max-size LongFast frames plus the rebroadcast contention window: well under a minute).
# No answer in this long means the radio lost it: it goes again with the same packet id.
ACK_WAIT_S = 90.0
# An ack DM counts as taken once this long has passed without a late refusal (the text
# rate limit's Routing error follows its queue status within milliseconds).
REFUSAL_GRACE_S = 3.0
# Refusals that may clear are retried MAX_SEND_ATTEMPTS times (relayd/core/outbound.py).
REFUSED_BY_RADIO = "refused_by_radio"
ACTIVE_FRAMES_MAX = 64
STATUS_MIN_INTERVAL_S = 1.0
# A radio's NodeInfo on air (its User: names, hardware, public key) is about this many bytes.
NODEINFO_FRAME_BYTES = 90
# A handheld's free text may hold characters the signed form forbids.
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


@dataclass
class Counters:
    drops: Counter[str] = field(default_factory=Counter)
    # MQTT messages that could not be used, by TopicKind value (status "malformed").
    malformed: Counter[str] = field(default_factory=Counter)
    # Control messages not believed, by ControlRejection value (status "unverified").
    unverified: Counter[str] = field(default_factory=Counter)
    heard: int = 0
    received: int = 0
    transmitted: int = 0
    suppressed: int = 0
    published: int = 0
    reports: int = 0
    ignored_text: int = 0
    forgery_notices: int = 0  # notices broadcast about forgeries heard on RF
    unconfirmed: int = 0  # frames left with a radio that never said they went on air
    catchup_dms: int = 0  # active alerts sent by DM to handhelds switched on late
    late_repeats: int = 0  # alerts handed to a radio again under their packet id
    # Texts heard before relayd connected, by BacklogOutcome value (status "backlog").
    backlog: Counter[str] = field(default_factory=Counter)
    trust_refused: int = 0
    storage_errors: int = 0
    send_retries: int = 0
    handler_errors: int = 0  # MQTT messages that hit a bug (also counted as malformed)


class RelayBase:
    """The state and helpers every layer of the relay shares."""

    config: Config
    clock: Callable[[], float]
    _clock_synced: Callable[[], bool | None]
    _monotonic: Callable[[], float]
    _clock_steps: StepDetector
    _clock_was_set: bool
    clock_assessment: ClockAssessment
    newest_issued_s: float | None
    topics: Topics
    identity: Identity
    pinned_root: bytes
    storage: Storage
    storage_error: str | None
    counters: Counters
    _rng: random.Random
    signed_bundle: SignedBundle
    verifier: Verifier
    _ref_hold: ReferenceHold
    time_scale: float
    suppressor: Suppressor
    peers: PeerTable
    rank_scope: RankScope
    _relayed_copy_s: float
    neighbours: Neighbours
    radios: list[RadioLink]
    outbound: Outbound
    schedulers: dict[str, AirtimeScheduler]
    _active_refs: dict[bytes, bytes | None]
    _report_holds: dict[tuple[int, int], tuple[float, ReceivedText]]
    _report_buckets: BoundedMap[int, tuple[float, float]]
    late_joiners: LateJoiners
    _active_frames: dict[bytes, ActiveFrame]
    _announced: set[str]  # radios asked to announce themselves this run (`_should_announce`)
    earshot: dict[str, Earshot]  # per radio: the transmitters it heard lately
    late_repeats: LateRepeats  # urgent alerts to go on air once more (relayd/core/repeat.py)
    _max_airtime_s: float  # a full frame's airtime (scaled)
    notices: ForgeryNotices
    _notice_holds: dict[bytes, tuple[float, str]]
    _reports_seen: BoundedMap[tuple[int, int], None]
    _drops_since_log: Counter[str]
    _drops_logged_at: float
    _event_budget: TokenBuckets
    _wake: asyncio.Event
    _outgoing: deque[tuple[str, bytes, bool]]  # (topic, payload, retain), see _publish_soon
    _outgoing_wake: asyncio.Event
    _opened: bool
    _publish_wake: asyncio.Event
    _status_dirty: asyncio.Event
    _last_heard_s: float | None
    _stopping: bool
    _bundle_mtime: float
    mqtt: MqttLink
    sync: SyncLink  # catch-up after a gap (relayd/core/reconcile.py)
    replies: ReplyDesk  # responders' answers to alerts (relayd/core/replies.py)
    _mqtt_alert: bytes | None  # the alert in the MQTT message being handled

    def _storage_call(self, fn: Callable[[], object]) -> bool:
        """Run a storage write; on failure keep running and say so in status."""
        try:
            fn()
        except StorageError as exc:
            self.counters.storage_errors += 1
            if self.storage_error != str(exc):
                log.error("%s", exc)  # noqa: TRY400 - the message says it all; no traceback
            self.storage_error = str(exc)
            self._status_dirty.set()
            return False
        if self.storage_error != self.storage.error:
            # Cleared only once the kind of write that failed has succeeded (storage.py).
            self.storage_error = self.storage.error
            self._status_dirty.set()
        return True

    def _drop(self, verdict: Verdict, via: str) -> None:
        reason = verdict.reason or DropReason.MALFORMED
        self.counters.drops[reason.value] += 1
        alert_id = verdict.alert.id_hex if verdict.alert else ""
        # Never the text at INFO (privacy). Each drop of an identified frame is an INFO line
        # with its id, within a budget so a flood of forgeries cannot flood the log; the rest
        # (and duplicates, the mesh's normal echo) are DEBUG, summed at INFO every
        # DROP_LOG_INTERVAL_S.
        now = self.clock()
        if (
            alert_id
            and reason is not DropReason.DUPLICATE
            and self._event_budget.allow(b"log", _DROP_LOG_RATE, now)
        ):
            log.info("dropped %s from %s: %s", alert_id, via, reason.value)
        else:
            log.debug("dropped %s from %s: %s (%s)", alert_id or "frame", via, reason.value, verdict.detail)
        self._drops_since_log[reason.value] += 1
        if now - self._drops_logged_at >= DROP_LOG_INTERVAL_S:
            summary = ", ".join(f"{r} {n}" for r, n in sorted(self._drops_since_log.items()))
            log.info("dropped since last report: %s", summary)
            self._drops_since_log.clear()
            self._drops_logged_at = now
        # Events tell dispatchers which alerts were refused and why. They are rate-limited,
        # so a flood of forgeries cannot turn into a flood of MQTT events.
        if (
            alert_id
            and reason is not DropReason.DUPLICATE
            and self._event_budget.allow(b"drop", _EVENT_RATE, now)
        ):
            self._event(EventKind.DROPPED, alert_id, via, reason.value)
        self._status_dirty.set()

    def _event(
        self, kind: EventKind, alert_id: str, via: str | None = None, reason: str | None = None
    ) -> None:
        event = RelayEvent(self.config.relay_id, kind, alert_id, self.clock(), via, reason)
        if self.mqtt.connected:
            # Events are news for now, not kept for later: while the broker is away they go.
            payload = self._seal(ControlKind.EVENT, encode_event(event))
            self._publish_soon(self.topics.events(self.config.relay_id), payload)

    def _publish_soon(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish from the outgoing task (in the relay's TaskGroup), not stored on disk. The
        queue is bounded: a flood drops its oldest (an event, or a store-less delivery)."""
        self._outgoing.append((topic, payload, retain))
        self._outgoing_wake.set()

    def _verification_at(self, now: float) -> Callable[[int], float]:
        def at(issued_at_s: int) -> float:
            return verification_time_s(self.clock_assessment, now, issued_at_s, self.config.clock_skew_s)

        return at

    def _verify(self, payload: bytes | str, via: str) -> Verdict:
        now = self.clock()
        return self.verifier.verify(payload, now, at=self._verification_at(now))

    def _seal(self, kind: ControlKind, body: bytes) -> bytes:
        """Sign a status, event or report note as this relay (relayd/core/control.py)."""
        return seal(kind, self.config.relay_id, body, self.identity.key_id, self.identity.sign)

    def _flood_s(self, radio_name: str, airtime_s: float, *, late_repeat: bool = False) -> float:
        """How long a frame of `airtime_s` from this radio keeps the channel busy with its
        repeats (relayd/core/earshot.py): its next frame waits that long. A late repeat is
        relayed once more by every neighbour that has it, heard by us or not
        (relayd/core/repeat.py): for the spacing of repeats, count every repeater there can be."""
        earshot = self.earshot.get(radio_name)
        if earshot is None or not self.config.airtime.pace_to_air:
            return 0.0
        repeaters = MAX_REPEATERS if late_repeat else earshot.repeaters(self.clock())
        return flood_s(airtime_s, repeaters, self.config.airtime.preset, self.time_scale)

    def _pace_s(self) -> float:
        """How far apart this relay sends the alerts of a burst: the text interval, or a
        full frame's flood where we are if longer. A peer's queue moves at about this pace,
        so the turn behind it an alert gets on arrival is counted in it."""
        interval = self.config.airtime.min_text_interval_s / self.time_scale
        floods = [self._flood_s(name, self._max_airtime_s) for name in self.earshot]
        return max([interval, *floods])

    def _peer_pace_s(self) -> float:
        """The longest a peer of our area can take between two frames: a full frame's flood
        with every repeater counted (its earshot is not ours; a relay at the centre of an
        area hears more nodes than one at its edge). What we hold behind a peer that shows
        progress waits this long for its next frame. The cost: a peer that stops right after
        showing progress (its radio lost) is covered up to this much later than by a wait cut
        to its real pace; one that stopped earlier shows no progress to extend anything."""
        interval = self.config.airtime.min_text_interval_s / self.time_scale
        if not self.config.airtime.pace_to_air:
            return interval
        most = flood_s(self._max_airtime_s, MAX_REPEATERS, self.config.airtime.preset, self.time_scale)
        return max(interval, most)

    def _on_heard(self, radio_name: str, node: int, transmitter: int | None, when: float | None) -> None:
        """Our radio heard a packet from `node` (`when`: at the node DB's last_heard, else
        now); `transmitter` put the copy on air."""
        self._note_heard_node(node)
        earshot = self.earshot.get(radio_name)
        if transmitter is not None and earshot is not None:
            now = self.clock()
            earshot.heard(transmitter, now if when is None else min(when, now))

    def _airtime(self, text: str) -> float:
        return (
            mesh_frame_time_on_air_s(len(text.encode("utf-8")), self.config.airtime.preset) / self.time_scale
        )

    def _open_control(self, kind: ControlKind, relay: str, payload: bytes) -> bytes | None:
        """The body of a peer's signed control message, or None (counted) if not believed."""
        verdict = open_sealed(
            payload, kind=kind, topic_relay=relay, bundle=self.verifier.bundle, now_s=self.clock()
        )
        if verdict.rejection is ControlRejection.MALFORMED:
            raise MalformedMessage(verdict.detail)
        if verdict.rejection is not None:
            self._unverified(verdict.rejection, relay, verdict.detail)
            return None
        return verdict.body

    def _unverified(self, rejection: ControlRejection, relay: str, detail: str) -> None:
        self.counters.unverified[rejection.value] += 1
        log.debug("not believed: %s message for %s: %s", rejection.value, relay, detail)
        self._status_dirty.set()

    def _malformed(self, kind: TopicKind, detail: str) -> None:
        self.counters.malformed[kind.value] += 1
        log.debug("malformed message on %s: %s", kind.value, detail)
        self._status_dirty.set()

    def _assess_clock(self) -> ClockAssessment:
        """The clock rule's view now; once the clock is known to be set, the persisted floor
        is clamped to it (a floor pushed ahead must not outlive NTP)."""
        now = self.clock()
        skew = self.config.clock_skew_s
        evidence = max(self.newest_issued_s or 0.0, float(self.verifier.bundle.issued_at_s))
        clock_set = self._clock_was_set or self._clock_synced() is True
        assessment = assess_clock(now, BUILD_EPOCH_S, evidence, skew, clock_set=clock_set)
        clamped = clamped_floor(self.newest_issued_s, assessment, now, skew)
        if clamped is not None and self.newest_issued_s is not None and clamped < self.newest_issued_s:
            log.warning(
                "clock: floor was %.0f s ahead of the set clock; clamped", self.newest_issued_s - clamped
            )
            self.newest_issued_s = clamped
            self._storage_call(lambda: self.storage.clamp_newest_issued(clamped))
        return assessment

    def _observe_clock(self) -> None:
        """Called periodically: a wall-clock step while running means the clock was set."""
        if self._clock_steps.observe(self.clock(), self._monotonic()) and self.clock() >= BUILD_EPOCH_S:
            self._clock_was_set = True
            log.warning("clock: the system clock was set while running; trusting it from now on")

    def _save_neighbours(self) -> None:
        doc = self.neighbours.doc()
        self._storage_call(lambda: self.storage.set_meta("neighbours", doc))
        self._scope_events()

    def _event_peers(self) -> frozenset[str]:
        # Every relay the bundle names, from the start: a peer's events must not be missed
        # while its status is on its way (restart, new relay); apart ones drop out as learned.
        known = relay_ids(self.verifier.bundle, self.clock()) | set(self.neighbours.peer_nodes)
        return event_peers(self.config.relay_id, known, self._neighbour_memory(), self.rank_scope)

    def _subscriptions(self) -> list[str]:
        return [*self.topics.relay_subscriptions(self._event_peers()), *self.sync.subscriptions]

    def _scope_events(self) -> None:
        """Follow the neighbour memory with the event subscriptions."""
        self.mqtt.set_subscriptions(self._subscriptions())

    def _publish_from_memory(self, publishes: list[tuple[str, bytes, bool]]) -> None:
        """The state disk failed: still deliver (in memory, from the outgoing task), and
        say so in status."""
        for topic, payload, retain in publishes:
            self._publish_soon(topic, payload, retain)

    def _on_storage_error(self, error: str) -> None:
        """A write nobody waited for failed (on the storage's writer thread)."""
        self.counters.storage_errors += 1
        if self.storage_error != error:
            log.error("%s", error)
        self.storage_error = self.storage.error
        self._status_dirty.set()

    def _neighbour_memory(self) -> NeighbourMemory:
        return self.neighbours.memory()

    def _note_heard_node(self, node: int) -> None:
        if self.neighbours.heard_node(node):
            self._save_neighbours()
            self._status_dirty.set()

    def _should_announce(self, radio_name: str) -> bool:
        """Once per run, a relay that knows no relay sharing its air (a fresh install) asks
        its radio to announce itself (the firmware's nodeinfo ping): the relays in earshot hear
        its radio and say so in their status, so that by the first alert each cluster ranks
        only among its own relays instead of among every relay nothing is known about yet
        (relayd/core/suppression.py, MAX_RANK)."""
        if radio_name in self._announced or self.neighbours.knows_a_neighbour():
            return False
        self._announced.add(radio_name)
        # The announcement is a frame like any other, and its flood takes the channel: the
        # first alert waits for it rather than going on air into it (seen on real firmware: a
        # handheld two hops away missed an alert sent a second after the announcement).
        airtime = mesh_frame_time_on_air_s(NODEINFO_FRAME_BYTES, self.config.airtime.preset) / self.time_scale
        scheduler = self.schedulers.get(radio_name)
        if scheduler is not None:
            scheduler.record_transmission(airtime, self.clock(), self._flood_s(radio_name, airtime))
        return True

    def _note_peer_status(self, relay: str, peer: RelayStatus) -> None:
        """Learn the peer's radio node, and whether its radio hears ours."""
        rf_heard = self.neighbours.rf_heard()
        if self.neighbours.peer_status(relay, peer, self.radios[0].my_node):
            self._save_neighbours()
        else:
            self._scope_events()  # a new peer, or what it hears changed
        if self.neighbours.rf_heard() != rf_heard:
            self._status_dirty.set()  # a radio we had heard turned out to be this peer's

    def _await_rf_copy(self, relay: str, alert_id: bytes) -> None:
        """A peer whose radio ours has not heard transmitted an alert we may hold: wait for
        its RF copy (direct or rebroadcast) before deciding, and learn from whether it comes."""
        if self.outbound.wait_for_copy(alert_id, self._relayed_copy_s):
            self._wake.set()
        if all(r.connected for r in self.radios):
            deadline = self.clock() + self._relayed_copy_s
            self.neighbours.await_copy(relay, deadline, sum(r.connects for r in self.radios))

    def _classify_awaited(self, now: float) -> None:
        """A peer whose transmission never reached our listening radio is apart."""

        def listened(connects: int) -> bool:
            return all(r.connected for r in self.radios) and connects == sum(r.connects for r in self.radios)

        if self.neighbours.classify_awaited(now, listened):
            self._save_neighbours()

    def _online_peers(self) -> list[str]:
        return [r for r, s in self.peers.items() if s is not RelayState.OFFLINE and r != self.config.relay_id]

    def _rank_peers(self) -> frozenset[str]:
        """The peers this relay takes turns with: its RF neighbours (or, with
        `suppression.rank_among = "broker"`, every online relay)."""
        self._classify_awaited(self.clock())
        return rank_peers(
            self.config.relay_id, self._online_peers(), self._neighbour_memory(), self.rank_scope
        )

    def _catch_up_peers(self) -> frozenset[str]:
        """The peers to take turns with for a catch-up: those `_rank_peers` would take, online
        or not. A catch-up follows a gap, and an area's relays often come back together (a
        power cut): each learns the others are back only as their statuses arrive, so each
        could take the first turn in its own view. Every relay's retained status is there from
        the start, online or offline, so all of them rank in the same order. An alert that is
        already late loses at most a slot to a peer that really is still away."""
        self._classify_awaited(self.clock())
        known = [r for r, _state in self.peers.items() if r != self.config.relay_id]
        return rank_peers(self.config.relay_id, known, self._neighbour_memory(), self.rank_scope)
