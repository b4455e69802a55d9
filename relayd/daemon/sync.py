"""The MQTT side of catch-up after a gap (decisions in relayd/core/reconcile.py).

Topics, written by that relay only and sealed with its key (ControlKind.SYNC): requests on
`<root>/relays/<relay-id>/sync`, answers to relay X on `<root>/relays/<relay-id>/sync/X` (so
only X receives and checks them). Live QoS 1 messages through wildcard subscriptions, which
every broker delivers, clustered or not; nothing here is retained.
Not bridged to a city broker: the relays that share an area share a local broker.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from relayd.core.brokersave import LOST_RETAINED, STATUS_LEFT_META, RetainedWatch
from relayd.core.codec import MalformedFrame, decode
from relayd.core.control import ControlKind, relay_ids
from relayd.core.jsonform import MalformedMessage
from relayd.core.model import DropReason
from relayd.core.reconcile import (
    NONCE_BYTES,
    Action,
    Reconciler,
    SyncAnswer,
    SyncBatch,
    SyncPolicy,
    SyncRequest,
    encode_batch,
    encode_request,
    parse_sync,
)
from relayd.core.suppression import honours_evidence
from relayd.core.topics import TopicKind
from relayd.daemon.storage import StorageError

if TYPE_CHECKING:
    from relayd.daemon.relay import Relay

log = logging.getLogger("relayd.sync")


class SyncLink:
    """One per relay. `ask` after any gap; `handle` every message on a sync topic."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        scale = relay.time_scale
        d = SyncPolicy()
        self.reconciler = Reconciler(
            relay.config.relay_id,
            SyncPolicy(
                answer_window_s=d.answer_window_s / scale,
                min_request_interval_s=d.min_request_interval_s / scale,
                per_asker_interval_s=d.per_asker_interval_s / scale,
                max_answers=d.max_answers,
            ),
        )
        self.asked = 0
        self.answered = 0
        self.caught_up = 0  # missed alerts taken from answers (aired or covered)
        # A broker that lost our retained status lost its saved state (relayd/core/brokersave.py).
        self.retained = RetainedWatch(grace_s=5.0)
        self.broker_lost_retained = 0
        self._prefix = f"{relay.topics.root}/relays/"
        self._deferred_timers: set[str] = set()  # askers whose too-early request waits

    @property
    def subscriptions(self) -> list[str]:
        """Every relay's requests, and the answers addressed to this relay."""
        me = self.relay.config.relay_id
        return [f"{self._prefix}+/sync", f"{self._prefix}+/sync/{me}"]

    def topic(self, relay_id: str, to: str | None = None) -> str:
        base = f"{self._prefix}{relay_id}/sync"
        return base if to is None else f"{base}/{to}"

    def relay_of(self, topic: str) -> tuple[str, str | None] | None:
        """(sender, addressee or None for a request) of a sync topic, or None for any other."""
        if not topic.startswith(self._prefix):
            return None
        parts = topic[len(self._prefix) :].split("/")
        if len(parts) == 2 and parts[1] == "sync" and parts[0]:
            return parts[0], None
        if len(parts) == 3 and parts[1] == "sync" and parts[0] and parts[2]:
            return parts[0], parts[2]
        return None

    def _publish(self, body: bytes, to: str | None = None) -> None:
        relay = self.relay
        if not relay.mqtt.connected:
            return
        payload = relay._seal(ControlKind.SYNC, body)
        relay._publish_soon(self.topic(relay.config.relay_id, to), payload)  # from the relay's TaskGroup

    def on_connect(self) -> None:
        """The broker link is up: catch up, and check the broker kept our retained status."""
        relay = self.relay
        self.ask()
        left = relay.mqtt.connects > 1
        if not left:
            try:
                left = relay.storage.get_meta(STATUS_LEFT_META) == "1"
            except StorageError:
                left = False
        if left:
            self.retained.expect(relay._monotonic())
            asyncio.get_running_loop().call_later(self.retained.grace_s + 0.1, self._check_retained)
        else:
            relay._storage_call(lambda: relay.storage.set_meta(STATUS_LEFT_META, "1"))

    def _check_retained(self) -> None:
        if self.relay.mqtt.connected and self.retained.due(self.relay._monotonic()):
            self.broker_lost_retained += 1
            log.warning("%s", LOST_RETAINED)

    def own_status(self, retained: bool) -> None:
        """Our own status came back from the broker (`retained`: kept, not a live echo)."""
        if retained:
            self.retained.seen()

    def ask(self) -> None:
        """After a gap (broker or radio back): ask peers what is active."""
        if not self.relay.mqtt.connected:
            return  # asked again when the broker is back (MqttLink's on_connect)
        req = self.reconciler.request(self.relay.clock(), os.urandom(NONCE_BYTES))
        if req is None:
            return
        self.asked += 1
        log.info("asking peers for the active alerts (catch-up after a gap)")
        self._publish(encode_request(req))

    def handle(self, where: tuple[str, str | None], payload: bytes) -> None:
        """A sealed sync message on `where` (sender, addressee). MalformedMessage if unusable."""
        relay = self.relay
        relay_id, to = where
        me = relay.config.relay_id
        if relay_id == me or (to is not None and to != me):
            return
        body = relay._open_control(ControlKind.SYNC, relay_id, payload)
        if body is None:
            return
        msg = parse_sync(body)
        if msg.relay != relay_id:
            raise MalformedMessage("sync message names another relay than its topic")
        if isinstance(msg, SyncRequest):
            if to is None:
                self._answer(msg)
            return
        if to is None or msg.to != to:
            raise MalformedMessage("sync answer on another topic than its addressee's")
        self._take_batch(msg)

    def _answer(self, req: SyncRequest) -> None:
        now = self.relay.clock()
        peers = relay_ids(self.relay.verifier.bundle, now)
        batches = self.reconciler.batches_for(req, now, peers)
        for batch in batches:
            self._publish(encode_batch(batch), to=req.relay)
        count = sum(len(b.items) for b in batches)
        if count:
            self.answered += count
            log.info("told a peer back from a gap of %d active alert(s)", count)
        due = self.reconciler.deferred_due_s(req.relay)
        if due is not None and req.relay not in self._deferred_timers:
            self._deferred_timers.add(req.relay)
            asyncio.get_running_loop().call_later(max(0.0, due - now), self._answer_deferred, req.relay)

    def _answer_deferred(self, asker: str) -> None:
        self._deferred_timers.discard(asker)
        req = self.reconciler.take_deferred(asker)
        if req is not None:
            self._answer(req)

    def _take_batch(self, batch: SyncBatch) -> None:
        for ans in batch.answers():
            try:
                self._take(ans)
            except MalformedMessage:
                self.relay._malformed(TopicKind.OTHER, "sync answer frame")

    def _take(self, ans: SyncAnswer) -> None:
        relay = self.relay
        try:
            alert_id = decode(ans.onair).alert_id
        except MalformedFrame as exc:
            raise MalformedMessage(f"sync answer frame: {exc.detail}") from None
        memory = relay._neighbour_memory()
        action = self.reconciler.judge(
            ans,
            alert_id,
            relay.clock(),
            known=lambda a: a in relay.verifier.dedup or self.reconciler.evidence(a) is not None,
            honoured=lambda r: honours_evidence(r, memory),
        )
        if action is Action.IGNORE:
            return
        source = f"{ans.relay} put it on air (catch-up)"
        if action is Action.STAND_DOWN:
            relay._heard_copy(alert_id, source)
            return
        # The frame is checked like any alert from MQTT: signature, key, role, time, replay.
        verdict = relay._verify(ans.onair, "mqtt")
        if relay._hold_for_reference(verdict, ans.onair, "mqtt"):
            return
        if not verdict.ok or verdict.alert is None:
            if verdict.reason is not DropReason.DUPLICATE:
                relay._drop(verdict, "mqtt")
            return
        relay.counters.received += 1
        self.caught_up += 1
        log.info("catch-up: an active alert this relay missed (%s)", action.value)
        relay._accept(verdict, "mqtt", queue=action is Action.AIR, catch_up=True)
        if action is Action.COVERED:
            relay._heard_copy(alert_id, source)
