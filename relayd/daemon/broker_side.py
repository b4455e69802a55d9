"""What the broker brings (outbox, other relays' alerts, peers' signed statuses and
events, reports, the trust bundle), decided by relayd/core/route.py, and the store-and-forward
publisher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from relayd.core.control import (
    ControlKind,
    ControlRejection,
    relay_ids,
)
from relayd.core.jsonform import (
    MalformedMessage,
    onair_from_message,
)
from relayd.core.model import DropReason
from relayd.core.route import (
    Accept,
    AwaitCopy,
    Drop,
    HoldForReference,
    StandDown,
    listens_to,
    route_mqtt,
    route_peer_event,
)
from relayd.core.status import (
    parse_event,
    parse_status,
)
from relayd.core.suppression import (
    adjacency,
    honours_evidence,
)
from relayd.core.topics import TopicKind
from relayd.core.trust import SignedBundle, TrustBundleError, parse_signed_bundle, should_replace
from relayd.core.verify import Verdict
from relayd.daemon.storage import StorageError
from relayd.errors import RelaydError
from relayd.trustfile import load_bundle, save_bundle

if TYPE_CHECKING:
    from relayd.daemon.mqtt import Incoming

from relayd.daemon.radio_side import RadioSide

log = logging.getLogger("relayd.relay")


class BrokerSide(RadioSide):
    """What the broker brings; trust; the publisher."""

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
        decision = route_mqtt(kind, verdict)
        if isinstance(decision, HoldForReference):
            self._hold_for_reference(verdict, onair, "mqtt")
        elif isinstance(decision, Drop):
            if decision.malformed:
                self.counters.malformed[kind.value] += 1
            self._drop(verdict, "mqtt")
        elif isinstance(decision, Accept):
            self.counters.received += 1
            self._accept(verdict, "mqtt", queue=decision.queue)
        else:
            self.counters.ignored_text += 1  # a report: to dispatchers only, never on air

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
        self._classify_awaited(self.clock())
        memory = self._neighbour_memory()
        honoured = honours_evidence(relay, memory)
        if not listens_to(honoured=honoured, adjacency=adjacency(relay, memory), scope=self.rank_scope):
            log.debug("event from %s ignored: its radio is not an RF neighbour", relay)
            return
        if self.neighbours.claimed_twice(relay, {r.my_node for r in self.radios}):
            # Two relays (or we and a relay) claim one radio: one of them lies (a seized key).
            # Standing down on either's word could silence an area; a duplicate cannot.
            self._unverified(ControlRejection.WRONG_RELAY, relay, "its radio node is claimed twice")
            return
        decision = route_peer_event(event.event, event.alert_id, honoured=honoured, scope=self.rank_scope)
        if isinstance(decision, StandDown):
            self._heard_copy(decision.alert_id, f"{relay} transmitted it")
            self._follow_peer(relay, decision.alert_id)
        elif isinstance(decision, AwaitCopy):
            self._await_rf_copy(relay, decision.alert_id)

    def _from_self(self, payload: bytes) -> bool:
        marker = f'"relay":"{self.config.relay_id}"'.encode()
        return marker in payload

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
            self.neighbours.forget(relay)
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

    def _file_mtime(self) -> float:
        try:
            return self.config.bundle_path.stat().st_mtime
        except OSError:
            return 0.0

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

    async def _outgoing_loop(self) -> None:
        """Publishes what `_publish_soon` queued (events; deliveries while the disk fails)."""
        while True:
            while self._outgoing:
                topic, payload, retain = self._outgoing.popleft()
                await self.mqtt.publish(topic, payload, retain=retain)
            self._outgoing_wake.clear()
            await self._outgoing_wake.wait()

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
