"""The TUI's state: feed, relays, report inbox, trust and diagnostics (the values
themselves are in tui/feeditems.py; responders' answers in tui/responders.py).

No Textual and no asyncio here. `Model.ingest(topic, payload)` takes one MQTT message and
returns a `Change` saying what to redraw, so the whole pipeline (parse, verify, merge) is
testable with a fixed clock and without a terminal.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from relayd.core.codec import DecodedFrame, MalformedFrame, decode
from relayd.core.control import ControlKind, ControlRejection, open_sealed, relay_ids
from relayd.core.jsonform import MalformedMessage, onair_from_message
from relayd.core.model import DropReason, Kind, Role, SignedAlert
from relayd.core.replies import ReplyWord, reply_of_report
from relayd.core.status import RelayState, parse_event, parse_status
from relayd.core.topics import Topics
from relayd.core.trust import TrustBundle, TrustBundleError, parse_signed_bundle, should_replace
from relayd.core.verify import Verifier
from tui.feeditems import (
    SOURCE_OF_TOPIC,
    Change,
    DiagnosticLine,
    Diagnostics,
    FeedFilter,
    FeedItem,
    InboxEntry,
    InboxStatus,
    Lifecycle,
    RejectedFrame,
    RelayRow,
    Source,
    Topic,
    TrustState,
    VerifyState,
    visible_onair,
)
from tui.health import relay_problems
from tui.responders import Answer, Responders
from tui.threads import chain, refresh_thread, thread_root, thread_state

# The values are imported from here by widgets and tests too (one place to look).
__all__ = [
    "Change",
    "Clock",
    "DiagnosticLine",
    "Diagnostics",
    "FeedFilter",
    "FeedItem",
    "InboxEntry",
    "InboxStatus",
    "Lifecycle",
    "Model",
    "RejectedFrame",
    "RelayRow",
    "Source",
    "Topic",
    "TrustState",
    "VerifyState",
    "visible_onair",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# Alerts kept in the feed before the oldest are forgotten (a busy night is a few hundred).
DEFAULT_MAX_FEED_ITEMS = 50_000
# Events for alerts not seen yet (events may overtake the alert itself on the broker).
MAX_PENDING_EVENT_IDS = 5_000


class Model:
    """All TUI state. Not thread-safe: the app calls it from its event loop only."""

    def __init__(
        self,
        topics: Topics,
        bundle: TrustBundle | None,
        clock: Clock,
        *,
        trust_source: str = "none",
        max_feed_items: int = DEFAULT_MAX_FEED_ITEMS,
    ) -> None:
        self.topics = topics
        self.clock = clock
        self.trust = TrustState(bundle, trust_source if bundle else "none")
        self._verifier = Verifier(bundle) if bundle is not None else None
        self.feed: OrderedDict[str, FeedItem] = OrderedDict()
        self.relays: dict[str, RelayRow] = {}
        self.inbox: OrderedDict[str, InboxEntry] = OrderedDict()
        self.diagnostics = Diagnostics()
        self._pending_events: OrderedDict[str, list[tuple[str, str, str | None]]] = OrderedDict()
        self._arrivals = 0
        self._max_feed_items = max_feed_items
        self._active_prefix = topics.active_wildcard[:-1]  # "<root>/active/"
        # Replies (update, cancel, all-clear) by the id they refer to; they may arrive first.
        self._replies: dict[str, list[str]] = {}
        # Responders' answers (relay-wrapped reports referring to an alert), by alert id.
        self.responders = Responders()

    # ---- classification -------------------------------------------------------------

    def classify(self, topic: str) -> Topic:
        t = self.topics
        if topic == t.alerts:
            return Topic.ALERTS
        if topic == t.outbox:
            return Topic.OUTBOX
        if topic == t.reports:
            return Topic.REPORTS
        if topic == t.trust:
            return Topic.TRUST
        if topic.startswith(self._active_prefix) and "/" not in topic[len(self._active_prefix) :]:
            return Topic.ACTIVE
        if t.relay_of(topic) is not None:
            if topic.endswith("/status"):
                return Topic.STATUS
            if topic.endswith("/events"):
                return Topic.EVENTS
        return Topic.OTHER

    # ---- ingest ---------------------------------------------------------------------

    def ingest(self, topic: str, payload: bytes) -> Change:
        """Apply one MQTT message. Never raises on bad input: it is counted instead."""
        kind = self.classify(topic)
        d = self.diagnostics
        d.messages[kind] = d.messages.get(kind, 0) + 1
        try:
            return self._dispatch(kind, topic, payload)
        except MalformedMessage as exc:
            return self._malformed(kind, exc.detail)
        except Exception:  # the last fence: one message must not end the console
            log.warning("could not handle a message on %s", kind.value, exc_info=True)
            self.diagnostics.handler_errors += 1
            return self._malformed(kind, "could not handle this message")

    def _dispatch(self, kind: Topic, topic: str, payload: bytes) -> Change:
        if kind is Topic.STATUS:
            return self._ingest_status(topic, payload)
        if kind is Topic.EVENTS:
            return self._ingest_event(topic, payload)
        if kind is Topic.TRUST:
            return self._ingest_trust(payload)
        if kind is Topic.OTHER:
            return self._malformed(kind, f"unexpected topic {topic}")
        if kind is Topic.ACTIVE and not payload:
            return self._clear_active(topic[len(self._active_prefix) :])
        return self._ingest_alert(SOURCE_OF_TOPIC[kind], kind, payload)

    def _malformed(self, topic: Topic, detail: str) -> Change:
        d = self.diagnostics
        d.malformed[topic] = d.malformed.get(topic, 0) + 1
        d.recent.append(DiagnosticLine(self.clock(), topic, detail))
        log.info("malformed message on %s: %s", topic.value, detail)
        return Change(diagnostics=True)

    def _ingest_alert(self, source: Source, topic: Topic, payload: bytes) -> Change:
        try:
            onair = onair_from_message(payload)
        except MalformedMessage as exc:
            return self._malformed(topic, exc.detail)
        try:
            frame = decode(onair)
        except MalformedFrame as exc:
            return self._malformed(topic, f"on-air text: {exc.detail}")
        relay, via = _envelope(payload)
        alert_id = frame.alert_id.hex()
        change = Change(feed_id=alert_id)
        item = self.feed.get(alert_id)
        if item is None:
            item = self._checked_item(frame.to_signed_alert(), payload, frame)
            if not item.ok:
                return self._reject(topic, item)
            word = reply_of_report(item.text, item.alert.fields.ref) if item.kind is Kind.REPORT else None
            if word is not None:
                return self._answer(item, word)
            self._add_item(item)
            change.feed_new = True
            change.related = self._link(item)
            change.evicted = self._evict()
            if item.kind is Kind.REPORT and item.ok:
                self.inbox[alert_id] = InboxEntry(alert_id, updated_s=self.clock())
                change.inbox = True
        else:
            item.raw = payload
        item.sources.add(source)
        if source is Source.ACTIVE:
            item.active = True
        if relay is not None:
            item.relays.setdefault(relay, set()).add("heard" if via == "rf" else "published")
        return change

    def _answer(self, item: FeedItem, word: ReplyWord) -> Change:
        """A responder's answer: counted on the alert it names, never a feed row or inbox entry."""
        f = item.alert.fields
        if f.origin_node is None or f.ref is None:
            return self._malformed(Topic.REPORTS, f"answer {item.alert_id} names no handheld")
        if item.state is not VerifyState.REPORT or item.signer_role is not Role.RELAY:
            # Without a bundle nobody can tell a relay's answer from a forged one; and only a
            # relay heard the handheld (another key could claim any number of responders).
            why = item.detail or "not verified" if item.state is not VerifyState.REPORT else "not a relay's"
            line = f"answer {item.alert_id} not counted: {why}"
            self.diagnostics.recent.append(DiagnosticLine(self.clock(), Topic.REPORTS, line))
            return Change(diagnostics=True)
        # An answer to an update is an answer to the incident: counted on its first alert.
        root = thread_root(self.feed, f.ref.hex())
        if not self.responders.add(root, f.origin_node, word, f.issued_at_s):
            return Change()
        target = self.feed.get(root)
        if target is None:
            return Change()  # counted once the alert arrives (_add_item)
        target.responding = self.responders.responding(root)
        return Change(feed_id=root)

    def _reject(self, topic: Topic, item: FeedItem) -> Change:
        d = self.diagnostics
        d.rejected_total += 1
        d.rejected.append(
            RejectedFrame(self.clock(), topic, item.alert_id, item.kind, item.reason, item.detail)
        )
        reason = item.reason.value if item.reason else "rejected"
        d.recent.append(DiagnosticLine(self.clock(), topic, f"rejected {item.alert_id}: {reason}"))
        return Change(diagnostics=True)

    def _new_item(self, alert: SignedAlert, payload: bytes, frame: DecodedFrame | None = None) -> FeedItem:
        item = self._checked_item(alert, payload, frame)
        self._add_item(item)
        return item

    def _checked_item(self, alert: SignedAlert, payload: bytes, frame: DecodedFrame | None) -> FeedItem:
        item = FeedItem(
            alert_id=alert.id_hex,
            alert=alert,
            state=VerifyState.UNCHECKED,
            arrival=0,
            first_seen_s=self.clock(),
            raw=payload,
        )
        self._verify(item, frame)
        return item

    def _add_item(self, item: FeedItem) -> None:
        self._arrivals += 1
        item.arrival = self._arrivals
        self.feed[item.alert_id] = item
        root = thread_root(self.feed, item.alert_id)
        if root != item.alert_id:
            self.responders.merge(item.alert_id, root)  # answers that named this update first
            if root in self.feed:
                self.feed[root].responding = self.responders.responding(root)
        item.responding = self.responders.responding(item.alert_id) if root == item.alert_id else 0
        for relay, event, reason in self._pending_events.pop(item.alert_id, []):
            item.relays.setdefault(relay, set()).add(event)
            if reason:
                item.drop_reasons[relay] = reason

    def _link(self, item: FeedItem) -> list[str]:
        """Record what a new item says about its thread; returns the other rows it changed.

        Like the relays (relayd/daemon/relay.py), a cancel or all-clear of X ends X and the
        updates that refer to X. Only verified replies count, and a reply that arrived
        before the alert it names is checked again once that alert (its author) is known.
        """
        alert_id = item.alert_id
        changed: list[str] = []
        if item.ok and self._verifier is not None:
            self._verifier.known.remember(item.alert.alert_id, item.alert.fields)
        pending = self._replies.get(alert_id, [])
        for reply_id in pending:
            reply = self.feed.get(reply_id)
            if reply is not None and reply.ok:
                self._verify(reply)  # the author of what it ends is known now
                if reply.state is VerifyState.REJECTED:
                    changed.append(reply_id)
        ref = item.alert.fields.ref
        if item.kind.needs_reference and ref is not None:
            self._replies.setdefault(ref.hex(), []).append(alert_id)
            if item.ok:
                changed += self._refresh_thread(ref.hex())
        changed += self._refresh_thread(alert_id)
        return [c for c in dict.fromkeys(changed) if c != alert_id]

    def _thread_state(self, alert_id: str) -> tuple[bool, Kind | None]:
        return thread_state(self.feed, self._replies, alert_id)

    def _refresh_thread(self, alert_id: str) -> list[str]:
        return refresh_thread(self.feed, self._replies, alert_id)

    def _relink_all(self) -> None:
        """After a bundle change (a key may be revoked): thread state from scratch."""
        for alert_id in list(self.feed):
            self._refresh_thread(alert_id)

    def _verify(self, item: FeedItem, frame: DecodedFrame | None = None) -> None:
        if self._verifier is None:
            item.state, item.reason, item.detail = VerifyState.UNCHECKED, None, "no trust bundle loaded"
            return
        # The frame was decoded once already; re-decoding the stored on-air text is cheap.
        if frame is None:
            frame = decode(item.alert.onair)
        verdict = self._verifier.authenticate(frame, self.clock())
        if verdict.reason is DropReason.EXPIRED:
            # Expired is not forged: judge it as of just before expiry; the feed shows it expired.
            at_s = item.alert.fields.expires_at_s - 1
            verdict = self._verifier.authenticate(frame, at_s)
        item.reason, item.detail = verdict.reason, verdict.detail
        if verdict.signer is not None:
            item.signer_name, item.signer_role = verdict.signer.name, verdict.signer.role
        else:
            item.signer_name = item.signer_role = None
        if not verdict.ok:
            item.state = VerifyState.REJECTED
        elif item.kind is Kind.REPORT:
            item.state = VerifyState.REPORT
        else:
            item.state = VerifyState.VERIFIED

    def _evict(self) -> list[str]:
        evicted: list[str] = []
        while len(self.feed) > self._max_feed_items:
            alert_id, _ = self.feed.popitem(last=False)
            self.inbox.pop(alert_id, None)
            self._replies.pop(alert_id, None)
            self.responders.forget(alert_id)
            evicted.append(alert_id)
        return evicted

    def _clear_active(self, alert_id: str) -> Change:
        """An empty retained `active/<id>`: relays send it on expiry, cancel and all-clear.

        It is unsigned, so anyone who may write the topic could send it to hide a live
        alert: it changes nothing here. An alert stops being active only by what the
        console can check itself, its expiry or a verified cancel or all-clear
        (`active_alerts`).
        """
        if alert_id in self.feed:
            self.diagnostics.recent.append(
                DiagnosticLine(self.clock(), Topic.ACTIVE, f"unsigned clear of {alert_id} ignored")
            )
            return Change(diagnostics=True)
        return Change()

    def _open(self, kind: ControlKind, topic: Topic, relay: str, payload: bytes) -> bytes | None:
        """A relay's sealed status or event, checked against the bundle; None if not believed.

        Without a bundle nothing can be checked, and the console says so everywhere; the
        seal is then unwrapped for display only.
        """
        if self._verifier is None:
            return payload
        verdict = open_sealed(
            payload, kind=kind, topic_relay=relay, bundle=self._verifier.bundle, now_s=self.clock()
        )
        if verdict.rejection is None:
            return verdict.body
        if verdict.rejection is ControlRejection.MALFORMED:
            raise MalformedMessage(verdict.detail)
        d = self.diagnostics
        reason = verdict.rejection.value
        d.unverified[reason] = d.unverified.get(reason, 0) + 1
        d.recent.append(DiagnosticLine(self.clock(), topic, f"{relay}: not believed ({reason})"))
        return None

    def _ingest_status(self, topic: str, payload: bytes) -> Change:
        relay = self.topics.relay_of(topic) or ""
        previous = self.relays.get(relay)
        if not payload:
            # A cleared retained status: a decommissioned relay, if it had said goodbye
            # (signed offline). Unsigned, it must not hide a relay that is online.
            if previous is not None and previous.status.state is RelayState.OFFLINE:
                del self.relays[relay]
                return Change(relay=relay, relay_removed=True)
            return Change()
        body = self._open(ControlKind.STATUS, Topic.STATUS, relay, payload)
        if body is None:
            return Change(diagnostics=True)
        status = parse_status(body)
        if status.relay != relay:
            return self._malformed(Topic.STATUS, f"status on {relay}'s topic names relay {status.relay!r}")
        if status.state is RelayState.OFFLINE and previous is not None:
            # A last will carries only the state; keep what we knew, and turn it red.
            status = replace(previous.status, state=RelayState.OFFLINE)
        elif previous is not None and status.ts_s <= previous.status.ts_s and self._verifier is not None:
            # An older signed status than the one shown: a replay (docs/mqtt.md).
            return self._open_refused(relay, "stale")
        self.relays[relay] = RelayRow(status, self.clock())
        return Change(relay=relay)

    def _open_refused(self, relay: str, reason: str) -> Change:
        d = self.diagnostics
        d.unverified[reason] = d.unverified.get(reason, 0) + 1
        d.recent.append(DiagnosticLine(self.clock(), Topic.STATUS, f"{relay}: not believed ({reason})"))
        return Change(diagnostics=True)

    def _ingest_event(self, topic: str, payload: bytes) -> Change:
        relay = self.topics.relay_of(topic) or ""
        body = self._open(ControlKind.EVENT, Topic.EVENTS, relay, payload)
        if body is None:
            return Change(diagnostics=True)
        event = parse_event(body)
        if event.relay != relay:
            # Attribution is by topic and signature, never by a name in the payload.
            return self._malformed(Topic.EVENTS, f"event on {relay}'s topic names relay {event.relay!r}")
        item = self.feed.get(event.alert_id)
        if item is None:
            pending = self._pending_events.setdefault(event.alert_id, [])
            pending.append((relay, event.event.value, event.reason))
            while len(self._pending_events) > MAX_PENDING_EVENT_IDS:
                self._pending_events.popitem(last=False)
            return Change()
        item.relays.setdefault(relay, set()).add(event.event.value)
        if event.reason:
            item.drop_reasons[relay] = event.reason
        return Change(feed_id=item.alert_id)

    def _ingest_trust(self, payload: bytes) -> Change:
        if not payload:
            return Change()
        current = self.trust.bundle
        if current is None:
            # Without a pinned root from --trust, a bundle off the network proves nothing.
            self.trust.note = "a bundle is published on MQTT, but without --trust it cannot be pinned"
            return Change(trust=True)
        try:
            signed = parse_signed_bundle(payload, pinned_root=current.root_public_key)
        except TrustBundleError as exc:
            return self._malformed(Topic.TRUST, str(exc))
        why_not = should_replace(current, signed.bundle)
        if why_not is not None:
            if signed.bundle.version != current.version:
                self.trust.note = f"ignored the bundle on MQTT: {why_not}"
            return Change(trust=True)
        self.replace_bundle(signed.bundle, f"mqtt {self.topics.trust}")
        self.trust.note = f"updated to version {signed.bundle.version} from MQTT"
        return Change(trust=True)

    def replace_bundle(self, bundle: TrustBundle, source: str) -> None:
        """Use a newer bundle and re-verify everything (a key may have been revoked)."""
        self.trust.bundle, self.trust.source = bundle, source
        if self._verifier is None:
            self._verifier = Verifier(bundle)
        else:
            self._verifier.replace_bundle(bundle)
        for item in self.feed.values():
            was_ok = item.ok
            self._verify(item)
            if was_ok and not item.ok:
                self.inbox.pop(item.alert_id, None)
        # A relay whose key was revoked (seized) no longer has a believable status row.
        speaking = relay_ids(bundle, self.clock())
        for relay in [r for r in self.relays if r not in speaking]:
            del self.relays[relay]
        self._relink_all()

    # ---- local actions --------------------------------------------------------------

    def add_sent(self, alert: SignedAlert, payload: bytes) -> Change:
        """An alert this TUI composed and published: show it at once, before any relay echoes it."""
        change = Change(feed_id=alert.id_hex)
        item = self.feed.get(alert.id_hex)
        if item is None:
            item = self._new_item(alert, payload)
            change.feed_new = True
            change.related = self._link(item)
            change.evicted = self._evict()
        item.sources.add(Source.SENT)
        return change

    def dispatch_verifier(self, alert_id: str, who: str) -> None:
        entry = self.inbox[alert_id]
        entry.dispatched.append((who, self.clock()))
        entry.status = InboxStatus.VERIFIER_DISPATCHED
        entry.updated_s = self.clock()

    def confirm_report(self, alert_id: str, composed_id: str | None) -> None:
        entry = self.inbox[alert_id]
        entry.status = InboxStatus.CONFIRMED
        entry.confirmed_by = composed_id
        entry.updated_s = self.clock()

    def dismiss_report(self, alert_id: str) -> None:
        entry = self.inbox[alert_id]
        entry.status = InboxStatus.DISMISSED
        entry.updated_s = self.clock()

    # ---- queries --------------------------------------------------------------------

    def items(self, flt: FeedFilter | None = None) -> Iterator[FeedItem]:
        """Feed items in arrival order, oldest first, optionally filtered."""
        if flt is None or not flt.active:
            yield from self.feed.values()
            return
        now = self.clock()
        yield from (i for i in self.feed.values() if flt.matches(i, now))

    def closed_ids(self) -> set[str]:
        """Alerts retracted or ended by a verified cancel or all-clear (their thread included)."""
        return {i.alert_id for i in self.feed.values() if i.closed_by is not None}

    def active_alerts(self) -> list[FeedItem]:
        """Alerts an update, cancel or all-clear can refer to: newest first."""
        now = self.clock()
        out = [
            i
            for i in self.feed.values()
            if i.kind in (Kind.ALERT, Kind.UPDATE, Kind.TEST) and i.ok and i.lifecycle(now).live
        ]
        return sorted(out, key=lambda i: -i.arrival)

    def chain(self, alert_id: str) -> list[tuple[int, FeedItem]]:
        """The reference chain around an alert: its root first, then replies depth-first."""
        return chain(self.feed, alert_id)

    def answers(self, alert_id: str) -> list[Answer]:
        """Responders' answers for the incident this alert belongs to, newest first."""
        return self.responders.answers(thread_root(self.feed, alert_id))

    def relay_names(self) -> list[str]:
        names = set(self.relays)
        for item in self.feed.values():
            names.update(item.relays)
        return sorted(names)

    def inbox_entries(self, *, include_closed: bool = True) -> Iterable[tuple[InboxEntry, FeedItem]]:
        for alert_id, entry in self.inbox.items():
            item = self.feed.get(alert_id)
            if item is None:
                continue
            if not include_closed and entry.status in (InboxStatus.CONFIRMED, InboxStatus.DISMISSED):
                continue
            yield entry, item

    @property
    def inbox_new(self) -> int:
        return sum(1 for e in self.inbox.values() if e.status is InboxStatus.NEW)

    @property
    def alarming_relays(self) -> list[str]:
        return sorted(name for name, row in self.relays.items() if relay_problems(row.status))


def _envelope(payload: bytes) -> tuple[str | None, str | None]:
    """The unsigned envelope's relay and via fields, if the message is JSON (display only)."""
    if not payload.lstrip().startswith(b"{"):
        return None, None
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    relay, via = doc.get("relay"), doc.get("via")
    return (relay if isinstance(relay, str) and relay else None, via if isinstance(via, str) else None)
