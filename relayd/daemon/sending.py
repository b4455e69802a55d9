"""The relay's way to the air: it carries out what relayd/core/outbound.py decides (write
to the radio, persist, publish an event, count) and feeds it the radio's answers."""

from __future__ import annotations

import functools
import hashlib
import logging

from relayd.core.clockrule import best_time_s
from relayd.core.model import DropReason
from relayd.core.outbound import (
    Effect,
    GaveUp,
    InFlight,
    OnAir,
    Outcome,
    QueuedAlert,
    Refusal,
    Retrying,
    Send,
    Taken,
    Terminal,
    Withdrawn,
)
from relayd.core.repeat import Repeat
from relayd.core.scheduler import QueueItem
from relayd.core.status import EventKind
from relayd.daemon.radio import (
    PacketIgnoredError,
    RadioLink,
    RadioUnavailableError,
    SendRejectedError,
)
from relayd.daemon.relaybase import ACK_RANK, REFUSED_BY_RADIO, REPEAT_RANK, RelayBase
from relayd.meshapi.packets import BROADCAST_NUM
from relayd.meshapi.routing import Answer, Disposition

log = logging.getLogger("relayd.relay")


class Sending(RelayBase):
    """Carries out the outbound core's effects; writes frames to the radio."""

    @property
    def queued(self) -> dict[bytes, QueuedAlert]:
        """Alerts on their way to the air, held, queued or in flight (read-only view)."""
        return {q.alert_id: q for q in self.outbound.queued()}

    @property
    def in_flight(self) -> dict[tuple[str, int], InFlight]:
        """Frames taken by a radio and not yet confirmed on air (read-only view for metrics)."""
        return self.outbound.in_flight

    def _apply(self, effects: list[Effect], source: str = "another relay put it on air") -> None:
        """Carry out what the outbound core decided: count, persist, tell peers, log.
        `source`: the evidence, for the log, when an alert is suppressed."""
        for effect in effects:
            if isinstance(effect, Taken):
                self.replies.packets.note(effect.packet_id, effect.alert_id)  # what a tapback will name
                self._event(EventKind.TAKEN, effect.alert_id.hex(), f"radio:{effect.radio}")
            elif isinstance(effect, OnAir):
                self.sync.reconciler.aired(effect.alert_id)
                self.counters.transmitted += 1
                self._event(EventKind.TRANSMITTED, effect.alert_id.hex(), "rf")
                log.info("transmitted %s on %s (%s)", effect.alert_id.hex(), effect.radio, effect.how)
                self._repeat_later(effect)
            elif isinstance(effect, Retrying):
                self.counters.send_retries += 1
                log.warning(
                    "radio %s refused %s (%s); retrying in %.1f s",
                    effect.radio,
                    effect.alert_id.hex(),
                    effect.why,
                    effect.retry_after_s * self.time_scale,
                )
                self._wake.set()
            elif isinstance(effect, GaveUp):
                self._gave_up(effect)
            elif isinstance(effect, Withdrawn):
                # Provisional: the radio still has a frame; its word sets the final outcome.
                self._storage_call(functools.partial(self.storage.dequeue, effect.alert_id, effect.outcome))
            else:
                self._terminal(effect, source)
            self._status_dirty.set()

    def _gave_up(self, effect: GaveUp) -> None:
        item = effect.item
        self.counters.send_retries += 1
        self.counters.drops[REFUSED_BY_RADIO] += 1
        log.warning(
            "radio %s refused %s (%s) after %d attempt(s); not sent",
            effect.radio,
            item.alert_id.hex(),
            effect.why,
            effect.attempts,
        )
        if item.to_node is None:
            self._event(EventKind.DROPPED, item.alert_id.hex(), f"radio:{effect.radio}", REFUSED_BY_RADIO)

    def _terminal(self, effect: Terminal, source: str) -> None:
        """An alert's one outcome: its queue row leaves, its history says how."""
        alert_id = effect.alert_id
        self._storage_call(lambda: self.storage.dequeue(alert_id, effect.stored))
        if effect.outcome is Outcome.SUPPRESSED:
            self.counters.suppressed += 1
            self._event(EventKind.SUPPRESSED, alert_id.hex(), "rf")
            log.info("suppressed %s: %s", alert_id.hex(), source)
        elif effect.outcome is Outcome.EXPIRED:
            self.counters.drops[DropReason.EXPIRED.value] += 1
            self._event(EventKind.DROPPED, alert_id.hex(), "mqtt", DropReason.EXPIRED.value)
        elif effect.outcome is Outcome.UNCONFIRMED:
            self.counters.unconfirmed += 1
            log.warning("%s: handed to a radio that never confirmed it on air", alert_id.hex())

    def _heard_copy(self, alert_id: bytes, source: str = "rf") -> None:
        """Another relay put this alert on air: stand down if we were going to."""
        self.sync.reconciler.heard(alert_id)
        self._apply(self.outbound.heard(alert_id), source)

    def _follow_peer(self, relay: str, alert_id: bytes) -> None:
        """A peer whose radio ours has heard took or sent `alert_id`: what we hold behind it
        waits for its queue, which moves one flood at a time (at most `_peer_pace_s` apart;
        Suppressor.follow). Only such a peer: its word could already make us stand down, so
        following it, up to each alert's expiry, gives it no new power over our area."""
        if self.outbound.follow(relay, alert_id, self.clock(), self._rank_peers(), self._peer_pace_s()):
            self._wake.set()

    def _repeat_later(self, effect: OnAir) -> None:
        """An alert our radio put on air: if urgent, it goes once more later, under the same
        id, for the handhelds that missed it (relayd/core/repeat.py)."""
        radio = next((r for r in self.radios if r.name == effect.radio), None)
        if radio is None:
            return
        item = effect.item
        repeat = Repeat(
            item.alert_id, effect.packet_id, item.onair, item.severity_rank, item.expires_at_s, radio.traffic
        )
        self.late_repeats.aired(radio.name, repeat)

    def _queue_repeat(self, radio: RadioLink, now: float) -> bool:
        """The relay has nothing else to send: hand `radio` a late repeat, if one may go now.
        True if one was queued. Not while the radio has a frame it has not confirmed on air:
        its own queue is still draining, and a repeat behind it would meet that flood."""
        if self.outbound.backlog() or any(name == radio.name for name, _ in self.outbound.in_flight):
            return False
        scheduler = self.schedulers[radio.name]
        repeat = self.late_repeats.next_for(
            radio.name,
            now,
            traffic_now=radio.traffic,
            budget_used=scheduler.airtime_used_s(now) / scheduler.budget_s,
            remembers=radio.client_ids.remembers,
            still_active=self._active_refs.__contains__,
            spacing_s=self._flood_s(radio.name, self._max_airtime_s, late_repeat=True),
        )
        if repeat is None:
            return False
        item = QueueItem(
            alert_id=b"repeat" + repeat.alert_id,
            onair=repeat.onair,
            severity_rank=REPEAT_RANK,
            issued_at_s=int(now),
            expires_at_s=repeat.expires_at_s,
            airtime_s=self._airtime(repeat.onair),
            channel_index=self.config.alerts_channel,
            # Sent as a plain broadcast: no firmware retransmission, no outcome of its own.
            to_node=BROADCAST_NUM,
            packet_id=repeat.packet_id,
        )
        self.outbound.push_direct(item, radio.name)
        self.counters.late_repeats += 1
        log.info("repeating %s on %s for handhelds that missed it", repeat.alert_id.hex(), radio.name)
        return True

    def _cancel_queued(self, alert_id: bytes, reason: str | None = None) -> None:
        self._apply(self.outbound.cancel(alert_id, reason))

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
        self.outbound.push_direct(item)
        self.counters.forgery_notices += 1
        self._wake.set()

    def _expire(self, now: float) -> None:
        self._apply(self.outbound.expire(best_time_s(self.clock_assessment, now)))

    async def _transmit(self, radio: RadioLink, item: QueueItem) -> None:
        send = self.outbound.send(radio.name, item, radio.fresh_packet_id)
        if send.write_ahead:
            self._storage_call(lambda: self.storage.mark_transmitting(item.alert_id, send.packet_id))
        try:
            await radio.send_text(
                item.onair,
                to=item.to_node if item.to_node is not None else BROADCAST_NUM,
                channel=item.channel_index,
                packet_id=send.packet_id,
                # Broadcasts ask the firmware to tell us when they were on air; an ack DM
                # needs no receipt of its own.
                want_ack=item.to_node is None,
            )
        except RadioUnavailableError:
            # Not taken (link down, or the radio stopped answering); a broadcast keeps its id.
            self.counters.send_retries += 1
            self._apply(self.outbound.not_taken(send))
            return
        except PacketIgnoredError:
            # The radio already holds this id (an in-doubt resend it had taken before):
            # its ACK or MAX_RETRANSMIT for the id will say when it was on air.
            self._on_taken(send, ignored=True)
            return
        except SendRejectedError as exc:
            self._apply(self.outbound.refused(radio.name, item, self._refusal(exc.answer), self.clock()))
            return
        self._on_taken(send)

    def _on_taken(self, send: Send, *, ignored: bool = False) -> None:
        item = send.item
        if item.to_node is None and not ignored:
            # Crowded: more of ours waits for the air, queued here or in the radio (relayd/core/repeat.py).
            flying = any(name == send.radio for name, _ in self.outbound.in_flight)
            crowded = flying or self.outbound.backlog() > 0
            self.late_repeats.handed(send.radio, item.alert_id, crowded=crowded)
        flood = self._flood_s(send.radio, item.airtime_s)
        log.debug("radio %s: the next frame after this one's flood, %.2f s", send.radio, flood)
        self._apply(self.outbound.taken(send, self.clock(), ignored=ignored, flood_s=flood))
        self._wake.set()

    def _refusal(self, answer: Answer) -> Refusal:
        retry = answer.disposition is Disposition.RETRY
        return Refusal(answer.name, retry, answer.retry_after_s / self.time_scale)

    def _on_radio_answer(self, radio_name: str, packet_id: int, answer: Answer) -> None:
        """Our radio's verdict on a frame it had taken: on air, or refused after all."""
        refusal = None if answer.sent else self._refusal(answer)
        self._apply(self.outbound.answered(radio_name, packet_id, refusal, answer.name, self.clock()))

    def _on_radio_lost(self, radio: RadioLink) -> None:
        """The link dropped: what that radio held but had not confirmed goes again, under
        the same packet ids, once it is back."""
        self._apply(self.outbound.radio_lost(radio.name, self.clock()))
        self._wake.set()

    def _on_node_announced(self, radio_name: str, node: int, _portnum: int) -> None:
        """A node broadcast its NodeInfo (a boot, its app reconnecting, or every few hours)."""
        if not self.neighbours.is_relay_radio(node):
            self.late_repeats.node_restarted(radio_name)
        self._on_radio_node(radio_name, node)

    def _on_radio_node(self, radio_name: str, node: int) -> None:
        """Another node was heard on the air: a handheld back after a while gets the active
        alerts it missed, by DM (relayd/core/catchup.py)."""
        if not self.config.catchup_after_s or self.neighbours.is_relay_radio(node) or node == BROADCAST_NUM:
            return  # off, or a relay's radio: relays are not responders
        now = self.clock()
        frames = self.late_joiners.heard(
            node, now, [f for f in self._active_frames.values() if now < f.expires_at_s]
        )
        if not frames or radio_name not in self.schedulers:
            return
        for frame in frames:
            self.outbound.push_direct(
                QueueItem(
                    alert_id=b"cu" + hashlib.sha256(node.to_bytes(4, "big") + frame.alert_id).digest()[:8],
                    onair=frame.onair,
                    severity_rank=frame.severity.rank,
                    issued_at_s=int(now),
                    expires_at_s=frame.expires_at_s,
                    airtime_s=self._airtime(frame.onair),
                    channel_index=self.config.alerts_channel,
                    to_node=node,
                ),
                radio_name,
            )
        self.counters.catchup_dms += len(frames)
        # Never the node id at INFO (privacy): who was where, when, is not the log's business.
        log.info("a handheld back on air gets %d active alert(s) it missed, by DM", len(frames))
        self._wake.set()
