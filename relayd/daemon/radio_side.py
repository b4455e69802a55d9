"""What our radio hears (decided by relayd/core/route.py), forgery notices, and the
transmit loop that hands frames to the radio in the airtime scheduler's order."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

from relayd.core.backlog import BacklogOutcome, backlog_route
from relayd.core.model import DropReason
from relayd.core.replies import ReplyOutcome, parse_reply
from relayd.core.route import (
    Accept,
    HeardCopy,
    HoldForReference,
    Ignore,
    RfText,
    answers_forgery,
    classify_rf,
    is_report,
    route_rf,
)
from relayd.core.scheduler import Idle, Ready, Wait
from relayd.core.verify import Verdict
from relayd.daemon.radio import (
    RadioLink,
    ReceivedText,
)
from relayd.daemon.relaybase import RADIO_QUEUE_RESERVE
from relayd.daemon.reports import Reports

log = logging.getLogger("relayd.relay")


class RadioSide(Reports):
    """What the radio hears; the transmit loop."""

    def _on_radio_text(self, rt: ReceivedText) -> None:
        """A text our radio heard (decided by relayd/core/route.py)."""
        if rt.backlog:
            self._on_backlog_text(rt)
            return
        self._last_heard_s = self.clock()
        self._on_radio_node(rt.radio, rt.from_node)
        self._note_heard_node(rt.from_node)
        try:
            text: str | None = rt.payload.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        kind = classify_rf(
            text,
            rt.channel,
            report_prefix=self.config.report_prefix,
            reports_channel=self.config.reports_channel,
        )
        if kind is RfText.NOT_TEXT:
            self._drop(Verdict(DropReason.MALFORMED, "not UTF-8"), "rf")
            return
        if kind is RfText.NOTICE and text is not None:
            # Another relay answered a forgery: if we were about to, stand down.
            self._notice_holds.pop(hashlib.sha256(text.encode()).digest()[:8], None)
            self.counters.ignored_text += 1
            return
        if text is not None:
            reply = self._consider_reply(rt, text)
            if reply is not None:
                self._on_reply(rt, reply)
                return
        if kind is RfText.REPORT and text is not None:
            self._hold_report(rt, text)
            return
        verdict = self._verify(rt.payload, "rf")
        if verdict.alert is not None:
            self.replies.packets.note(rt.packet_id, verdict.alert.alert_id)  # for tapbacks
        shown = text if text is not None else rt.payload.decode("utf-8", "replace")
        decision = route_rf(verdict, shown, backlog=False)
        if isinstance(decision, HoldForReference):
            self._hold_for_reference(verdict, rt.payload, "rf")
            return
        if isinstance(decision, Accept):
            self.counters.heard += 1
            self._accept(verdict, "rf", queue=False)
            return
        if isinstance(decision, HeardCopy):
            self._heard_copy(decision.alert_id)
        on_alerts = rt.channel == self.config.alerts_channel
        if answers_forgery(verdict, on_alerts_channel=on_alerts, direct=rt.is_direct, backlog=False):
            self._answer_forgery(shown, verdict.reason)
        if isinstance(decision, Ignore):
            self.counters.ignored_text += 1  # plain chat on the alerts channel
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
            decision = route_rf(verdict, rt.payload.decode("utf-8", "replace"), backlog=True)
            outcome = BacklogOutcome.OTHER
            if isinstance(decision, Accept):
                outcome = BacklogOutcome.ALERT
                self.counters.heard += 1
                self._accept(verdict, "rf", queue=False)
            elif isinstance(decision, HeardCopy):
                outcome = BacklogOutcome.ALERT
                self._heard_copy(decision.alert_id, "rf, heard while the link was down")
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
            reply = self._consider_reply(rt, text)
            if reply is None or reply.wrapped is None:
                return BacklogOutcome.UNATTRIBUTED
            self._on_reply(rt, reply)
        return outcome

    def _consider_reply(self, rt: ReceivedText, text: str) -> ReplyOutcome | None:
        """A responder's answer to one of the active alerts, or None (relayd/core/replies.py)."""
        return self.replies.consider(
            rt.from_node,
            rt.packet_id,
            text,
            reply_id=rt.reply_id,
            emoji=rt.emoji,
            active=self._active_frames.values(),
            now_s=self.clock(),
            time_scale=self.time_scale,
        )

    def _is_report(self, rt: ReceivedText, text: str) -> bool:
        return is_report(
            text,
            rt.channel,
            report_prefix=self.config.report_prefix,
            reports_channel=self.config.reports_channel,
        )

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

    def _release_holds(self, now: float) -> None:
        self.outbound.due(now)
        for key, (release, rt) in list(self._report_holds.items()):
            if release <= now:
                del self._report_holds[key]
                self._publish_report(rt)
        for notice_id, (release, notice) in list(self._notice_holds.items()):
            if release <= now:
                del self._notice_holds[notice_id]
                self._queue_notice(notice_id, notice, int(now))

    async def _transmit_loop(self, radio: RadioLink) -> None:
        while True:
            now = self.clock()
            self._release_holds(now)
            self._expire(now)
            self._apply(self.outbound.sweep(now))
            action = self.outbound.next_action(radio.name, now)
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
                await self._transmit(radio, action.item)
                continue
            if isinstance(action, Idle) and radio.connected and self._queue_repeat(radio, now):
                continue
            if isinstance(action, Wait):
                timeout = action.seconds
            deadlines = [
                release for release, _ in [*self._report_holds.values(), *self._notice_holds.values()]
            ]
            nxt = self.outbound.next_deadline_s()
            if nxt is not None:
                deadlines.append(nxt)
            for deadline in deadlines:
                timeout = min(timeout if timeout is not None else 3600.0, max(0.0, deadline - now))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout if timeout is not None else 1.0)
