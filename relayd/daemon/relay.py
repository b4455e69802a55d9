"""The relay: wires the radio and MQTT links to the pure core.

    radio --frames--> decode -> verify -> dedup -> route --> MQTT (alerts, reports)
    MQTT (outbox, other relays' alerts) -> decode -> verify -> dedup -> hold -> schedule --> radio
    handheld "!r ..." -> wrap as a relay-signed report --> MQTT reports (+ DM ack to the sender)

Every decision is made by the core (relayd/core/verify.py, route.py, outbound.py); the
relay only moves bytes and persists state. This module builds it (no I/O until `open`),
runs every task in one TaskGroup (`serve`) and stops it within one deadline; the handlers
it inherits are layered by concern (relayd/daemon/relaybase.py says how).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from relayd import __version__
from relayd.core.airtime import MAX_DATA_PAYLOAD_BYTES, mesh_frame_time_on_air_s
from relayd.core.authority import ReferenceHold
from relayd.core.catchup import BOOT_ANNOUNCE_S, CatchupPolicy, LateJoiners
from relayd.core.clockrule import (
    StepDetector,
    best_time_s,
)
from relayd.core.control import (
    ControlKind,
    PeerTable,
)
from relayd.core.dedup import BoundedMap, DedupSet
from relayd.core.earshot import Earshot
from relayd.core.model import Role
from relayd.core.neighbours import Neighbours
from relayd.core.notice import ForgeryNotices
from relayd.core.outbound import Outbound
from relayd.core.ratelimit import TokenBuckets
from relayd.core.readiness import RadioSummary, Readiness, ready_line
from relayd.core.repeat import LateRepeats
from relayd.core.replay import ReplayWindows
from relayd.core.replies import ReplyDesk
from relayd.core.scheduler import AirtimeScheduler
from relayd.core.status import (
    RelayState,
    RelayStatus,
    encode_status,
    offline_status,
)
from relayd.core.suppression import (
    RankScope,
    Suppressor,
    relayed_copy_s,
)
from relayd.core.topics import Topics
from relayd.core.verify import Verifier, VerifyPolicy
from relayd.daemon.broker_side import BrokerSide
from relayd.daemon.clocksync import kernel_clock_synchronised
from relayd.daemon.config import Config
from relayd.daemon.notify import sd_notify, watchdog_interval_s
from relayd.daemon.radio import (
    RadioLink,
)
from relayd.daemon.relaybase import (
    ACK_WAIT_S,
    HOUSEKEEPING_INTERVAL_S,
    REFUSAL_GRACE_S,
    REFUSED_BY_RADIO,
    REPORT_SENDERS_MAX,
    REPORTS_SEEN_MAX,
    SLOT_FRAMES,
    STATUS_MIN_INTERVAL_S,
    Counters,
)
from relayd.daemon.storage import Storage, StorageError
from relayd.daemon.sync import SyncLink
from relayd.keystore import load_private_key, load_public_key
from relayd.meshapi.packets import node_id

if TYPE_CHECKING:
    from relayd.daemon.mqtt import MqttLink

log = logging.getLogger("relayd.relay")

OUTGOING_MAX = 1024
# How long a transmitter heard counts as in earshot (relayd/core/earshot.py): longer than a
# handheld's quiet between its own broadcasts (device telemetry every 30 min by default),
# short enough to follow one that moved away.
EARSHOT_WINDOW_S = 3600.0
# Stopping publishes what is pending and a final offline status, then gives up: systemd's
# stop timeout (90 s) is far off, and a broker that does not answer must not hold us.
SHUTDOWN_DEADLINE_S = 4.0

# ACK_WAIT_S: read when a relay is built (relayd-bench latency shortens it for a run).
__all__ = ["ACK_WAIT_S", "REFUSED_BY_RADIO", "Counters", "Relay"]


class Relay(BrokerSide):
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        clock_synced: Callable[[], bool | None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        radio_link: type[RadioLink] = RadioLink,
        mqtt_link: type[MqttLink] | None = None,
    ) -> None:
        """Wiring only: no file, database or socket is touched until `open` (or entering
        `async with`). `radio_link` and `mqtt_link` are the link classes (a test passes
        fakes with the same constructor)."""
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
        self.counters = Counters()
        self.storage_error = None
        self._rng = random.Random()
        self._opened = False
        self._ref_hold = ReferenceHold()
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
        # Which relays share our air (relayd/core/neighbours.py), kept across restarts.
        self.neighbours = Neighbours()
        self.radios = [
            radio_link(
                rc,
                self._on_radio_text,
                self._on_link_state,
                on_answer=functools.partial(self._on_radio_answer, rc.name),
                clock=self.clock,
                clock_trusted=lambda: self.clock_assessment.warning is None,
                on_node=functools.partial(self._on_node_announced, rc.name),
                on_heard=functools.partial(self._on_heard, rc.name),
                should_announce=functools.partial(self._should_announce, rc.name),
            )
            for rc in config.radios
        ]
        schedulers = {
            r.name: AirtimeScheduler(
                duty_cycle=config.airtime.duty_cycle,
                window_s=config.airtime.window_s / time_scale,
                min_interval_s=config.airtime.min_text_interval_s / time_scale,
            )
            for r in self.radios
        }
        # Every alert's way to the air: holds, radio queues, frames in flight, outcomes.
        self.outbound = Outbound(
            self.suppressor,
            schedulers,
            ack_wait_s=ACK_WAIT_S / time_scale,
            refusal_grace_s=REFUSAL_GRACE_S / time_scale,
            airtime_s=self._airtime,
            channel=config.alerts_channel,
        )
        self.schedulers = schedulers
        self._active_refs = {}
        self._report_holds = {}
        self._report_buckets = BoundedMap(REPORT_SENDERS_MAX)
        # Responders' answers to alerts (relayd/core/replies.py): wrapped like reports.
        self.replies = ReplyDesk()
        self.readiness = Readiness()  # the operator's "ready" line (relayd/core/readiness.py)
        # Active alerts a late-joining handheld is sent by DM (relayd/core/catchup.py).
        self.late_joiners = LateJoiners(
            self.clock(),
            CatchupPolicy(
                absent_s=config.catchup_after_s / time_scale,
                boot_announce_s=BOOT_ANNOUNCE_S / time_scale,
            ),
        )
        self._active_frames = {}
        self._announced = set()
        self._max_airtime_s = max_airtime_s
        self.earshot = {r.name: Earshot(window_s=EARSHOT_WINDOW_S / time_scale) for r in self.radios}
        repeat = config.airtime.late_repeat
        self.late_repeats = LateRepeats(repeat.rank if repeat is not None else None)
        # Notices about forgeries heard on RF, by the notice's id, until their turn comes.
        self.notices = ForgeryNotices()
        self._notice_holds = {}
        self._reports_seen = BoundedMap(REPORTS_SEEN_MAX)
        self._drops_since_log = Counter()
        self._drops_logged_at = 0.0
        self._event_budget = TokenBuckets()
        self._wake = asyncio.Event()
        self._publish_wake = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self._outgoing = deque(maxlen=OUTGOING_MAX)
        self._outgoing_wake = asyncio.Event()
        self._last_heard_s = None
        self._stopping = False
        self._mqtt_alert = None
        self.sync = SyncLink(self)  # catch-up after a gap (relayd/core/reconcile.py)
        if mqtt_link is None:
            from relayd.daemon.mqtt import MqttLink  # noqa: PLC0415 - keep aiomqtt out of `relayd check`

            mqtt_link = MqttLink
        self.mqtt = mqtt_link(
            config.mqtt,
            # Events of RF neighbours only (relayd/core/eventscope.py): set in `open`, from
            # the trust bundle and the neighbour memory; the wildcard of older relays is
            # dropped from the persistent session.
            subscriptions=[],
            retired=[self.topics.events_wildcard],
            handler=self._on_mqtt,
            will_topic=self.topics.status(config.relay_id),
            will_payload=self._offline_status_payload,
            on_state=self._on_link_state,
            on_connect=self._on_mqtt_connect,
        )

    @classmethod
    def load(
        cls,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        clock_synced: Callable[[], bool | None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        radio_link: type[RadioLink] = RadioLink,
        mqtt_link: type[MqttLink] | None = None,
    ) -> Relay:
        """A relay with its state loaded (`open`), ready to handle traffic or `serve`."""
        relay = cls(
            config,
            clock=clock,
            clock_synced=clock_synced,
            monotonic=monotonic,
            radio_link=radio_link,
            mqtt_link=mqtt_link,
        )
        return relay.open()

    def open(self) -> Relay:
        """Startup I/O: keys, the state database, the trust bundle, what the relay
        remembers (dedup, replay windows, neighbours, the queue). Idempotent."""
        if self._opened:
            return self
        config = self.config
        self.identity = load_private_key(config.key_path, unattended=True)
        self.pinned_root = load_public_key(config.root_pub).public_key
        self.storage = Storage(config.db_path)
        # Writes commit on the storage's writer thread; these run in the loop after them.
        self.storage.on_commit = self._publish_wake.set
        self.storage.on_lost_publishes = self._publish_from_memory
        self.storage.on_error = self._on_storage_error
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
        self.newest_issued_s = self.storage.newest_issued_s()
        self._load_neighbours()
        self._scope_events()
        self._bundle_mtime = self._file_mtime()
        self._clock_steps.observe(self.clock(), self._monotonic())
        self.clock_assessment = self._assess_clock()
        self._opened = True
        self._restore_queue()
        self._check_own_key()
        return self

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
        if raw and self.neighbours.load(raw):
            with contextlib.suppress(StorageError):
                self.storage.set_meta("neighbours", self.neighbours.doc())

    async def _on_mqtt_connect(self) -> None:
        self.sync.on_connect()
        self._publish_wake.set()
        self._status_dirty.set()
        await self._publish_status()

    def _on_link_state(self, link: object) -> None:
        if isinstance(link, RadioLink) and link.my_node is not None and link.name in self.earshot:
            self.earshot[link.name].own_byte = link.my_node & 0xFF
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
            queue_depth=self.outbound.depth(),
            airtime_last_hour_s=scheduler.airtime_used_s(now) * self.time_scale,
            airtime_budget_per_hour_s=scheduler.budget_s * self.time_scale,
            airtime_history_s=tuple(x * self.time_scale for x in scheduler.airtime_history_s(now)),
            transmitted=self.counters.transmitted,
            suppressed=self.counters.suppressed,
            heard=self.counters.heard,
            published=self.counters.published,
            drops=dict(self.counters.drops) | self.mqtt.intake.as_drops(),
            malformed=dict(self.counters.malformed),
            unverified=dict(self.counters.unverified),
            backlog=dict(self.counters.backlog),
            last_heard_s=self._last_heard_s,
            clock_warning=self.clock_assessment.warning,
            storage_error=self.storage_error,
            trust_version=self.verifier.bundle.version,
            rf_heard=self.neighbours.rf_heard(),
        )

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

    async def __aenter__(self) -> Relay:
        return self.open()

    async def __aexit__(self, *_exc: object) -> None:
        self.storage.close()

    async def run(self, stop: asyncio.Event) -> None:
        """The daemon: open, serve until `stop`, shut down."""
        async with self:
            await self.serve(stop)

    async def serve(self, stop: asyncio.Event) -> None:
        """Every task of the relay in one TaskGroup, until `stop` is set; then one bounded
        shutdown (SHUTDOWN_DEADLINE_S) and every task cancelled. A task that fails ends the
        group, and the relay with it (systemd restarts it)."""
        metrics_server: asyncio.Server | None = None
        if self.config.metrics_port is not None and self.config.metrics_host is not None:
            from relayd.daemon.metrics import start_metrics  # noqa: PLC0415

            metrics_server = await start_metrics(self, self.config.metrics_host, self.config.metrics_port)
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self.mqtt.run(), name="mqtt"),
                    tg.create_task(self._publisher_loop(), name="publisher"),
                    tg.create_task(self._outgoing_loop(), name="outgoing"),
                    tg.create_task(self._status_loop(), name="status"),
                    tg.create_task(self._housekeeping_loop(), name="housekeeping"),
                ]
                if metrics_server is not None:
                    tasks.append(tg.create_task(metrics_server.serve_forever(), name="metrics"))
                for radio in self.radios:
                    tasks.append(tg.create_task(radio.run(), name=f"radio-{radio.name}"))
                    tasks.append(tg.create_task(self._transmit_loop(radio), name=f"transmit-{radio.name}"))
                sd_notify(f"READY=1\nSTATUS=relay {self.config.relay_id} running")
                await stop.wait()
                deadline = asyncio.get_running_loop().time() + SHUTDOWN_DEADLINE_S
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await self._shutdown(deadline)
                for task in tasks:
                    task.cancel()
        finally:
            if metrics_server is not None:
                metrics_server.close()

    async def _shutdown(self, deadline: float) -> None:
        """Drain: publish what is pending, then a final offline status, all by `deadline`
        (loop time; the caller enforces it). The drain leaves the last second to the status."""
        self._stopping = True
        sd_notify("STOPPING=1")
        loop = asyncio.get_running_loop()
        while self.mqtt.connected and loop.time() < deadline - 1.0:
            try:
                if not self.storage.pending(1) and not self._outgoing:
                    break
            except StorageError:
                break
            self._publish_wake.set()
            await asyncio.sleep(0.05)
        if self.mqtt.connected:
            await self.mqtt.publish(
                self.topics.status(self.config.relay_id),
                self._offline_status_payload(),
                retain=True,
            )
            await self.mqtt.disconnect()
