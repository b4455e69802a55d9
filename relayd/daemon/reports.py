"""Handheld reports: held a short turn (one relay of an area publishes), rate-limited per
handheld, wrapped as a relay-signed report for dispatchers, acknowledged by DM; and a peer's
signed note that it already reported the same handheld packet."""

from __future__ import annotations

import hashlib
import json
import logging

from relayd.core.backlog import late_report_text
from relayd.core.codec import MalformedFrame, compose, decode
from relayd.core.control import (
    ControlKind,
    ControlRejection,
)
from relayd.core.jsonform import (
    MAX_MESSAGE_BYTES,
    Envelope,
    MalformedMessage,
    alert_to_dict,
    onair_from_message,
)
from relayd.core.model import AlertFields, DropReason, Kind, Severity
from relayd.core.replies import ReplyOutcome
from relayd.core.scheduler import QueueItem
from relayd.core.status import (
    EventKind,
    ReportNote,
    checked_str,
    encode_report_note,
    load_json_object,
    parse_report_note,
)
from relayd.core.verify import Verdict
from relayd.daemon.intake import Intake
from relayd.daemon.radio import ReceivedText
from relayd.daemon.relaybase import _CONTROL_RE, ACK_RANK, REPORT_LIFETIME_S, REPORTS_PER_HANDHELD
from relayd.meshapi.packets import node_id

log = logging.getLogger("relayd.relay")


class Reports(Intake):
    """Handheld reports."""

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
            if self.outbound.push_direct(ack, rt.radio):
                self._wake.set()

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
