"""Accepting a verified alert: record it, publish it, hold it for the air; waiting for the
alert an update refers to; reverifying what is queued when the trust bundle changes."""

from __future__ import annotations

import dataclasses
import logging

from relayd.core.airtime import MAX_PKI_DM_PAYLOAD_BYTES
from relayd.core.authority import Held
from relayd.core.catchup import ActiveFrame
from relayd.core.clockrule import (
    advances_floor,
    best_time_s,
)
from relayd.core.jsonform import (
    Envelope,
    encode_alert,
)
from relayd.core.model import DropReason, Kind, SignedAlert
from relayd.core.outbound import (
    Effect,
    QueuedAlert,
)
from relayd.core.status import EventKind
from relayd.core.suppression import rank_peers
from relayd.core.verify import Verdict
from relayd.daemon.relaybase import ACTIVE_FRAMES_MAX, STALE_AFTER_S
from relayd.daemon.sending import Sending

log = logging.getLogger("relayd.relay")


class Intake(Sending):
    """Accepting verified alerts."""

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
        for queued in self.outbound.queued():
            verdict = self.verifier.reverify(queued.onair, now, at=at)
            if not verdict.ok:
                self._cancel_queued(queued.alert_id, (verdict.reason or DropReason.MALFORMED).value)
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

    def _accept(self, verdict: Verdict, via: str, *, queue: bool, catch_up: bool = False) -> None:
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
        row: QueuedAlert | None = None
        hold_effects: list[Effect] = []
        if queue and f.kind.is_broadcast:
            # Alerts held or queued here are likely queued at the other relays too (they get
            # the same MQTT traffic), so the relay ahead of us needs that long more to send.
            peers = self._catch_up_peers() if catch_up else self._rank_peers()
            turn = now + self.suppressor.delay_s(
                alert.alert_id, peers, self.outbound.backlog() * self._pace_s()
            )
            log.debug("%s: turn in %.2f s among %d peer(s)", alert.alert_id.hex(), turn - now, len(peers))
            release = turn
            if now - f.issued_at_s > STALE_AFTER_S:
                # Not fresh from a dispatcher: probably our session's backlog after an
                # outage, which neighbours may already have covered. Give their
                # "transmitted" events (queued behind it in the same session) a slot to land.
                release += self.suppressor.slot_s
            row = QueuedAlert(
                alert.alert_id, alert.onair, f.severity.rank, f.issued_at_s, f.expires_at_s, release, None
            )
            hold_effects = self.outbound.hold(row, now, turn_at_s=turn)
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
        self._apply(hold_effects)
        self._publish_wake.set()
        self._wake.set()
        self._status_dirty.set()
        self._event(EventKind.HEARD if via == "rf" else EventKind.RECEIVED, alert.id_hex, via)
        if row is not None:
            self._event(EventKind.QUEUED, alert.id_hex, via)
        log.info("accepted %s %s %s via %s", f.kind.value, f.severity.value, alert.id_hex, via)
        for held in self._ref_hold.release(alert.alert_id):
            self._offer_held(held)

    def _restore_queue(self) -> None:
        now = self.clock()
        # A relay back after a long absence with a clock that reads 1970 judges expiry by
        # its newest signed evidence of the time, not by the clock.
        expiry_now = best_time_s(self.clock_assessment, now)
        at = self._verification_at(now)
        for row in self.storage.queued():
            if expiry_now >= row.expires_at_s:
                self._apply(self.outbound.restore(row, now, expiry_now))
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
            # While we were down a neighbour probably covered it; its "transmitted" event
            # waits in our persistent MQTT session. Hold a little longer than a fresh alert
            # so that event (or the RF copy) arrives before we decide. One in doubt (a
            # write-ahead packet id) waits like the rest and keeps its id.
            peers = rank_peers(
                self.config.relay_id, self.neighbours.peer_nodes, self._neighbour_memory(), self.rank_scope
            )
            delay = self.suppressor.delay_s(row.alert_id, peers) + 2 * self.suppressor.slot_s
            release = max(row.release_at_s, now + delay)
            self._apply(
                self.outbound.restore(dataclasses.replace(row, release_at_s=release), now, expiry_now)
            )
