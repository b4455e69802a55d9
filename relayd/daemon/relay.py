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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from relayd import BUILD_EPOCH_S, __version__
from relayd.core.airtime import MAX_DATA_PAYLOAD_BYTES, mesh_frame_time_on_air_s
from relayd.core.clockrule import ClockAssessment, assess_clock, verification_time_s
from relayd.core.codec import compose
from relayd.core.dedup import DedupSet
from relayd.core.jsonform import Envelope, MalformedMessage, alert_to_dict, encode_alert, onair_from_message
from relayd.core.model import AlertFields, DropReason, Kind, Severity, SignedAlert
from relayd.core.ratelimit import RateLimit, TokenBuckets
from relayd.core.replay import ReplayWindows
from relayd.core.scheduler import AirtimeScheduler, QueueItem, Ready, Wait
from relayd.core.status import (
    EventKind,
    RelayEvent,
    RelayState,
    RelayStatus,
    encode_event,
    encode_status,
    offline_status,
    parse_event,
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
from relayd.core.topics import Topics
from relayd.core.trust import SignedBundle, TrustBundleError, parse_signed_bundle, should_replace
from relayd.core.verify import Verdict, Verifier, VerifyPolicy
from relayd.daemon.config import Config
from relayd.daemon.notify import sd_notify, watchdog_interval_s
from relayd.daemon.radio import RadioLink, RadioUnavailableError, ReceivedText, SendRejectedError
from relayd.daemon.storage import QueuedRow, Storage, StorageError
from relayd.errors import RelaydError
from relayd.keystore import load_private_key, load_public_key
from relayd.meshapi.packets import BROADCAST_NUM, node_id
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
SENT_RECENTLY_MAX = 256
_UNAUTHENTICATED = frozenset(
    {DropReason.MALFORMED, DropReason.BAD_SIGNATURE, DropReason.UNKNOWN_KEY, DropReason.DUPLICATE}
)
_EVENT_RATE = RateLimit(burst=50, per_s=10.0)
# An MQTT alert issued longer ago than this is treated as backlog, not fresh news.
STALE_AFTER_S = 2.0
# Keep this many slots of the radio's transmit queue (firmware MAX_TX_QUEUE = 16) free for
# the mesh's own rebroadcasts.
RADIO_QUEUE_RESERVE = 4
ACK_RANK = 1  # acks go after urgent alerts, before the rest
HOUSEKEEPING_INTERVAL_S = 5.0
STATUS_MIN_INTERVAL_S = 1.0
# A handheld's free text may hold characters the signed form forbids.
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


@dataclass
class Counters:
    drops: Counter[str] = field(default_factory=Counter)
    heard: int = 0
    received: int = 0
    transmitted: int = 0
    suppressed: int = 0
    published: int = 0
    reports: int = 0
    ignored_text: int = 0
    trust_refused: int = 0
    storage_errors: int = 0
    send_retries: int = 0


class Relay:
    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.topics = Topics(config.mqtt.topic_root)
        self.identity = load_private_key(config.key_path)
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
        policy = VerifyPolicy(clock_skew_s=config.clock_skew_s)
        policy.rate_limits.update(dict(config.rate_limits))
        self.verifier = Verifier(self.signed_bundle.bundle, policy, dedup=dedup, replay=replay)
        self.newest_issued_s = self.storage.newest_issued_s()
        self.clock_assessment = self._assess_clock()
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
        self.rank_scope = RankScope(config.suppression.rank_among)
        # How long the RF copy of a neighbour's frame may take through one ROUTER_LATE
        # rebroadcast: the wait for an unclassified peer's copy.
        self._relayed_copy_s = relayed_copy_s(config.airtime.preset, max_airtime_s * time_scale) / time_scale
        self.peers: dict[str, RelayState] = {}
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
                on_send_error=functools.partial(self._on_send_error, rc.name),
            )
            for rc in config.radios
        ]
        # Recently handed-over frames by packet id, in case the radio reports them unsent.
        self._sent_recently: dict[int, tuple[str, QueueItem]] = {}
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
        self._reports_seen: dict[tuple[int, int], None] = {}
        self._drops_since_log: Counter[str] = Counter()
        self._drops_logged_at = 0.0
        self._event_budget = TokenBuckets()
        self._wake = asyncio.Event()
        self._publish_wake = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self._last_heard_s: float | None = None
        self._stopping = False
        self._bundle_mtime = self._file_mtime()
        # Write-ahead packet ids of frames that may have gone out just before a crash.
        self._resend_ids: dict[bytes, int] = {}
        self._restore_queue()
        from relayd.daemon.mqtt import MqttLink  # noqa: PLC0415 - keep aiomqtt out of `relayd check`

        self.mqtt = MqttLink(
            config.mqtt,
            subscriptions=[
                self.topics.outbox,
                self.topics.alerts,
                self.topics.reports,
                self.topics.trust,
                self.topics.status_wildcard,
                self.topics.events_wildcard,
            ],
            handler=self._on_mqtt,
            will_topic=self.topics.status(config.relay_id),
            will_payload=encode_status(offline_status(config.relay_id)),
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
        for row in self.storage.queued():
            if now >= row.expires_at_s:
                self._storage_call(lambda a=row.alert_id: self.storage.dequeue(a, "expired"))  # type: ignore[misc]
                continue
            self._queued_rows[row.alert_id] = row
            if row.packet_id is not None:
                # In doubt: it may have gone out just before a crash. Resend with the same
                # packet id; the mesh drops it as a duplicate if it did.
                self._enqueue(row, row.packet_id)
            else:
                # While we were down a neighbour probably covered it; its "transmitted" event
                # waits in our persistent MQTT session. Hold a little longer than a fresh
                # alert so that event (or the RF copy) arrives before we decide.
                peers = rank_peers(
                    self.config.relay_id, self.peer_nodes, self._neighbour_memory(), self.rank_scope
                )
                delay = self.suppressor.delay_s(row.alert_id, peers) + 2 * self.suppressor.slot_s
                self.suppressor.restore(row.alert_id, max(row.release_at_s, now + delay), now)

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
            self.peer_nodes = {str(k): int(v) for k, v in doc.get("peers", {}).items()}
            self.heard_nodes = {int(n) for n in doc.get("heard", [])}
            self.heard_by = {str(r) for r in doc.get("heard_by", [])}
            self.unheard = {str(r) for r in doc.get("unheard", [])}

    def _save_neighbours(self) -> None:
        doc = json.dumps(
            {
                "peers": self.peer_nodes,
                "heard": sorted(self.heard_nodes)[-256:],
                "heard_by": sorted(self.heard_by),
                "unheard": sorted(self.unheard),
            }
        )
        self._storage_call(lambda: self.storage.set_meta("neighbours", doc))

    def _neighbour_memory(self) -> NeighbourMemory:
        return NeighbourMemory(
            peer_nodes=self.peer_nodes,
            heard_nodes=frozenset(self.heard_nodes),
            heard_by=frozenset(self.heard_by),
            unheard=frozenset(self.unheard),
            peer_heard=self.peer_heard,
        )

    def _assess_clock(self) -> ClockAssessment:
        return assess_clock(self.clock(), BUILD_EPOCH_S, self.newest_issued_s, self.config.clock_skew_s)

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
        if self.storage_error is not None:
            self.storage_error = None
            self._status_dirty.set()
        return True

    def _drop(self, verdict: Verdict, via: str) -> None:
        reason = verdict.reason or DropReason.MALFORMED
        self.counters.drops[reason.value] += 1
        alert_id = verdict.alert.id_hex if verdict.alert else ""
        # Never the text at INFO (privacy). Per-frame lines are DEBUG; INFO gets a summary
        # at most every DROP_LOG_INTERVAL_S, so a flood of forgeries cannot flood the log.
        log.debug("dropped %s from %s: %s (%s)", alert_id or "frame", via, reason.value, verdict.detail)
        self._drops_since_log[reason.value] += 1
        now = self.clock()
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
            task = asyncio.get_running_loop().create_task(
                self.mqtt.publish(self.topics.events(self.config.relay_id), encode_event(event))
            )
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def _verify(self, payload: bytes | str, via: str) -> Verdict:
        now = self.clock()

        def at(issued_at_s: int) -> float:
            return verification_time_s(self.clock_assessment, now, issued_at_s, self.config.clock_skew_s)

        return self.verifier.verify(payload, now, at=at)

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
        if f.kind in (Kind.ALERT, Kind.UPDATE, Kind.TEST):
            self._active_refs[alert.alert_id] = f.ref
        elif f.kind in (Kind.CANCEL, Kind.ALLCLEAR) and f.ref is not None:
            for alert_id in self._chain_of(f.ref):
                self._active_refs.pop(alert_id, None)
                if f.kind is Kind.CANCEL:
                    self._cancel_queued(alert_id)
        self.newest_issued_s = max(self.newest_issued_s or 0, f.issued_at_s)
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
                newest_issued_s=f.issued_at_s,
                publishes=publishes,
            )
        )
        if self.storage_error is not None:
            # The state disk failed: still deliver (in memory), and say so in status.
            for topic, payload, retain in publishes:
                asyncio.get_running_loop().create_task(self.mqtt.publish(topic, payload, retain=retain))
        self._publish_wake.set()
        self._wake.set()
        self._status_dirty.set()
        self._event(EventKind.HEARD if via == "rf" else EventKind.RECEIVED, alert.id_hex, via)
        if row is not None:
            self._event(EventKind.QUEUED, alert.id_hex, via)
        log.info("accepted %s %s %s via %s", f.kind.value, f.severity.value, alert.id_hex, via)

    def _cancel_queued(self, alert_id: bytes) -> None:
        self.suppressor.forget(alert_id)
        for scheduler in self.schedulers.values():
            scheduler.remove(alert_id)
        if self._queued_rows.pop(alert_id, None) is not None:
            self._pending_radios.pop(alert_id, None)
            self._storage_call(lambda: self.storage.dequeue(alert_id, "cancelled"))

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

    def _on_radio_text(self, rt: ReceivedText) -> None:
        self._last_heard_s = self.clock()
        self._note_heard_node(rt.from_node)
        try:
            text = rt.payload.decode("utf-8")
        except UnicodeDecodeError:
            self._drop(Verdict(DropReason.MALFORMED, "not UTF-8"), "rf")
            return
        is_report_channel = (
            self.config.reports_channel is not None and rt.channel == self.config.reports_channel
        )
        if text.startswith(self.config.report_prefix) or (is_report_channel and "\n" not in text):
            self._hold_report(rt, text)
            return
        verdict = self._verify(rt.payload, "rf")
        if verdict.ok:
            self.counters.heard += 1
            self._accept(verdict, "rf", queue=False)
            return
        if verdict.reason is DropReason.DUPLICATE and verdict.alert is not None:
            self._heard_copy(verdict.alert.alert_id)
        if verdict.reason is DropReason.MALFORMED and "\n" not in text:
            # Plain chat on the alerts channel: not an attempted alert.
            self.counters.ignored_text += 1
            return
        self._drop(verdict, "rf")

    def _heard_copy(self, alert_id: bytes, source: str = "rf") -> None:
        """Another relay put this alert on air: stand down if we were going to."""
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

    def _hold_report(self, rt: ReceivedText, text: str) -> None:
        key = (rt.from_node, rt.packet_id)
        if key in self._reports_seen:
            return
        self._remember_report(key)
        delay = self.suppressor.delay_s(hashlib.sha256(repr(key).encode()).digest(), self._rank_peers())
        # Report slots are short: publishing is an MQTT message, not airtime.
        self._report_holds[key] = (self.clock() + delay / 4, rt)
        self._wake.set()

    def _remember_report(self, key: tuple[int, int]) -> None:
        """Handheld packets already reported (by us or a peer); bounded, oldest forgotten."""
        self._reports_seen[key] = None
        if len(self._reports_seen) > REPORTS_SEEN_MAX:
            del self._reports_seen[next(iter(self._reports_seen))]

    def _publish_report(self, rt: ReceivedText) -> None:
        text = rt.payload.decode("utf-8")
        if text.startswith(self.config.report_prefix):
            text = text[len(self.config.report_prefix) :]
        text = _CONTROL_RE.sub(" ", text).strip() or "(empty report)"
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
        payload = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        self._storage_call(lambda: self.storage.add_pending(self.topics.reports, payload, False))
        if self.storage_error is not None:
            asyncio.get_running_loop().create_task(self.mqtt.publish(self.topics.reports, payload))
        self._publish_wake.set()
        self.counters.reports += 1
        self._event(EventKind.REPORT, alert.id_hex, "rf")
        log.info("report %s from %s wrapped and queued for dispatchers", alert.id_hex, node_id(rt.from_node))
        if self.config.ack_text:
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
        self._publish_wake.set()
        self._status_dirty.set()
        await self._publish_status()

    async def _on_mqtt(self, msg: Incoming) -> None:
        topic = msg.topic
        if topic == self.topics.trust:
            self._on_trust(msg.payload)
            return
        relay = self.topics.relay_of(topic)
        if relay is not None:
            if relay != self.config.relay_id and topic == self.topics.status(relay):
                try:
                    peer = parse_status(msg.payload)
                    self.peers[relay] = peer.state
                    self._note_peer_status(relay, peer)
                except MalformedMessage:
                    self.peers.pop(relay, None)
                    if msg.payload:
                        self.counters.drops[DropReason.MALFORMED.value] += 1
            if relay != self.config.relay_id and topic == self.topics.events(relay):
                self._on_peer_event(relay, msg.payload)
            return
        if topic == self.topics.reports:
            self._note_peer_report(msg.payload)
            return
        if topic not in (self.topics.outbox, self.topics.alerts):
            return
        if topic == self.topics.alerts and self._from_self(msg.payload):
            return
        try:
            onair = onair_from_message(msg.payload)
        except MalformedMessage as exc:
            self._drop(Verdict(DropReason.MALFORMED, exc.detail), "mqtt")
            return
        verdict = self._verify(onair, "mqtt")
        if not verdict.ok:
            self._drop(verdict, "mqtt")
            return
        if verdict.alert is not None and verdict.alert.kind is Kind.REPORT:
            # Reports go to dispatchers only; never on air.
            self.counters.ignored_text += 1
            return
        self.counters.received += 1
        self._accept(verdict, "mqtt", queue=True)

    def _on_peer_event(self, relay: str, payload: bytes) -> None:
        """A neighbour relay handed an alert to its radio: its frame will reach our area.

        This is the fast path of suppression: the MQTT event arrives in milliseconds, while
        the RF copy may sit behind other traffic in the neighbour radio's queue. It counts
        only for peers whose radio ours has heard, so relays covering separate areas (on a
        bridged city broker) never silence each other. For another peer we take turns with
        (two hops away, heard us, or not classified yet), we wait for its RF copy instead,
        and learn from whether it comes.
        """
        self._classify_awaited(self.clock())
        memory = self._neighbour_memory()
        honoured = honours_evidence(relay, memory)
        if not honoured and (
            self.rank_scope is RankScope.BROKER or adjacency(relay, memory) is Adjacency.APART
        ):
            log.debug("event from %s ignored: its radio is not an RF neighbour", relay)
            return
        try:
            event = parse_event(payload)
        except MalformedMessage:
            self.counters.drops[DropReason.MALFORMED.value] += 1
            return
        if event.event is not EventKind.TRANSMITTED:
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
        """Another relay published a report for a handheld packet we also heard: skip ours."""
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            self.counters.drops[DropReason.MALFORMED.value] += 1
            self._status_dirty.set()
            return
        if doc.get("relay") == self.config.relay_id:
            return
        origin = doc.get("origin_node")
        packet = doc.get("origin_packet")
        if isinstance(origin, str) and origin.startswith("!") and isinstance(packet, int):
            with contextlib.suppress(ValueError):
                key = (int(origin[1:], 16), packet)
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

    def _expire(self, now: float) -> None:
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
            action = scheduler.next_action(now)
            timeout: float | None = None
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
            for release, _ in self._report_holds.values():
                timeout = min(timeout if timeout is not None else 3600.0, max(0.0, release - now))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout if timeout is not None else 1.0)

    async def _transmit(self, radio: RadioLink, scheduler: AirtimeScheduler, item: QueueItem) -> None:
        is_ack = item.to_node is not None
        packet_id = self._resend_ids.pop(item.alert_id, None) or radio.fresh_packet_id()
        if not is_ack:
            self._storage_call(lambda: self.storage.mark_transmitting(item.alert_id, packet_id))
        try:
            await radio.send_text(
                item.onair,
                to=item.to_node if item.to_node is not None else BROADCAST_NUM,
                channel=item.channel_index,
                packet_id=packet_id,
            )
        except RadioUnavailableError:
            # Not sent: keep it queued; the retry will use a fresh packet id.
            self.counters.send_retries += 1
            return
        except SendRejectedError as exc:
            self.counters.send_retries += 1
            log.warning("%s; will retry", exc)
            scheduler.record_transmission(0.0, self.clock())
            return
        scheduler.pop(item.alert_id)
        scheduler.record_transmission(item.airtime_s, self.clock())
        self._sent_recently[packet_id] = (radio.name, item)
        if len(self._sent_recently) > SENT_RECENTLY_MAX:
            del self._sent_recently[next(iter(self._sent_recently))]
        if is_ack:
            return
        remaining = self._pending_radios.get(item.alert_id, set())
        remaining.discard(radio.name)
        if not remaining:
            self._pending_radios.pop(item.alert_id, None)
            self._queued_rows.pop(item.alert_id, None)
            self._storage_call(lambda: self.storage.dequeue(item.alert_id, "transmitted"))
        self.counters.transmitted += 1
        self._event(EventKind.TRANSMITTED, item.alert_id.hex(), "rf")
        self._status_dirty.set()
        log.info("transmitted %s on %s", item.alert_id.hex(), radio.name)

    def _on_send_error(self, radio_name: str, packet_id: int, error: int) -> None:
        """The radio refused a frame it had queued (rate limit, duty cycle): send it again."""
        sent = self._sent_recently.pop(packet_id, None)
        if sent is None:
            return
        name, item = sent
        scheduler = self.schedulers.get(name)
        if scheduler is None or self.clock() >= item.expires_at_s:
            return
        log.warning(
            "radio %s refused %s (routing error %d); sending it again", radio_name, item.alert_id.hex(), error
        )
        self.counters.send_retries += 1
        if item.to_node is None:
            self.counters.transmitted = max(0, self.counters.transmitted - 1)
            row = QueuedRow(
                item.alert_id,
                item.onair,
                item.severity_rank,
                item.issued_at_s,
                item.expires_at_s,
                self.clock(),
                None,
            )
            self._queued_rows[item.alert_id] = row
            self._pending_radios.setdefault(item.alert_id, set()).add(name)
            self._storage_call(lambda: self.storage.record_requeue(row))
        scheduler.push(item)
        self._wake.set()
        self._status_dirty.set()

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

    def _on_link_state(self, _link: object) -> None:
        self._status_dirty.set()

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
            last_heard_s=self._last_heard_s,
            clock_warning=self.clock_assessment.warning,
            storage_error=self.storage_error,
            trust_version=self.verifier.bundle.version,
            rf_heard=tuple(sorted({node_id(n) for r, n in self.peer_nodes.items() if n in self.heard_nodes})),
        )

    async def _publish_status(self) -> None:
        await self.mqtt.publish(
            self.topics.status(self.config.relay_id), encode_status(self.status()), retain=True
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
            assessment = self._assess_clock()
            if assessment.warning != self.clock_assessment.warning:
                if assessment.warning:
                    log.warning("clock: %s", assessment.warning)
                self._status_dirty.set()
            self.clock_assessment = assessment
            self._check_bundle_file()
            self._expire_active(now)
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
                        encode_status(offline_status(self.config.relay_id)),
                        retain=True,
                    ),
                    1.0,
                )
            await self.mqtt.disconnect()


from relayd.daemon.mqtt import Incoming  # noqa: E402 - after Relay to keep aiomqtt import lazy for typing
