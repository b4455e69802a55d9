"""What our radio hears (decided by relayd/core/route.py), forgery notices, and the
transmit loop that hands frames to the radio in the airtime scheduler's order."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

from relayd.core.model import DropReason
from relayd.core.route import (
    Accept,
    HeardCopy,
    HoldForReference,
    Ignore,
    RfText,
    answers_forgery,
    classify_rf,
    route_rf,
)
from relayd.core.scheduler import Ready, Wait
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
        """A text our radio heard. One heard while we were not connected (backlog) is not
        news to act on (no report, no notice, no ack), but what it says went on air is
        evidence: a neighbour's copy of an alert we hold means we stand down."""
        if not rt.backlog:
            self._last_heard_s = self.clock()
            self._on_radio_node(rt.radio, rt.from_node)
        self._note_heard_node(rt.from_node)
        try:
            text: str | None = rt.payload.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        kind = RfText.FRAME
        if not rt.backlog:
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
        if kind is RfText.REPORT and text is not None:
            self._hold_report(rt, text)
            return
        verdict = self._verify(rt.payload, "rf")
        shown = text if text is not None else rt.payload.decode("utf-8", "replace")
        decision = route_rf(verdict, shown, backlog=rt.backlog)
        if isinstance(decision, HoldForReference):
            self._hold_for_reference(verdict, rt.payload, "rf")
            return
        if isinstance(decision, Accept):
            self.counters.heard += 1
            self._accept(verdict, "rf", queue=False)
            return
        if isinstance(decision, HeardCopy):
            self._heard_copy(decision.alert_id, "rf, heard while the link was down" if rt.backlog else "rf")
        on_alerts = rt.channel == self.config.alerts_channel
        if answers_forgery(verdict, on_alerts_channel=on_alerts, direct=rt.is_direct, backlog=rt.backlog):
            self._answer_forgery(shown, verdict.reason)
        if isinstance(decision, Ignore):
            if decision.why == "chat":
                self.counters.ignored_text += 1
            return
        if isinstance(decision, HeardCopy) and not decision.counted:
            return
        self._drop(verdict, "rf")

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
