"""The relay: wires the radio and MQTT links to the pure core.

    radio --frames--> decode -> verify -> dedup -> route --> MQTT (alerts, reports)
    MQTT (outbox, other relays' alerts) -> decode -> verify -> dedup -> hold -> schedule --> radio
    handheld "!r ..." -> wrap as a relay-signed report --> MQTT reports (+ DM ack to the sender)

Every decision is made by the core (Verifier, Suppressor, AirtimeScheduler); this module
only moves bytes and persists state. Runs as one TaskGroup of named tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import random
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from relayd import BUILD_EPOCH_S, __version__
from relayd.core.airtime import MAX_DATA_PAYLOAD_BYTES, MAX_PKI_DM_PAYLOAD_BYTES, mesh_frame_time_on_air_s
from relayd.core.authority import Held, ReferenceHold
from relayd.core.backlog import BacklogOutcome, backlog_route, late_report_text
from relayd.core.catchup import ActiveFrame, CatchupPolicy, LateJoiners
from relayd.core.clockrule import (
    ClockAssessment,
    StepDetector,
    advances_floor,
    assess_clock,
    best_time_s,
    clamped_floor,
    verification_time_s,
)
from relayd.core.codec import MalformedFrame, compose, decode
from relayd.core.control import (
    MAX_PEERS,
    ControlKind,
    ControlRejection,
    PeerTable,
    open_sealed,
    relay_ids,
    seal,
)
from relayd.core.dedup import BoundedMap, DedupSet
from relayd.core.eventscope import event_peers
from relayd.core.jsonform import (
    MAX_MESSAGE_BYTES,
    Envelope,
    MalformedMessage,
    alert_to_dict,
    encode_alert,
    onair_from_message,
)
from relayd.core.model import AlertFields, DropReason, Kind, Role, Severity, SignedAlert
from relayd.core.notice import ForgeryNotices, claims_to_be_an_alert, is_notice
from relayd.core.packetid import first_packet_id
from relayd.core.ratelimit import RateLimit, TokenBuckets
from relayd.core.readiness import RadioSummary, Readiness, ready_line
from relayd.core.replay import ReplayWindows
from relayd.core.replies import ReplyDesk, ReplyOutcome, parse_reply
from relayd.core.scheduler import AirtimeScheduler, QueueItem, Ready, Wait
from relayd.core.status import (
    EventKind,
    RelayEvent,
    RelayState,
    RelayStatus,
    ReportNote,
    checked_str,
    encode_event,
    encode_report_note,
    encode_status,
    load_json_object,
    offline_status,
    parse_event,
    parse_report_note,
    parse_status,
)
from relayd.core.suppression import (
    Adjacency,
    NeighbourMemory,
    RankScope,
    Suppressor,
    adjacency,
    honours_evidence,
    rank_peers,
    relayed_copy_s,
)
from relayd.core.topics import TopicKind, Topics
from relayd.core.trust import SignedBundle, TrustBundleError, parse_signed_bundle, should_replace
from relayd.core.verify import Verdict, Verifier, VerifyPolicy
from relayd.daemon.clocksync import kernel_clock_synchronised
from relayd.daemon.config import Config
from relayd.daemon.notify import sd_notify, watchdog_interval_s
from relayd.daemon.radio import (
    PacketIgnoredError,
    RadioLink,
    RadioUnavailableError,
    ReceivedText,
    SendRejectedError,
)
from relayd.daemon.storage import QueuedRow, Storage, StorageError
from relayd.daemon.sync import SyncLink
from relayd.errors import RelaydError
from relayd.keystore import load_private_key, load_public_key
from relayd.meshapi.packets import BROADCAST_NUM, node_id
from relayd.meshapi.routing import Answer, Disposition
from relayd.trustfile import load_bundle, save_bundle

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
# Refusals that may clear (rate limit, duty cycle, full queue) are retried this many times
# per frame; a frame that still cannot go is given up and its alert reported not sent.
MAX_SEND_ATTEMPTS = 6
REFUSED_BY_RADIO = "refused_by_radio"
HEARD_ON_AIR_MAX = 1024
ACTIVE_FRAMES_MAX = 64
STATUS_MIN_INTERVAL_S = 1.0
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
    # Texts heard before relayd connected, by BacklogOutcome value (status "backlog").
    backlog: Counter[str] = field(default_factory=Counter)
    trust_refused: int = 0
    storage_errors: int = 0
    send_retries: int = 0
    handler_errors: int = 0  # MQTT messages that hit a bug (also counted as malformed)


@dataclass(frozen=True, slots=True)
class InFlight:
    """A frame our radio has taken but not yet confirmed on air."""

    radio: str
    item: QueueItem
    deadline_s: float
    # The radio ignored our resend of this id: it had taken it on an earlier connection, so
    # its answer may have gone to that connection and never come.
    ignored: bool = False


class Relay:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        clock_synced: Callable[[], bool | None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.clock = clock
        # Whether the system vouches for `clock` (NTP); a clock injected by a test or a
        # simulation is not the kernel's, so the kernel's word says nothing about it.
        if clock_synced is None:
            clock_synced = kernel_clock_synchronised if clock is time.time else (lambda: None)
        self._clock_synced = clock_synced
        self._monotonic = monotonic
        self._clock_steps = StepDetector(config.clock_skew_s)
        self._clock_was_set = False
        self.topics = Topics(config.mqtt.topic_root)
        self.identity = load_private_key(config.key_path, unattended=True)
        self.pinned_root = load_public_key(config.root_pub).public_key
        self.storage = Storage(config.db_path)
        self.counters = Counters()
        self.storage_error: str | None = None
        self._rng = random.Random()
        self.signed_bundle = self._load_best_bundle()
        dedup = DedupSet()
        replay = ReplayWindows()
        now = self.clock()
        for alert_id in self.storage.seen_ids(now - 2 * dedup.generation_s):
            dedup.add(alert_id, now)
        replay.restore(self.storage.replay_windows())
        # What goes on air must end only alerts this relay knows the author of.
        policy = VerifyPolicy(clock_skew_s=config.clock_skew_s, require_known_reference=True)
        policy.rate_limits.update(dict(config.rate_limits))
        self.verifier = Verifier(self.signed_bundle.bundle, policy, dedup=dedup, replay=replay)
        with contextlib.suppress(StorageError):
            self.verifier.restore_known(self.storage.known_onairs())
        self._ref_hold = ReferenceHold()
        self.newest_issued_s = self.storage.newest_issued_s()
        time_scale = config.radios[0].time_scale
        self.time_scale = time_scale
        max_airtime_s = mesh_frame_time_on_air_s(MAX_DATA_PAYLOAD_BYTES, config.airtime.preset) / time_scale
        slot = config.suppression.slot_s
        if slot is None:
            slot = SLOT_FRAMES * max_airtime_s + config.suppression.margin_s / time_scale
        self.suppressor = Suppressor(
            config.relay_id,
            slot,
            config.suppression.jitter_s / time_scale,
            config.suppression.enabled,
            self._rng,
        )
        # Verified peers only (signed statuses), bounded; see relayd/core/control.py.
        self.peers = PeerTable()
        self.rank_scope = RankScope(config.suppression.rank_among)
        # How long the RF copy of a neighbour's frame may take through one ROUTER_LATE
        # rebroadcast: the wait for an unclassified peer's copy.
        self._relayed_copy_s = relayed_copy_s(config.airtime.preset, max_airtime_s * time_scale) / time_scale
        # Peer relay -> its radio's node number (from its status), and the node numbers this
        # relay's radio has heard: a peer whose radio we hear covers our area too.
        self.peer_nodes: dict[str, int] = {}
        self.heard_nodes: set[int] = set()
        # Peers whose status says their radio heard ours, and peers that transmitted while
        # our radio listened without our hearing it (relayd.core.suppression.adjacency).
        self.heard_by: set[str] = set()
        self.unheard: set[str] = set()
        self.peer_heard: dict[str, frozenset[int]] = {}  # from statuses; not kept across restarts
        # Unclassified peer -> (when to decide, radio connects then): its RF copy is due.
        self._awaiting_copy: dict[str, tuple[float, int]] = {}
        self._load_neighbours()
        self.radios = [
            RadioLink(
                rc,
                self._on_radio_text,
                self._on_link_state,
                on_answer=functools.partial(self._on_radio_answer, rc.name),
                clock=self.clock,
                clock_trusted=lambda: self.clock_assessment.warning is None,
                on_node=functools.partial(self._on_radio_node, rc.name),
            )
            for rc in config.radios
        ]
        # Frames a radio has taken, by packet id, until it says they were on air.
        self._in_flight: dict[int, InFlight] = {}
        self._send_attempts: dict[bytes, int] = {}
        self._radio_paused_until: dict[str, float] = {}
        # Alerts another relay was heard transmitting: an in-doubt resend of ours is moot.
        self._heard_on_air: OrderedDict[bytes, None] = OrderedDict()
        self.schedulers = {
            r.name: AirtimeScheduler(
                duty_cycle=config.airtime.duty_cycle,
                window_s=config.airtime.window_s / time_scale,
                min_interval_s=config.airtime.min_text_interval_s / time_scale,
            )
            for r in self.radios
        }
        self._queued_rows: dict[bytes, QueuedRow] = {}
        self._pending_radios: dict[bytes, set[str]] = {}
        self._active_refs: dict[bytes, bytes | None] = {}
        self._report_holds: dict[tuple[int, int], tuple[float, ReceivedText]] = {}
        self._report_buckets: BoundedMap[int, tuple[float, float]] = BoundedMap(REPORT_SENDERS_MAX)
        # Active alerts a late-joining handheld is sent by DM (relayd/core/catchup.py).
        # Responders' answers to alerts (relayd/core/replies.py): wrapped like reports.
        self.replies = ReplyDesk()
        self.readiness = Readiness()  # the operator's "ready" line (relayd/core/readiness.py)
        self.late_joiners = LateJoiners(
            self.clock(), CatchupPolicy(absent_s=config.catchup_after_s / time_scale)
        )
        self._active_frames: dict[bytes, ActiveFrame] = {}
        # Notices about forgeries heard on RF, by the notice's id, until their turn comes.
        self.notices = ForgeryNotices()
        self._notice_holds: dict[bytes, tuple[float, str]] = {}
        self._reports_seen: BoundedMap[tuple[int, int], None] = BoundedMap(REPORTS_SEEN_MAX)
        self._drops_since_log: Counter[str] = Counter()
        self._drops_logged_at = 0.0
        self._event_budget = TokenBuckets()
        self._wake = asyncio.Event()
        self._publish_wake = asyncio.Event()
        self._status_dirty = asyncio.Event()
        # Writes commit on the storage's writer thread; these run in the loop after them.
        self.storage.on_commit = self._publish_wake.set
        self.storage.on_lost_publishes = self._publish_from_memory
        self.storage.on_error = self._on_storage_error
        self._last_heard_s: float | None = None
        self._stopping = False
        self._bundle_mtime = self._file_mtime()
        # Write-ahead packet ids of frames that may have gone out just before a crash.
        self._resend_ids: dict[bytes, int] = {}
        self._mqtt_alert: bytes | None = None  # the alert in the MQTT message being handled
        self._clock_steps.observe(self.clock(), self._monotonic())
        self.clock_assessment = self._assess_clock()
        self._restore_queue()
        self._check_own_key()
        from relayd.daemon.mqtt import MqttLink  # noqa: PLC0415 - keep aiomqtt out of `relayd check`

        self.sync = SyncLink(self)  # catch-up after a gap (relayd/core/reconcile.py)

        self.mqtt = MqttLink(
            config.mqtt,
            # Events of RF neighbours only (relayd/core/eventscope.py); the wildcard of
            # older relays is dropped from the persistent session.
            subscriptions=self._subscriptions(),
            retired=[self.topics.events_wildcard],
            handler=self._on_mqtt,
            will_topic=self.topics.status(config.relay_id),
            will_payload=self._offline_status_payload,
            on_state=self._on_link_state,
            on_connect=self._on_mqtt_connect,
        )

    # -- startup ----------------------------------------------------------------------

    def _load_best_bundle(self) -> SignedBundle:
        """The configured bundle, or the newer one received over MQTT and kept in state."""
        configured = load_bundle(self.config.bundle_path, pinned_root=self.pinned_root)
        saved_path = self.config.state_dir / "trust.json"
        if saved_path.exists():
            try:
                saved = load_bundle(saved_path, pinned_root=self.pinned_root)
            except RelaydError as exc:
                log.warning("ignoring saved trust bundle: %s", exc)
            else:
                if should_replace(configured.bundle, saved.bundle) is None:
                    return saved
        return configured

    def _file_mtime(self) -> float:
        try:
            return self.config.bundle_path.stat().st_mtime
        except OSError:
            return 0.0

    def _restore_queue(self) -> None:
        now = self.clock()
        # A relay back after a long absence with a clock that reads 1970 judges expiry by
        # its newest signed evidence of the time, not by the clock.
        expiry_now = best_time_s(self.clock_assessment, now)
        at = self._verification_at(now)
        for row in self.storage.queued():
            if expiry_now >= row.expires_at_s:
                self._storage_call(lambda a=row.alert_id: self.storage.dequeue(a, "expired"))  # type: ignore[misc]
                continue
            # Accepted before the restart, but the bundle may have changed since (a revoked
            # key), or the database been tampered with: it must still verify.
            verdict = self.verifier.reverify(row.onair, now, at=at)
            if not verdict.ok:
                outcome = (verdict.reason or DropReason.MALFORMED).value
                self._storage_call(lambda a=row.alert_id, o=outcome: self.storage.dequeue(a, o))  # type: ignore[misc]
                self.counters.drops[outcome] += 1
                log.warning("queued alert %s no longer verifies: %s", row.alert_id.hex(), outcome)
                continue
            self._queued_rows[row.alert_id] = row
            if row.packet_id is not None:
                # In doubt: it may have gone out just before a crash. It keeps its packet id
                # (the mesh drops the resend as a duplicate if it did), and waits like the
                # rest: a neighbour that covered it meanwhile makes it moot.
                self._resend_ids[row.alert_id] = row.packet_id
            # While we were down a neighbour probably covered it; its "transmitted" event
            # waits in our persistent MQTT session. Hold a little longer than a fresh
            # alert so that event (or the RF copy) arrives before we decide.
            peers = rank_peers(
                self.config.relay_id, self.peer_nodes, self._neighbour_memory(), self.rank_scope
            )
            delay = self.suppressor.delay_s(row.alert_id, peers) + 2 * self.suppressor.slot_s
            self.suppressor.restore(row.alert_id, max(row.release_at_s, now + delay), now)

    def _check_own_key(self) -> None:
        """Peers and consoles believe our status and events only if the bundle binds our key
        to our relay id; say so at startup rather than be silently ignored."""
        listed = self.verifier.bundle.key(self.identity.key_id)
        if (
            listed is None
            or listed.public_key != self.identity.public_key
            or listed.role is not Role.RELAY
            or listed.name != self.config.relay_id
        ):
            log.warning(
                "this relay's key %s is not listed in the trust bundle as relay %r: peers and "
                "consoles will ignore its status and events (relayd trust add --role relay --name %s)",
                self.identity.key_id.hex(),
                self.config.relay_id,
                self.config.relay_id,
            )

    def _load_neighbours(self) -> None:
        """Peers' radio nodes and the nodes our radio has heard, kept across restarts."""
        try:
            raw = self.storage.get_meta("neighbours")
        except StorageError:
            return
        if not raw:
            return
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            doc = json.loads(raw)
            peers = list(doc.get("peers", {}).items())[:MAX_PEERS]
            self.peer_nodes = {str(k): int(v) for k, v in peers}
            stored = {int(n) for n in doc.get("heard", [])}
            self.heard_nodes = stored & set(self.peer_nodes.values())
            self.heard_by = {str(r) for r in doc.get("heard_by", [])[:MAX_PEERS]}
            self.unheard = {str(r) for r in doc.get("unheard", [])[:MAX_PEERS]}
            if stored != self.heard_nodes:
                # An older relay kept every handheld it heard: forget them now.
                with contextlib.suppress(StorageError):
                    self.storage.set_meta("neighbours", self._neighbours_doc())

    def _neighbours_doc(self) -> str:
        # Only peer relays' radios: a seized relay must not list the handhelds it heard.
        peers = set(self.peer_nodes.values())
        return json.dumps(
            {
                "peers": self.peer_nodes,
                "heard": sorted(self.heard_nodes & peers),
                "heard_by": sorted(self.heard_by),
                "unheard": sorted(self.unheard),
            }
        )

    def _save_neighbours(self) -> None:
        doc = self._neighbours_doc()
        self._storage_call(lambda: self.storage.set_meta("neighbours", doc))
        self._scope_events()

    def _event_peers(self) -> frozenset[str]:
        # Every relay the bundle names, from the start: a peer's events must not be missed
        # while its status is on its way (restart, new relay); apart ones drop out as learned.
        known = relay_ids(self.verifier.bundle, self.clock()) | set(self.peer_nodes)
        return event_peers(self.config.relay_id, known, self._neighbour_memory(), self.rank_scope)

    def _subscriptions(self) -> list[str]:
        return [*self.topics.relay_subscriptions(self._event_peers()), *self.sync.subscriptions]

    def _scope_events(self) -> None:
        """Follow the neighbour memory with the event subscriptions."""
        self.mqtt.set_subscriptions(self._subscriptions())

    def _neighbour_memory(self) -> NeighbourMemory:
        return NeighbourMemory(
            peer_nodes=self.peer_nodes,
            heard_nodes=frozenset(self.heard_nodes),
            heard_by=frozenset(self.heard_by),
            unheard=frozenset(self.unheard),
            peer_heard=self.peer_heard,
        )

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

    # -- helpers ----------------------------------------------------------------------

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

    def _publish_from_memory(self, publishes: list[tuple[str, bytes, bool]]) -> None:
        """The state disk failed: still deliver (in memory), and say so in status."""
        with contextlib.suppress(RuntimeError):  # no event loop: nothing to publish through
            loop = asyncio.get_running_loop()
            for topic, payload, retain in publishes:
                task = loop.create_task(self.mqtt.publish(topic, payload, retain=retain))
                task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def _on_storage_error(self, error: str) -> None:
        """A write nobody waited for failed (on the storage's writer thread)."""
        self.counters.storage_errors += 1
        if self.storage_error != error:
            log.error("%s", error)
        self.storage_error = self.storage.error
        self._status_dirty.set()

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
            payload = self._seal(ControlKind.EVENT, encode_event(event))
            task = asyncio.get_running_loop().create_task(
                self.mqtt.publish(self.topics.events(self.config.relay_id), payload)
            )
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def _verification_at(self, now: float) -> Callable[[int], float]:
        def at(issued_at_s: int) -> float:
            return verification_time_s(self.clock_assessment, now, issued_at_s, self.config.clock_skew_s)

        return at

    def _verify(self, payload: bytes | str, via: str) -> Verdict:
        now = self.clock()
        return self.verifier.verify(payload, now, at=self._verification_at(now))

    def _hold_for_reference(self, verdict: Verdict, payload: bytes | str, via: str) -> bool:
        """An update, cancel or all-clear naming an alert not known yet waits for it
        (bounded in count and time; docs/protocol.md, "Authority")."""
        ref = verdict.alert.fields.ref if verdict.alert is not None else None
        if verdict.reason is not DropReason.UNKNOWN_REFERENCE or ref is None:
            return False
        raw = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else payload
        evicted = self._ref_hold.hold(ref, raw, via, self.clock())
        if evicted is not None:
            self._offer_held(evicted)
        return True

    def _offer_held(self, held: Held) -> None:
        """A held frame, once its reference is known or its wait is over; never held again."""
        verdict = self._verify(held.payload, held.via)
        if not verdict.ok or verdict.alert is None:
            self._drop(verdict, held.via)
            return
        if held.via == "rf":
            self.counters.heard += 1
            self._accept(verdict, "rf", queue=False)
        elif verdict.alert.kind is not Kind.REPORT:
            self.counters.received += 1
            self._accept(verdict, "mqtt", queue=True)

    def _expire_reference_holds(self, now: float) -> None:
        for held in self._ref_hold.expired(now):
            self._offer_held(held)

    def _reverify_queue(self) -> None:
        """After a bundle change, what waits for the air must still verify: a revoked key's
        queued alerts never go out."""
        now = self.clock()
        at = self._verification_at(now)
        for alert_id, row in list(self._queued_rows.items()):
            verdict = self.verifier.reverify(row.onair, now, at=at)
            if not verdict.ok:
                self._cancel_queued(alert_id, (verdict.reason or DropReason.MALFORMED).value)
                self._drop(verdict, "queue")

    def _active_publishes(self, alert: SignedAlert, envelope: Envelope) -> list[tuple[str, bytes, bool]]:
        f = alert.fields
        out: list[tuple[str, bytes, bool]] = []
        if f.kind in (Kind.ALERT, Kind.UPDATE, Kind.TEST):
            out.append((self.topics.active(alert.id_hex), encode_alert(alert, envelope), True))
        elif f.kind in (Kind.CANCEL, Kind.ALLCLEAR) and f.ref is not None:
            for alert_id in self._chain_of(f.ref):
                out.append((self.topics.active(alert_id.hex()), b"", True))
        return out

    def _chain_of(self, ref: bytes) -> list[bytes]:
        """The referenced alert and the active updates that reference it."""
        chain = [ref]
        chain += [a for a, r in self._active_refs.items() if r == ref]
        return chain

    def _accept(self, verdict: Verdict, via: str, *, queue: bool) -> None:
        alert = verdict.alert
        assert alert is not None  # noqa: S101 - only called for accepted verdicts
        f = alert.fields
        now = self.clock()
        signer = verdict.signer
        self.notices.genuine(alert.onair)
        envelope = Envelope(
            relay=self.config.relay_id,
            via=via,
            received_at_s=now,
            signer_name=signer.name if signer else None,
            signer_role=signer.role.value if signer else None,
        )
        publishes: list[tuple[str, bytes, bool]] = []
        if f.kind is Kind.REPORT:
            if via == "rf":
                publishes.append((self.topics.reports, encode_alert(alert, envelope), False))
        else:
            if via == "rf":
                publishes.append((self.topics.alerts, encode_alert(alert, envelope), False))
            publishes += self._active_publishes(alert, envelope)
        row: QueuedRow | None = None
        if queue and f.kind.is_broadcast:
            # Alerts held or queued here are likely queued at the other relays too (they get
            # the same MQTT traffic), so the relay ahead of us needs that long more to send.
            pending = len(self.suppressor) + max((len(s) for s in self.schedulers.values()), default=0)
            interval_s = self.config.airtime.min_text_interval_s / self.time_scale
            release = self.suppressor.hold(alert.alert_id, now, self._rank_peers(), pending * interval_s)
            if now - f.issued_at_s > STALE_AFTER_S:
                # Not fresh from a dispatcher: probably our session's backlog after an
                # outage, which neighbours may already have covered. Give their
                # "transmitted" events (queued behind it in the same session) a slot to land.
                release += self.suppressor.slot_s
                self.suppressor.restore(alert.alert_id, release)
            row = QueuedRow(
                alert.alert_id, alert.onair, f.severity.rank, f.issued_at_s, f.expires_at_s, release, None
            )
            self._queued_rows[alert.alert_id] = row
        self.sync.reconciler.accepted(alert, heard_on_rf=via == "rf")
        if f.kind in (Kind.ALERT, Kind.UPDATE, Kind.TEST):
            self._active_refs[alert.alert_id] = f.ref
        elif f.kind in (Kind.CANCEL, Kind.ALLCLEAR) and f.ref is not None:
            for alert_id in self._chain_of(f.ref):
                self._active_refs.pop(alert_id, None)
                self._active_frames.pop(alert_id, None)
                if f.kind is Kind.CANCEL:
                    self._cancel_queued(alert_id)
        if f.kind in (Kind.ALERT, Kind.UPDATE) and len(alert.onair.encode()) <= MAX_PKI_DM_PAYLOAD_BYTES:
            # What a handheld switched on later may be sent (a DM the firmware may encrypt
            # with PKI, so it must fit that frame).
            self._active_frames[alert.alert_id] = ActiveFrame(
                alert.alert_id, alert.onair, f.severity, f.issued_at_s, f.expires_at_s
            )
            if len(self._active_frames) > ACTIVE_FRAMES_MAX:
                self._active_frames.pop(next(iter(self._active_frames)))
        # Only dispatcher and verifier alerts are evidence of the time (clockrule).
        moves_floor = advances_floor(signer.role if signer else None)
        if moves_floor and f.issued_at_s > (self.newest_issued_s or 0):
            self.newest_issued_s = float(f.issued_at_s)
            self.clock_assessment = self._assess_clock()
        window = self.verifier.replay.export().get(f.key_id)
        self._storage_call(
            lambda: self.storage.record_accepted(
                alert_id=alert.alert_id,
                key_id=f.key_id,
                window=window,
                kind=f.kind.value,
                severity=f.severity.value,
                via=via,
                now_s=now,
                expires_at_s=f.expires_at_s,
                onair=alert.onair,
                queue=row,
                active=f.kind in (Kind.ALERT, Kind.UPDATE, Kind.TEST),
                newest_issued_s=f.issued_at_s if moves_floor else None,
                publishes=publishes,
            )
        )
        self._publish_wake.set()
        self._wake.set()
        self._status_dirty.set()
        self._event(EventKind.HEARD if via == "rf" else EventKind.RECEIVED, alert.id_hex, via)
        if row is not None:
            self._event(EventKind.QUEUED, alert.id_hex, via)
        log.info("accepted %s %s %s via %s", f.kind.value, f.severity.value, alert.id_hex, via)
        for held in self._ref_hold.release(alert.alert_id):
            self._offer_held(held)

    def _cancel_queued(self, alert_id: bytes, outcome: str = "cancelled") -> None:
        self.suppressor.forget(alert_id)
        for scheduler in self.schedulers.values():
            scheduler.remove(alert_id)
        if self._queued_rows.pop(alert_id, None) is not None:
            self._pending_radios.pop(alert_id, None)
            self._storage_call(lambda: self.storage.dequeue(alert_id, outcome))

    def _online_peers(self) -> list[str]:
        return [r for r, s in self.peers.items() if s is not RelayState.OFFLINE and r != self.config.relay_id]

    def _rank_peers(self) -> frozenset[str]:
        """The peers this relay takes turns with: its RF neighbours (or, with
        `suppression.rank_among = "broker"`, every online relay)."""
        self._classify_awaited(self.clock())
        return rank_peers(
            self.config.relay_id, self._online_peers(), self._neighbour_memory(), self.rank_scope
        )

    def _note_heard_node(self, node: int) -> None:
        if node in self.heard_nodes:
            return
        self.heard_nodes.add(node)
        if node in self.peer_nodes.values():
            self.unheard -= {r for r, n in self.peer_nodes.items() if n == node}
            self._save_neighbours()
            self._status_dirty.set()

    def _note_peer_status(self, relay: str, peer: RelayStatus) -> None:
        """Learn the peer's radio node, and whether its radio hears ours."""
        changed = False
        if peer.radio_node.startswith("!"):
            with contextlib.suppress(ValueError):
                node = int(peer.radio_node[1:], 16)
                if self.peer_nodes.get(relay) != node:
                    self.peer_nodes[relay] = node
                    changed = True
        heard: set[int] = set()
        for n in peer.rf_heard:
            with contextlib.suppress(ValueError):
                heard.add(int(n.removeprefix("!"), 16))
        self.peer_heard[relay] = frozenset(heard)
        mine = self.radios[0].my_node
        if mine is not None and peer.state is not RelayState.OFFLINE:
            hears_us = node_id(mine) in peer.rf_heard
            if hears_us != (relay in self.heard_by):
                changed = True
                if hears_us:
                    self.heard_by.add(relay)
                    self.unheard.discard(relay)
                else:
                    self.heard_by.discard(relay)
        if changed:
            self._save_neighbours()
        else:
            self._scope_events()  # a new peer, or what it hears changed

    def _await_rf_copy(self, relay: str, alert_id: bytes) -> None:
        """A peer whose radio ours has not heard transmitted an alert we may hold: wait for
        its RF copy (direct or rebroadcast) before deciding, and learn from whether it comes."""
        now = self.clock()
        deadline = now + self._relayed_copy_s
        if self.suppressor.wait_for_copy(alert_id, self._relayed_copy_s):
            self._wake.set()
        if relay not in self._awaiting_copy and all(r.connected for r in self.radios):
            self._awaiting_copy[relay] = (deadline, sum(r.connects for r in self.radios))

    def _classify_awaited(self, now: float) -> None:
        """A peer whose transmission never reached our listening radio is apart."""
        changed = False
        for relay, (deadline, connects) in list(self._awaiting_copy.items()):
            if now < deadline:
                continue
            del self._awaiting_copy[relay]
            listened = all(r.connected for r in self.radios) and connects == sum(
                r.connects for r in self.radios
            )
            if listened and adjacency(relay, self._neighbour_memory()) in (
                Adjacency.UNKNOWN,
                Adjacency.TWO_HOP,
            ):
                self.unheard.add(relay)
                changed = True
        if changed:
            self._save_neighbours()

    # -- from the radio ---------------------------------------------------------------

    def _on_radio_node(self, radio_name: str, node: int, _portnum: int = 0) -> None:
        """Another node was heard on the air: a handheld back after a while gets the active
        alerts it missed, by DM (relayd/core/catchup.py)."""
        if not self.config.catchup_after_s or node in self.peer_nodes.values() or node == BROADCAST_NUM:
            return  # off, or a relay's radio: relays are not responders
        now = self.clock()
        frames = self.late_joiners.heard(
            node, now, [f for f in self._active_frames.values() if now < f.expires_at_s]
        )
        scheduler = self.schedulers.get(radio_name)
        if not frames or scheduler is None:
            return
        for frame in frames:
            scheduler.push(
                QueueItem(
                    alert_id=b"cu" + hashlib.sha256(node.to_bytes(4, "big") + frame.alert_id).digest()[:8],
                    onair=frame.onair,
                    severity_rank=frame.severity.rank,
                    issued_at_s=int(now),
                    expires_at_s=frame.expires_at_s,
                    airtime_s=self._airtime(frame.onair),
                    channel_index=self.config.alerts_channel,
                    to_node=node,
                )
            )
        self.counters.catchup_dms += len(frames)
        # Never the node id at INFO (privacy): who was where, when, is not the log's business.
        log.info("a handheld back on air gets %d active alert(s) it missed, by DM", len(frames))
        self._wake.set()

    def _on_radio_text(self, rt: ReceivedText) -> None:
        if rt.backlog:
            self._on_backlog_text(rt)
            return
        self._last_heard_s = self.clock()
        self._on_radio_node(rt.radio, rt.from_node)
        self._note_heard_node(rt.from_node)
        try:
            text = rt.payload.decode("utf-8")
        except UnicodeDecodeError:
            self._drop(Verdict(DropReason.MALFORMED, "not UTF-8"), "rf")
            return
        if is_notice(text):
            # Another relay answered a forgery: if we were about to, stand down.
            self._notice_holds.pop(hashlib.sha256(text.encode()).digest()[:8], None)
            self.counters.ignored_text += 1
            return
        reply = self.replies.consider(
            rt.from_node,
            rt.packet_id,
            text,
            reply_id=rt.reply_id,
            emoji=rt.emoji,
            active=self._active_frames.values(),
            now_s=self.clock(),
            time_scale=self.time_scale,
        )
        if reply is not None:
            self._on_reply(rt, reply)
            return
        if self._is_report(rt, text):
            self._hold_report(rt, text)
            return
        verdict = self._verify(rt.payload, "rf")
        if verdict.alert is not None:
            self.replies.packets.note(rt.packet_id, verdict.alert.alert_id)  # for tapbacks
        if self._hold_for_reference(verdict, rt.payload, "rf"):
            return
        if verdict.ok:
            self.counters.heard += 1
            self._accept(verdict, "rf", queue=False)
            return
        if verdict.reason is DropReason.DUPLICATE and verdict.alert is not None:
            self._heard_copy(verdict.alert.alert_id)
        if rt.channel == self.config.alerts_channel and not rt.is_direct:
            self._answer_forgery(text, verdict.reason)
        if verdict.reason is DropReason.MALFORMED and not claims_to_be_an_alert(text):
            # Plain chat on the alerts channel: not an attempted alert.
            self.counters.ignored_text += 1
            return
        self._drop(verdict, "rf")

    def _on_backlog_text(self, rt: ReceivedText) -> None:
        """A text our radio heard while we were not connected (relayd/core/backlog.py). Not
        news to put on air (no notice, no ack), but a field report still reaches dispatchers,
        marked late, and what went on air is evidence: a neighbour's copy of an alert we hold
        means we stand down, and its radio is one we hear. Every text is counted."""
        self._note_heard_node(rt.from_node)
        outcome = self._backlog_news(rt)
        if outcome is None:
            verdict = self._verify(rt.payload, "rf")
            outcome = BacklogOutcome.ALERT if verdict.ok else BacklogOutcome.OTHER
            if verdict.ok:
                self.counters.heard += 1
                self._accept(verdict, "rf", queue=False)
            elif verdict.reason is DropReason.DUPLICATE and verdict.alert is not None:
                self._heard_copy(verdict.alert.alert_id, "rf, heard while the link was down")
                outcome = BacklogOutcome.ALERT
        self.counters.backlog[outcome.value] += 1
        log.info("heard before relayd connected: %s", outcome.value)  # never its text
        self._status_dirty.set()

    def _backlog_news(self, rt: ReceivedText) -> BacklogOutcome | None:
        try:
            text = rt.payload.decode("utf-8")
        except UnicodeDecodeError:
            return BacklogOutcome.OTHER
        outcome = backlog_route(
            is_answer=parse_reply(text, emoji=rt.emoji) is not None,
            reply_id=rt.reply_id,
            is_report=self._is_report(rt, text),
            heard_at_s=rt.rx_time_s,
            now_s=self.clock(),
        )
        if outcome is BacklogOutcome.LATE_REPORT:
            self._hold_report(rt, text)
        elif outcome is BacklogOutcome.LATE_ANSWER:
            reply = self.replies.consider(
                rt.from_node, rt.packet_id, text, reply_id=rt.reply_id, emoji=rt.emoji,
                active=self._active_frames.values(), now_s=self.clock(), time_scale=self.time_scale,
            )  # fmt: skip
            if reply is None or reply.wrapped is None:
                return BacklogOutcome.UNATTRIBUTED
            self._on_reply(rt, reply)
        return outcome

    def _is_report(self, rt: ReceivedText, text: str) -> bool:
        is_report_channel = (
            self.config.reports_channel is not None and rt.channel == self.config.reports_channel
        )
        return text.startswith(self.config.report_prefix) or (is_report_channel and "\n" not in text)

    def _answer_forgery(self, text: str, reason: DropReason | None) -> None:
        """Handhelds cannot verify: tell them a frame that looked like an alert was not one
        (relayd/core/notice.py has the bounds). One relay of an area sends it: each waits its
        suppression turn and stands down on hearing another's identical notice."""
        notice = self.notices.consider(text, reason, self.clock())
        if notice is None:
            return
        notice_id = hashlib.sha256(notice.encode()).digest()[:8]
        delay = self.suppressor.delay_s(notice_id, self._rank_peers())
        self._notice_holds[notice_id] = (self.clock() + delay, notice)
        log.info("forged frame heard on RF (%s): notice %s held for its turn", reason, notice_id.hex())
        self._wake.set()

    def _heard_copy(self, alert_id: bytes, source: str = "rf") -> None:
        """Another relay put this alert on air: stand down if we were going to."""
        self._heard_on_air[alert_id] = None
        self.sync.reconciler.heard(alert_id)
        if len(self._heard_on_air) > HEARD_ON_AIR_MAX:
            self._heard_on_air.popitem(last=False)
        held = self.suppressor.heard_on_rf(alert_id)
        queued = False
        for scheduler in self.schedulers.values():
            queued = scheduler.remove(alert_id) is not None or queued
        if held or queued:
            self.counters.suppressed += 1
            self._queued_rows.pop(alert_id, None)
            self._pending_radios.pop(alert_id, None)
            self._storage_call(lambda: self.storage.dequeue(alert_id, "suppressed"))
            self._event(EventKind.SUPPRESSED, alert_id.hex(), "rf")
            log.info("suppressed %s: %s", alert_id.hex(), source)
            self._status_dirty.set()

    def _on_reply(self, rt: ReceivedText, reply: ReplyOutcome) -> None:
        """A responder's answer: published like a report (one relay of an area), no ack."""
        if reply.drop is not None:
            self._drop(Verdict(reply.drop, reply.detail), "rf")
        elif (rt.from_node, rt.packet_id) not in self._reports_seen:
            self._hold_report(rt, rt.payload.decode("utf-8"), limited=False)

    def _hold_report(self, rt: ReceivedText, text: str, *, limited: bool = True) -> None:
        key = (rt.from_node, rt.packet_id)
        if key in self._reports_seen:
            return
        self._remember_report(key)
        if limited and not self._report_allowed(rt.from_node):
            self.counters.drops[DropReason.RATE_LIMITED.value] += 1
            log.info("report from a handheld over its rate limit: dropped")
            self._status_dirty.set()
            return
        delay = self.suppressor.delay_s(hashlib.sha256(repr(key).encode()).digest(), self._rank_peers())
        # Report slots are short: publishing is an MQTT message, not airtime.
        self._report_holds[key] = (self.clock() + delay / 4, rt)
        self._wake.set()

    def _report_allowed(self, node: int) -> bool:
        """Token bucket per handheld (REPORTS_PER_HANDHELD), in a bounded table."""
        now = self.clock()
        tokens, at = self._report_buckets.get(node) or (float(REPORTS_PER_HANDHELD.burst), now)
        refill_per_s = REPORTS_PER_HANDHELD.per_s * self.time_scale  # a person's pace, in mesh time
        tokens = min(float(REPORTS_PER_HANDHELD.burst), tokens + (now - at) * refill_per_s)
        allowed = tokens >= 1.0
        self._report_buckets.put(node, (tokens - 1.0 if allowed else tokens, now))
        return allowed

    def _remember_report(self, key: tuple[int, int]) -> None:
        """Handheld packets already reported (by us or a peer); bounded, oldest forgotten."""
        self._reports_seen.put(key, None)

    def _publish_report(self, rt: ReceivedText) -> None:
        reply = self.replies.take(rt.from_node, rt.packet_id)
        text = reply.text if reply is not None else rt.payload.decode("utf-8")
        if reply is None and text.startswith(self.config.report_prefix):
            text = text[len(self.config.report_prefix) :]
        text = _CONTROL_RE.sub(" ", text).strip() or "(empty report)"
        if rt.backlog:
            text = late_report_text(text, rt.rx_time_s)
        now = int(self.clock())
        seqs: list[int] = []
        if not self._storage_call(lambda: seqs.append(self.storage.next_relay_seq())):
            # No disk: a time-derived sequence keeps reports flowing (documented fallback).
            seqs.append(int(self.clock() * 10) % (2**24))
        seq = seqs[0]
        fields = AlertFields(
            kind=Kind.REPORT,
            severity=Severity.INFO,
            key_id=self.identity.key_id,
            issued_at_s=now,
            seq=seq % (2**24),
            expires_at_s=now + REPORT_LIFETIME_S,
            text=text.encode("utf-8")[:400].decode("utf-8", "ignore") or "(empty report)",
            origin_node=rt.from_node,
            ref=reply.ref if reply is not None else None,
        )
        alert = compose(fields, self.identity.sign).to_signed_alert()
        envelope = Envelope(
            relay=self.config.relay_id,
            via="rf",
            received_at_s=self.clock(),
            signer_name=self.identity.name,
            signer_role=self.identity.role.value,
        )
        doc = alert_to_dict(alert, envelope)
        doc["origin_packet"] = rt.packet_id
        # Peers that heard the same packet skip their copy, on the strength of this signed note.
        note = ReportNote(self.config.relay_id, alert.id_hex, rt.from_node, rt.packet_id)
        doc["note"] = self._seal(ControlKind.REPORT_NOTE, encode_report_note(note)).decode("utf-8")
        payload = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        self._storage_call(lambda: self.storage.add_pending(self.topics.reports, payload, False))
        self._publish_wake.set()
        self.counters.reports += 1
        self._event(EventKind.REPORT, alert.id_hex, "rf")
        # The handheld's node id is DEBUG only: at INFO a seized relay's log would list who reported.
        log.info("%s %s wrapped and queued for dispatchers", "reply" if reply else "report", alert.id_hex)
        log.debug("report %s came from %s", alert.id_hex, node_id(rt.from_node))
        if self.config.ack_text and reply is None and not rt.backlog:  # answers, late reports: no airtime
            ack = QueueItem(
                alert_id=b"ack" + rt.packet_id.to_bytes(4, "big") + rt.from_node.to_bytes(4, "big"),
                onair=self.config.ack_text,
                severity_rank=ACK_RANK,
                issued_at_s=now,
                expires_at_s=now + 600,
                airtime_s=self._airtime(self.config.ack_text),
                channel_index=rt.channel,
                to_node=rt.from_node,
            )
            scheduler = self.schedulers.get(rt.radio)
            if scheduler is not None:
                scheduler.push(ack)
                self._wake.set()

    # -- from MQTT --------------------------------------------------------------------

    async def _on_mqtt_connect(self) -> None:
        self.sync.on_connect()
        self._publish_wake.set()
        self._status_dirty.set()
        await self._publish_status()

    async def _on_mqtt(self, msg: Incoming) -> asyncio.Future[None] | None:
        """One message from the broker. Never raises: the link acknowledges it afterwards,
        or, for an alert not stored (a failed disk), once the returned future is done.

        Whatever cannot be used is counted as malformed under its topic kind and dropped;
        an exception escaping here would end the MQTT task (and the relay), and a retained
        or unacknowledged message would do it again on every restart.
        """
        kind = self.topics.kind_of(msg.topic)
        self._mqtt_alert = None
        try:
            self._dispatch_mqtt(kind, msg)
        except MalformedMessage as exc:
            self._malformed(kind, exc.detail)
        except Exception:  # the last fence: a bug here must not stop the relay
            log.warning("could not handle a message on %s", kind.value, exc_info=True)
            self.counters.handler_errors += 1
            self._malformed(kind, "handler error")
        return self.storage.unsafe.after(self._mqtt_alert)

    def _malformed(self, kind: TopicKind, detail: str) -> None:
        self.counters.malformed[kind.value] += 1
        log.debug("malformed message on %s: %s", kind.value, detail)
        self._status_dirty.set()

    def _dispatch_mqtt(self, kind: TopicKind, msg: Incoming) -> None:
        topic = msg.topic
        if (sync_relay := self.sync.relay_of(topic)) is not None:
            self.sync.handle(sync_relay, msg.payload)
            return
        if kind is TopicKind.TRUST:
            self._on_trust(msg.payload)
            return
        if kind in (TopicKind.STATUS, TopicKind.EVENTS):
            relay = self.topics.relay_of(topic)
            if relay == self.config.relay_id and kind is TopicKind.STATUS:
                self.sync.own_status(msg.retain and bool(msg.payload))
            if relay is None or relay == self.config.relay_id:
                return
            if kind is TopicKind.STATUS:
                self._on_peer_status(relay, msg.payload)
            else:
                self._on_peer_event(relay, msg.payload)
            return
        if kind is TopicKind.REPORTS:
            self._note_peer_report(msg.payload)
            return
        if kind not in (TopicKind.OUTBOX, TopicKind.ALERTS):
            return
        if kind is TopicKind.ALERTS and self._from_self(msg.payload):
            return
        try:
            onair = onair_from_message(msg.payload)
        except MalformedMessage as exc:
            self.counters.malformed[kind.value] += 1
            self._drop(Verdict(DropReason.MALFORMED, exc.detail), "mqtt")
            return
        verdict = self._verify(onair, "mqtt")
        self._mqtt_alert = verdict.alert.alert_id if verdict.alert is not None else None
        if self._hold_for_reference(verdict, onair, "mqtt"):
            return
        if not verdict.ok:
            if verdict.reason is DropReason.MALFORMED:
                self.counters.malformed[kind.value] += 1
            self._drop(verdict, "mqtt")
            return
        if verdict.alert is not None and verdict.alert.kind is Kind.REPORT:
            # Reports go to dispatchers only; never on air.
            self.counters.ignored_text += 1
            return
        self.counters.received += 1
        self._accept(verdict, "mqtt", queue=True)

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

    def _on_peer_status(self, relay: str, payload: bytes) -> None:
        """A peer's status: who is online (suppression order) and which radio is theirs.

        Only a status signed by that relay's own key counts; anyone else's claim about a
        relay (a fake peer, a fake "online", a radio node it does not own) is dropped.
        """
        if not payload:
            # An unsigned empty retained message proves nothing: anyone with write access to
            # the topic could send it. A decommissioned relay's will already said "offline".
            return
        body = self._open_control(ControlKind.STATUS, relay, payload)
        if body is None:
            return
        peer = parse_status(body)
        if peer.relay != relay:
            raise MalformedMessage("status names another relay than its topic")
        refused = self.peers.update(peer)
        if refused is not None:
            self._unverified(refused, relay, "peer status not taken")
            return
        self._note_peer_status(relay, peer)

    def _on_peer_event(self, relay: str, payload: bytes) -> None:
        """A neighbour relay handed an alert to its radio: its frame will reach our area.

        This is the fast path of suppression: the MQTT event arrives in milliseconds, while
        the RF copy may sit behind other traffic in the neighbour radio's queue. It counts
        only for peers whose radio ours has heard, so relays covering separate areas (on a
        bridged city broker) never silence each other. For another peer we take turns with
        (two hops away, heard us, or not classified yet), we wait for its RF copy instead,
        and learn from whether it comes.
        """
        body = self._open_control(ControlKind.EVENT, relay, payload)
        if body is None:
            return
        event = parse_event(body)
        if event.relay != relay:
            raise MalformedMessage("event names another relay than its topic")
        # The radio node comes from the peer's signed status (kept across restarts): after a
        # restart our session's backlog of events arrives before the retained statuses do.
        node = self.peer_nodes.get(relay)
        self._classify_awaited(self.clock())
        memory = self._neighbour_memory()
        honoured = honours_evidence(relay, memory)
        if not honoured and (
            self.rank_scope is RankScope.BROKER or adjacency(relay, memory) is Adjacency.APART
        ):
            log.debug("event from %s ignored: its radio is not an RF neighbour", relay)
            return
        own = {r.my_node for r in self.radios}
        if node in own or any(n == node for r, n in self.peer_nodes.items() if r != relay):
            # Two relays (or we and a relay) claim one radio: one of them lies (a seized key).
            # Standing down on either's word could silence an area; a duplicate cannot.
            self._unverified(ControlRejection.WRONG_RELAY, relay, "its radio node is claimed twice")
            return
        # "taken": its radio has the frame; "transmitted": the firmware confirmed it on air.
        if event.event not in (EventKind.TAKEN, EventKind.TRANSMITTED):
            return
        try:
            alert_id = bytes.fromhex(event.alert_id)
        except ValueError:
            return
        if honoured:
            self._heard_copy(alert_id, f"{relay} transmitted it")
        elif self.rank_scope is RankScope.RF:
            self._await_rf_copy(relay, alert_id)

    def _from_self(self, payload: bytes) -> bool:
        marker = f'"relay":"{self.config.relay_id}"'.encode()
        return marker in payload

    def _note_peer_report(self, payload: bytes) -> None:
        """Another relay published a report for a handheld packet we also heard: skip ours.

        Only on its signed note (relayd/core/control.py), and only if the message carries the
        report itself, signed by the same relay key, about the same handheld: a relay cannot
        make us swallow a report without publishing it to dispatchers.
        """
        doc = load_json_object(payload)
        if doc.get("relay") == self.config.relay_id:
            return
        note_text = doc.get("note")
        if note_text is None:
            if "origin_packet" in doc:  # an unsigned note (an old relay, or a forgery)
                self._unverified(ControlRejection.UNSIGNED, "reports", "unsigned report note")
            return
        if not isinstance(note_text, str):
            raise MalformedMessage("'note' must be a string")
        sealed = checked_str(note_text, "note", MAX_MESSAGE_BYTES).encode("utf-8")
        claimed = load_json_object(sealed).get("relay")
        if not isinstance(claimed, str):
            raise MalformedMessage("report note without a relay")
        body = self._open_control(ControlKind.REPORT_NOTE, claimed, sealed)
        if body is None:
            return
        note = parse_report_note(body)
        if note.relay != claimed:
            raise MalformedMessage("report note names another relay than its seal")
        try:
            frame = decode(onair_from_message(payload))
        except MalformedFrame as exc:
            raise MalformedMessage(f"report frame: {exc.detail}") from None
        verdict = self.verifier.authenticate(frame, self.clock())
        if (
            not verdict.ok
            or verdict.signer is None
            or verdict.signer.name != note.relay
            or frame.fields.kind is not Kind.REPORT
            or frame.alert_id.hex() != note.report_id
            or frame.fields.origin_node != note.origin_node
        ):
            self._unverified(
                ControlRejection.WRONG_RELAY, note.relay, "report note does not match its report"
            )
            return
        key = (note.origin_node, note.origin_packet)
        self._remember_report(key)
        self._report_holds.pop(key, None)

    def _on_trust(self, payload: bytes) -> None:
        if not payload:
            return
        try:
            signed = parse_signed_bundle(payload, pinned_root=self.pinned_root)
        except TrustBundleError as exc:
            self.counters.trust_refused += 1
            self.counters.drops[DropReason.MALFORMED.value] += 1
            self.counters.malformed[TopicKind.TRUST.value] += 1
            self._status_dirty.set()
            log.warning("refused trust bundle from MQTT: %s", exc)
            return
        self._install_bundle(signed, "mqtt")

    def _install_bundle(self, signed: SignedBundle, source: str) -> None:
        current = self.verifier.bundle
        why_not = should_replace(current, signed.bundle)
        if why_not is not None:
            if signed.bundle.version != current.version:
                self.counters.trust_refused += 1
                log.warning("refused trust bundle from %s: %s", source, why_not)
            return
        self.verifier.replace_bundle(signed.bundle)
        self.signed_bundle = signed
        self._reverify_queue()
        # A peer whose relay key was revoked (a seized relay) stops steering us at once.
        for relay in self.peers.retain(relay_ids(signed.bundle, self.clock())):
            self.peer_nodes.pop(relay, None)
            log.warning("peer %s forgotten: its key is no longer a trusted relay key", relay)
        self._scope_events()
        log.warning("trust bundle updated to version %d (from %s)", signed.bundle.version, source)
        with contextlib.suppress(OSError):
            save_bundle(signed, self.config.state_dir / "trust.json")
        self._status_dirty.set()

    def _check_bundle_file(self) -> None:
        mtime = self._file_mtime()
        if mtime == self._bundle_mtime:
            return
        self._bundle_mtime = mtime
        try:
            signed = load_bundle(self.config.bundle_path, pinned_root=self.pinned_root)
        except RelaydError as exc:
            self.counters.trust_refused += 1
            log.warning("refused changed trust bundle file: %s", exc)
            return
        self._install_bundle(signed, "file")

    # -- to the radio -----------------------------------------------------------------

    def _airtime(self, text: str) -> float:
        return (
            mesh_frame_time_on_air_s(len(text.encode("utf-8")), self.config.airtime.preset) / self.time_scale
        )

    def _enqueue(self, row: QueuedRow, packet_id: int | None = None) -> None:
        item = QueueItem(
            row.alert_id,
            row.onair,
            row.severity_rank,
            row.issued_at_s,
            row.expires_at_s,
            self._airtime(row.onair),
            self.config.alerts_channel,
        )
        self._pending_radios[row.alert_id] = {r.name for r in self.radios}
        if packet_id is not None:
            self._resend_ids[row.alert_id] = packet_id
        for scheduler in self.schedulers.values():
            scheduler.push(item)

    def _release_holds(self, now: float) -> None:
        for alert_id in self.suppressor.due(now):
            row = self._queued_rows.get(alert_id)
            if row is not None:
                self._enqueue(row)
        for key, (release, rt) in list(self._report_holds.items()):
            if release <= now:
                del self._report_holds[key]
                self._publish_report(rt)
        for notice_id, (release, notice) in list(self._notice_holds.items()):
            if release <= now:
                del self._notice_holds[notice_id]
                self._queue_notice(notice_id, notice, int(now))

    def _queue_notice(self, notice_id: bytes, notice: str, now_s: int) -> None:
        item = QueueItem(
            alert_id=b"notice" + notice_id,
            onair=notice,
            severity_rank=ACK_RANK,
            issued_at_s=now_s,
            expires_at_s=now_s + 600,
            airtime_s=self._airtime(notice),
            channel_index=self.config.alerts_channel,
            # Not an alert: sent as a plain broadcast, never counted as one transmitted.
            to_node=BROADCAST_NUM,
        )
        for scheduler in self.schedulers.values():
            scheduler.push(item)
        self.counters.forgery_notices += 1
        self._wake.set()

    def _expire(self, now: float) -> None:
        now = best_time_s(self.clock_assessment, now)
        for scheduler in self.schedulers.values():
            for item in scheduler.drop_expired(now):
                if item.to_node is None and self._queued_rows.pop(item.alert_id, None) is not None:
                    self._pending_radios.pop(item.alert_id, None)
                    self.counters.drops[DropReason.EXPIRED.value] += 1
                    self._storage_call(lambda a=item.alert_id: self.storage.dequeue(a, "expired"))  # type: ignore[misc]
                    self._event(EventKind.DROPPED, item.alert_id.hex(), "mqtt", DropReason.EXPIRED.value)
        for alert_id, row in list(self._queued_rows.items()):
            if now >= row.expires_at_s and alert_id in self.suppressor:
                self.suppressor.forget(alert_id)
                self._queued_rows.pop(alert_id, None)
                self.counters.drops[DropReason.EXPIRED.value] += 1
                self._storage_call(lambda a=alert_id: self.storage.dequeue(a, "expired"))  # type: ignore[misc]

    async def _transmit_loop(self, radio: RadioLink) -> None:
        scheduler = self.schedulers[radio.name]
        while True:
            now = self.clock()
            self._release_holds(now)
            self._expire(now)
            self._sweep_in_flight(now)
            action = scheduler.next_action(now)
            timeout: float | None = None
            paused_until = self._radio_paused_until.get(radio.name, 0.0)
            if now < paused_until:
                # The radio refused for a limit of its own (rate, duty cycle, full queue).
                action = Wait(paused_until - now, "radio") if isinstance(action, Ready) else action
            if isinstance(action, Ready):
                if not radio.connected:
                    if await radio.wait_connected(5.0):
                        # What queued up while the radio was away may have been covered by
                        # a neighbour meanwhile: give its event or RF copy a slot to land.
                        await asyncio.sleep(self.suppressor.slot_s)
                    continue
                if radio.tx_queue_free is not None and radio.tx_queue_free < RADIO_QUEUE_RESERVE:
                    # The radio's own queue is nearly full (a busy channel): a frame handed
                    # over now could be dropped by the firmware. Wait about one frame.
                    radio.tx_queue_free = None
                    await asyncio.sleep(action.item.airtime_s)
                    continue
                await self._transmit(radio, scheduler, action.item)
                continue
            if isinstance(action, Wait):
                timeout = action.seconds
            nxt = self.suppressor.next_release_s()
            if nxt is not None:
                timeout = min(timeout if timeout is not None else 3600.0, max(0.0, nxt - now))
            for release, _ in [*self._report_holds.values(), *self._notice_holds.values()]:
                timeout = min(timeout if timeout is not None else 3600.0, max(0.0, release - now))
            for flight in self._in_flight.values():
                timeout = min(timeout if timeout is not None else 3600.0, max(0.0, flight.deadline_s - now))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout if timeout is not None else 1.0)

    async def _transmit(self, radio: RadioLink, scheduler: AirtimeScheduler, item: QueueItem) -> None:
        is_ack = item.to_node is not None
        resend_id = self._resend_ids.pop(item.alert_id, None)
        first = not is_ack and resend_id is None and item.alert_id not in self._send_attempts
        packet_id = resend_id or (first_packet_id(item.alert_id) if first else radio.fresh_packet_id())
        if not is_ack and resend_id is None and not first:
            self._storage_call(lambda: self.storage.mark_transmitting(item.alert_id, packet_id))
        try:
            await radio.send_text(
                item.onair,
                to=item.to_node if item.to_node is not None else BROADCAST_NUM,
                channel=item.channel_index,
                packet_id=packet_id,
                # Broadcasts ask the firmware to tell us when they were on air; an ack DM
                # needs no receipt of its own.
                want_ack=not is_ack,
            )
        except RadioUnavailableError:
            # Not taken (link down, or the radio stopped answering). The write may have
            # reached the radio, so a broadcast keeps its packet id: if it did go out, the
            # mesh drops the resend as a duplicate.
            self.counters.send_retries += 1
            if not is_ack:
                self._resend_ids[item.alert_id] = packet_id
            return
        except PacketIgnoredError:
            # The radio already holds this id (an in-doubt resend it had taken before):
            # its ACK or MAX_RETRANSMIT for the id will say when it was on air.
            scheduler.pop(item.alert_id)
            self._track_in_flight(radio.name, packet_id, item, ignored=True)
            return
        except SendRejectedError as exc:
            self._on_refused(radio.name, item, exc.answer)
            return
        scheduler.pop(item.alert_id)
        scheduler.record_transmission(item.airtime_s, self.clock())
        self._track_in_flight(radio.name, packet_id, item)

    @property
    def in_flight(self) -> dict[int, InFlight]:
        """Frames taken by a radio and not yet confirmed on air (read-only view for metrics)."""
        return dict(self._in_flight)

    def _track_in_flight(
        self, radio_name: str, packet_id: int, item: QueueItem, *, ignored: bool = False
    ) -> None:
        """Taken by the radio, not yet known to be on air (a broadcast waits for its ACK;
        an ack DM only for a late refusal such as the text rate limit)."""
        wait_s = (ACK_WAIT_S if item.to_node is None else REFUSAL_GRACE_S) / self.time_scale
        self._in_flight[packet_id] = InFlight(radio_name, item, self.clock() + wait_s, ignored)
        if item.to_node is None:
            self.replies.packets.note(packet_id, item.alert_id)  # what a tapback will name
            # Peers stand down now rather than after the firmware's confirmation, which may
            # come several frames later on a busy channel; we own the frame until then.
            self._event(EventKind.TAKEN, item.alert_id.hex(), f"radio:{radio_name}")
        self._wake.set()

    def _on_radio_answer(self, radio_name: str, packet_id: int, answer: Answer) -> None:
        """Our radio's verdict on a frame it had taken: on air, or refused after all."""
        flight = self._in_flight.get(packet_id)
        if flight is None or flight.radio != radio_name:
            return
        del self._in_flight[packet_id]
        if answer.sent:
            self._on_air(flight, answer)
        else:
            self._on_refused(radio_name, flight.item, answer)

    def _on_air(self, flight: InFlight, answer: Answer) -> None:
        item = flight.item
        self._send_attempts.pop(item.alert_id, None)
        if item.to_node is not None:
            return
        self._leave_queue(item.alert_id, "transmitted", flight.radio)
        self.sync.reconciler.aired(item.alert_id)
        self.counters.transmitted += 1
        self._event(EventKind.TRANSMITTED, item.alert_id.hex(), "rf")
        self._status_dirty.set()
        log.info("transmitted %s on %s (%s)", item.alert_id.hex(), flight.radio, answer.name)

    def _on_refused(self, radio_name: str, item: QueueItem, answer: Answer) -> None:
        """The radio did not send a frame. Retry what can succeed later, a bounded number
        of times; give up at once on what cannot (too large, no such channel)."""
        now = self.clock()
        scheduler = self.schedulers.get(radio_name)
        attempts = self._send_attempts.get(item.alert_id, 0) + 1
        self._send_attempts[item.alert_id] = attempts
        self.counters.send_retries += 1
        retry = answer.disposition is Disposition.RETRY and attempts < MAX_SEND_ATTEMPTS
        if retry and scheduler is not None and now < item.expires_at_s:
            log.warning(
                "radio %s refused %s (%s); retrying in %.1f s",
                radio_name,
                item.alert_id.hex(),
                answer.name,
                answer.retry_after_s,
            )
            # The limits behind a retry (rate, duty cycle, full queue) are the radio's,
            # not the frame's: hold the whole radio back.
            pause_s = answer.retry_after_s / self.time_scale
            paused_until = max(self._radio_paused_until.get(radio_name, 0.0), now + pause_s)
            self._radio_paused_until[radio_name] = paused_until
            scheduler.remove(item.alert_id)
            scheduler.push(item)
            if item.to_node is None and item.alert_id not in self._queued_rows:
                row = QueuedRow(
                    item.alert_id,
                    item.onair,
                    item.severity_rank,
                    item.issued_at_s,
                    item.expires_at_s,
                    now,
                    None,
                )
                self._queued_rows[item.alert_id] = row
                self._storage_call(lambda: self.storage.record_requeue(row))
            self._pending_radios.setdefault(item.alert_id, set()).add(radio_name)
            self._wake.set()
            self._status_dirty.set()
            return
        # Final: not sent, and never will be by this radio.
        if scheduler is not None:
            scheduler.remove(item.alert_id)
        self._send_attempts.pop(item.alert_id, None)
        self.counters.drops[REFUSED_BY_RADIO] += 1
        log.warning(
            "radio %s refused %s (%s) after %d attempt(s); not sent",
            radio_name,
            item.alert_id.hex(),
            answer.name,
            attempts,
        )
        if item.to_node is None:
            self._leave_queue(item.alert_id, REFUSED_BY_RADIO, radio_name)
            self._event(EventKind.DROPPED, item.alert_id.hex(), f"radio:{radio_name}", REFUSED_BY_RADIO)
        self._status_dirty.set()

    def _sweep_in_flight(self, now: float) -> None:
        """Frames whose answer never came: an ack DM was taken (no refusal arrived); a
        broadcast is in doubt and goes again with the same packet id."""
        for packet_id, flight in list(self._in_flight.items()):
            if now < flight.deadline_s:
                continue
            del self._in_flight[packet_id]
            if flight.item.to_node is not None:
                continue
            if flight.ignored:
                # The radio has this id (it refuses it again) and its answer went to an
                # earlier connection. Sending it under a new id could show it twice on every
                # handheld; sending the same id is ignored. Leave it with the radio, and say
                # only that: handed over, not confirmed.
                self._finish_unconfirmed(flight)
                continue
            self._resend_in_doubt(packet_id, flight)

    def _leave_queue(self, alert_id: bytes, outcome: str, radio_name: str | None = None) -> None:
        """`radio_name` is done with a queued broadcast (None: every radio is). Once no radio
        has it pending it leaves the queue, in memory and on disk, with `outcome`. A radio's
        own verdict (on air, refused) is recorded even if the row already left memory."""
        remaining = self._pending_radios.get(alert_id, set())
        if radio_name is not None:
            remaining.discard(radio_name)
            if remaining:
                return
        self._pending_radios.pop(alert_id, None)
        was_queued = self._queued_rows.pop(alert_id, None) is not None
        if was_queued or radio_name is not None:
            self._storage_call(lambda: self.storage.dequeue(alert_id, outcome))

    def _finish_unconfirmed(self, flight: InFlight) -> None:
        item = flight.item
        self.counters.unconfirmed += 1
        self._leave_queue(item.alert_id, "unconfirmed")
        log.warning(
            "%s: radio %s had it from an earlier connection; never confirmed on air",
            item.alert_id.hex(),
            flight.radio,
        )

    def _on_radio_lost(self, radio: RadioLink) -> None:
        """The link dropped: what that radio held but had not confirmed is in doubt (a
        reboot empties its transmit queue). Resend with the same ids once it is back."""
        for packet_id, flight in list(self._in_flight.items()):
            if flight.radio != radio.name:
                continue
            del self._in_flight[packet_id]
            if flight.item.to_node is None:
                self._resend_in_doubt(packet_id, flight)
            else:
                self.schedulers[radio.name].push(flight.item)

    def _resend_in_doubt(self, packet_id: int, flight: InFlight) -> None:
        item = flight.item
        expired = self.clock() >= item.expires_at_s
        if expired or item.alert_id in self._heard_on_air:
            # Moot: too late, or another relay was heard putting it on air.
            self._leave_queue(item.alert_id, DropReason.EXPIRED.value if expired else "suppressed")
            return
        self._resend_ids[item.alert_id] = packet_id
        self.schedulers[flight.radio].push(item)
        self._wake.set()

    # -- MQTT publishing ----------------------------------------------------------------

    async def _publisher_loop(self) -> None:
        while True:
            self._publish_wake.clear()
            if self.mqtt.connected:
                try:
                    batch = self.storage.pending()
                except StorageError:
                    batch = []
                for item in batch:
                    ok = await self.mqtt.publish(item.topic, item.payload, retain=item.retain)
                    if not ok:
                        break
                    self.counters.published += 1
                    self._storage_call(lambda i=item.row_id: self.storage.remove_pending(i))  # type: ignore[misc]
                if batch and self.mqtt.connected:
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._publish_wake.wait(), 2.0)

    # -- status -------------------------------------------------------------------------

    def _on_link_state(self, link: object) -> None:
        if isinstance(link, RadioLink) and not link.connected:
            self._on_radio_lost(link)
        elif isinstance(link, RadioLink):
            self.sync.ask()
        said = self.readiness.update(all(r.connected for r in self.radios), self.mqtt.connected)
        if said is not None:
            log.info("%s", self._ready_line(again=said == "ready again"))
        self._status_dirty.set()

    def _ready_line(self, *, again: bool) -> str:
        radios = [RadioSummary(r.name, r.config.label, r.firmware_version, r.connected) for r in self.radios]
        broker = (
            f"{'mqtts' if self.config.mqtt.tls else 'mqtt'}://{self.config.mqtt.host}:{self.config.mqtt.port}"
        )
        queued = sum(len(s) for s in self.schedulers.values())
        return ready_line(
            self.config.relay_id, radios, broker, self.verifier.bundle.version, queued, again=again
        )

    def status(self) -> RelayStatus:
        now = self.clock()
        radio = self.radios[0]
        scheduler = self.schedulers[radio.name]
        return RelayStatus(
            relay=self.config.relay_id,
            state=RelayState.DRAINING if self._stopping else RelayState.ONLINE,
            ts_s=now,
            version=__version__,
            radio=radio.state,
            radio_device=radio.config.label,
            radio_node=node_id(radio.my_node) if radio.my_node is not None else "",
            broker=self.mqtt.state,
            queue_depth=sum(len(s) for s in self.schedulers.values()) + len(self.suppressor),
            airtime_last_hour_s=scheduler.airtime_used_s(now) * self.time_scale,
            airtime_budget_per_hour_s=scheduler.budget_s * self.time_scale,
            airtime_history_s=tuple(x * self.time_scale for x in scheduler.airtime_history_s(now)),
            transmitted=self.counters.transmitted,
            suppressed=self.counters.suppressed,
            heard=self.counters.heard,
            published=self.counters.published,
            drops=dict(self.counters.drops),
            malformed=dict(self.counters.malformed),
            unverified=dict(self.counters.unverified),
            backlog=dict(self.counters.backlog),
            last_heard_s=self._last_heard_s,
            clock_warning=self.clock_assessment.warning,
            storage_error=self.storage_error,
            trust_version=self.verifier.bundle.version,
            rf_heard=tuple(sorted({node_id(n) for r, n in self.peer_nodes.items() if n in self.heard_nodes})),
        )

    def _seal(self, kind: ControlKind, body: bytes) -> bytes:
        """Sign a status, event or report note as this relay (relayd/core/control.py)."""
        return seal(kind, self.config.relay_id, body, self.identity.key_id, self.identity.sign)

    def _offline_status_payload(self) -> bytes:
        """The signed "offline" status: the last will (signed at each connect) and the final word."""
        status = replace(offline_status(self.config.relay_id), ts_s=self.clock())
        return self._seal(ControlKind.STATUS, encode_status(status))

    async def _publish_status(self) -> None:
        await self.mqtt.publish(
            self.topics.status(self.config.relay_id),
            self._seal(ControlKind.STATUS, encode_status(self.status())),
            retain=True,
        )

    async def _status_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_dirty.wait(), self.config.status_interval_s)
            self._status_dirty.clear()
            if self.mqtt.connected:
                await self._publish_status()
            await asyncio.sleep(STATUS_MIN_INTERVAL_S)

    async def _housekeeping_loop(self) -> None:
        watchdog = watchdog_interval_s()
        last_purge = 0.0
        while True:
            now = self.clock()
            self._observe_clock()
            assessment = self._assess_clock()
            if assessment.warning != self.clock_assessment.warning:
                if assessment.warning:
                    log.warning("clock: %s", assessment.warning)
                self._status_dirty.set()
            self.clock_assessment = assessment
            self._check_bundle_file()
            self._expire_reference_holds(now)
            self._expire_active(best_time_s(self.clock_assessment, now))
            self._classify_awaited(now)
            if now - last_purge > 60:
                last_purge = now
                self._purge(now)
            if watchdog is not None:
                sd_notify("WATCHDOG=1")
            await asyncio.sleep(min(HOUSEKEEPING_INTERVAL_S, watchdog or HOUSEKEEPING_INTERVAL_S))

    def _purge(self, now: float) -> None:
        horizon_s = 2 * self.verifier.dedup.generation_s
        self._storage_call(lambda: self.storage.purge(now, self.config.history_retention_s, horizon_s))

    def _expire_active(self, now: float) -> None:
        try:
            active = self.storage.active_alerts()
        except StorageError:
            return
        for alert_id, expires_at in active:
            if now >= expires_at:
                self._active_refs.pop(alert_id, None)

                def clear(a: bytes = alert_id) -> None:
                    self.storage.add_pending(self.topics.active(a.hex()), b"", True)
                    self.storage.deactivate(a)

                self._storage_call(clear)
                self._publish_wake.set()

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        metrics_server: asyncio.Server | None = None
        if self.config.metrics_port is not None and self.config.metrics_host is not None:
            from relayd.daemon.metrics import start_metrics  # noqa: PLC0415

            metrics_server = await start_metrics(self, self.config.metrics_host, self.config.metrics_port)
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self.mqtt.run(), name="mqtt"),
                    tg.create_task(self._publisher_loop(), name="publisher"),
                    tg.create_task(self._status_loop(), name="status"),
                    tg.create_task(self._housekeeping_loop(), name="housekeeping"),
                ]
                for radio in self.radios:
                    tasks.append(tg.create_task(radio.run(), name=f"radio-{radio.name}"))
                    tasks.append(tg.create_task(self._transmit_loop(radio), name=f"transmit-{radio.name}"))
                sd_notify(f"READY=1\nSTATUS=relay {self.config.relay_id} running")
                await stop.wait()
                await self._shutdown()
                for task in tasks:
                    task.cancel()
        finally:
            if metrics_server is not None:
                metrics_server.close()
            self.storage.close()

    async def _shutdown(self) -> None:
        """Drain: publish what is pending (bounded), then a final offline status."""
        self._stopping = True
        sd_notify("STOPPING=1")
        deadline = time.monotonic() + 3.0
        while self.mqtt.connected and time.monotonic() < deadline:
            try:
                if not self.storage.pending(1):
                    break
            except StorageError:
                break
            self._publish_wake.set()
            await asyncio.sleep(0.05)
        if self.mqtt.connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.mqtt.publish(
                        self.topics.status(self.config.relay_id),
                        self._offline_status_payload(),
                        retain=True,
                    ),
                    1.0,
                )
            await self.mqtt.disconnect()


from relayd.daemon.mqtt import Incoming  # noqa: E402 - after Relay to keep aiomqtt import lazy for typing
