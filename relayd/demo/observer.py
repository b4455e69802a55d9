"""Watches the demo from the outside: every MQTT message under the topic root and every text
a simulated handheld displays. The narrated timeline and the closing summary are derived
from these observations only (never from what the script meant to do), and the observer
re-verifies every alert itself against the trust bundle, as a dispatcher's console does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiomqtt

from relayd.core.codec import DecodedFrame, MalformedFrame, decode
from relayd.core.jsonform import MalformedMessage, onair_from_message
from relayd.core.status import EventKind, RelayEvent, RelayState, RelayStatus, parse_event, parse_status
from relayd.core.verify import Verifier
from relayd.demo.stack import DemoStack

log = logging.getLogger("relayd.demo")

DISPLAY_POLL_S = 0.1
# Related observations arriving within this window are narrated as one line
# ("received by relay-north, relay-center, relay-south").
BATCH_S = 0.4


@dataclass
class AlertTrack:
    """One alert id as seen on MQTT, in relay events and on handheld screens."""

    alert_id: str
    kind: str = "?"
    severity: str = "?"
    text: str = ""
    onair: str = ""
    signer: str | None = None  # who signed it, if it verified
    rejected: str | None = None  # our own verification's reason, if it did not
    source: str = "rf"  # "outbox" (a dispatcher published it) or "rf" (first seen on air)
    seen_at: float | None = None  # seconds since ready
    received_by: set[str] = field(default_factory=set)
    transmitted_by: list[str] = field(default_factory=list)
    suppressed_by: set[str] = field(default_factory=set)
    dropped_by: dict[str, str] = field(default_factory=dict)
    displayed: Counter[str] = field(default_factory=Counter)
    displayed_at: dict[str, float] = field(default_factory=dict)

    @property
    def short(self) -> str:
        return self.alert_id[:8]

    @property
    def genuine(self) -> bool:
        return self.signer is not None and self.rejected is None


@dataclass(frozen=True, slots=True)
class ReportSeen:
    alert_id: str
    handheld: str
    relay: str
    text: str
    signer: str | None  # the wrapping relay's key, if the signature verified
    at: float


Line = Callable[[str], None]
ReportHook = Callable[[ReportSeen], Awaitable[None] | None]


class Observer:
    def __init__(self, stack: DemoStack, *, on_line: Line | None = None) -> None:
        self.stack = stack
        self.topics = stack.topics
        self.on_line = on_line
        self.report_hooks: list[ReportHook] = []
        self.verifier = Verifier(stack.network.bundle)
        self.alerts: dict[str, AlertTrack] = {}
        self.by_onair: dict[str, str] = {}
        self.reports: dict[str, ReportSeen] = {}
        self.statuses: dict[str, RelayStatus] = {}
        self.other_displays: Counter[str] = Counter()
        self.malformed = 0
        self._report_keys: set[tuple[object, ...]] = set()
        self._display_index: dict[str, int] = dict.fromkeys(stack.handhelds, 0)
        self._batches: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._hook_tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._mqtt_loop(), name="demo-observer-mqtt"),
            asyncio.create_task(self._display_loop(), name="demo-observer-displays"),
        ]
        try:
            async with asyncio.timeout(10):
                await self._connected.wait()
        except TimeoutError:
            raise RuntimeError(f"observer could not connect to {self.stack.broker_url}") from None

    async def stop(self) -> None:
        self.flush(force=True)
        for task in [*self._tasks, *self._hook_tasks]:
            task.cancel()
        for task in [*self._tasks, *self._hook_tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if self._client is None:
            raise RuntimeError("observer is not connected")
        await self._client.publish(topic, payload, qos=1, retain=retain)

    async def _mqtt_loop(self) -> None:
        client = aiomqtt.Client(
            self.stack.broker_host,
            self.stack.broker_port,
            identifier=f"relayd-demo-observer-{id(self):x}",
            clean_session=True,
        )
        async with client:
            self._client = client
            await client.subscribe(f"{self.topics.root}/#", qos=1)
            self._connected.set()
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                try:
                    self._ingest(message.topic.value, payload)
                except (MalformedMessage, MalformedFrame, ValueError):
                    self.malformed += 1

    async def _display_loop(self) -> None:
        while True:
            self.poll_displays()
            self.flush()
            await asyncio.sleep(DISPLAY_POLL_S)

    # -- narration ------------------------------------------------------------------------

    def now(self) -> float:
        return self.stack.since_ready()

    def say(self, text: str, at: float | None = None) -> None:
        if at is None:
            # Keep the timeline in order: what is batched so far happened before this.
            self.flush(force=True)
        if self.on_line is not None:
            self.on_line(f"[{self.now() if at is None else at:6.2f}s] {text}")

    def _batch(self, what: str, alert_id: str, item: str) -> None:
        key = (what, alert_id)
        first, items = self._batches.get(key, (self.now(), []))
        items.append(item)
        self._batches[key] = (first, items)

    def flush(self, *, force: bool = False) -> None:
        now = self.now()
        for key, (first, items) in sorted(self._batches.items(), key=lambda kv: kv[1][0]):
            if not force and now - first < BATCH_S:
                continue
            del self._batches[key]
            what, alert_id = key
            track = self.alerts.get(alert_id) or AlertTrack(alert_id)
            self.say(self._describe(what, track, items), first)

    def _describe(self, what: str, t: AlertTrack, items: list[str]) -> str:
        who = ", ".join(items)
        label = f"{t.kind} {t.short}"
        if what == "received":
            return f"received   {label} by {who}"
        if what == "transmitted":
            return f"on air     {label} transmitted by {who}"
        if what == "suppressed":
            return f"suppressed {label} at {who} (another relay put it on air first)"
        if what == "dropped":
            return f"REJECTED   {label} by {who}"
        if what == "displayed":
            total = len(self.stack.handhelds)
            have = sum(1 for h in self.stack.handhelds if t.displayed[h])
            tail = " — every handheld" if have == total else ""
            if not t.genuine:
                return f"shown      forged {t.short} on {who} (a stock handheld shows any text it hears)"
            return f"displayed  {label} on {who} ({have}/{total}){tail}"
        return f"{what} {label}: {who}"

    # -- MQTT -----------------------------------------------------------------------------

    def _track(self, frame: DecodedFrame, source: str) -> tuple[AlertTrack, bool]:
        alert_id = frame.alert_id.hex()
        track = self.alerts.get(alert_id)
        new = track is None or track.seen_at is None
        if track is None:
            track = AlertTrack(alert_id)
            self.alerts[alert_id] = track
        if new:
            f = frame.fields
            verdict = self.verifier.authenticate(frame, time.time())
            track.kind, track.severity, track.text = f.kind.value, f.severity.value, f.text
            track.onair, track.source, track.seen_at = frame.onair, source, self.now()
            track.signer = verdict.signer.name if verdict.ok and verdict.signer else None
            track.rejected = None if verdict.ok else (verdict.reason.value if verdict.reason else "?")
            self.by_onair[frame.onair] = alert_id
        return track, new

    def _ingest(self, topic: str, payload: bytes) -> None:
        t = self.topics
        if topic == t.outbox:
            track, new = self._track(decode(onair_from_message(payload)), "outbox")
            if new:
                text = _quote(track.text)
                if track.genuine:
                    self.say(
                        f"signed     {track.kind} {track.severity} {track.short} by {track.signer}: {text}"
                    )
                else:
                    self.say(
                        f"FORGED     {track.kind} {track.short} published to the outbox: "
                        f"{text} (our check: {track.rejected})"
                    )
        elif topic == t.alerts:
            track, new = self._track(decode(onair_from_message(payload)), "rf")
            if new:
                self.say(f"heard      {track.kind} {track.short} on air first: {_quote(track.text)}")
        elif topic == t.reports:
            self._on_report(payload)
        elif (relay := t.relay_of(topic)) is not None:
            if topic == t.status(relay):
                if payload:
                    status = parse_status(payload)
                    if status.state is not RelayState.OFFLINE:
                        self.statuses[relay] = status
            elif topic == t.events(relay):
                self._on_event(parse_event(payload))

    def _on_report(self, payload: bytes) -> None:
        doc = json.loads(payload)
        frame = decode(onair_from_message(payload))
        key: tuple[object, ...] = (frame.fields.origin_node, doc.get("origin_packet"))
        if frame.fields.origin_node is None:
            key = (frame.alert_id,)
        if key in self._report_keys:
            return
        self._report_keys.add(key)
        verdict = self.verifier.authenticate(frame, time.time())
        origin = frame.fields.origin_node
        handheld = (self.stack.node_name(origin) if origin is not None else None) or "?"
        relay = str(doc.get("relay") or "?")
        signer = verdict.signer.name if verdict.ok and verdict.signer else None
        seen = ReportSeen(frame.alert_id.hex(), handheld, relay, frame.fields.text, signer, self.now())
        self.reports[seen.alert_id] = seen
        self.say(f"report     from {handheld} via {relay}: {_quote(seen.text)}")
        if signer is not None:
            self.say(f"verified   report {seen.alert_id[:8]}: signature ✓ by {signer} (relay key)")
        else:
            self.say(
                f"UNVERIFIED report {seen.alert_id[:8]}: {verdict.reason.value if verdict.reason else '?'}"
            )
        for hook in self.report_hooks:
            result = hook(seen)
            if result is not None:
                task = asyncio.ensure_future(result)
                self._hook_tasks.add(task)
                task.add_done_callback(self._hook_tasks.discard)

    def _on_event(self, event: RelayEvent) -> None:
        track = self.alerts.get(event.alert_id)
        if track is None:
            track = self.alerts[event.alert_id] = AlertTrack(event.alert_id)
        relay = event.relay
        if event.event in (EventKind.RECEIVED, EventKind.HEARD):
            if relay not in track.received_by:
                track.received_by.add(relay)
                self._batch("received", event.alert_id, relay + (" (on air)" if event.via == "rf" else ""))
        elif event.event is EventKind.TRANSMITTED:
            track.transmitted_by.append(relay)
            self._batch("transmitted", event.alert_id, relay)
        elif event.event is EventKind.SUPPRESSED:
            track.suppressed_by.add(relay)
            self._batch("suppressed", event.alert_id, relay)
        elif event.event is EventKind.DROPPED:
            reason = event.reason or "?"
            if relay not in track.dropped_by:
                via = " on air" if event.via == "rf" else ""
                self._batch("dropped", event.alert_id, f"{relay} ({reason}{via})")
            track.dropped_by[relay] = reason

    # -- handhelds ------------------------------------------------------------------------

    def poll_displays(self) -> None:
        for handheld in self.stack.handhelds:
            shown = self.stack.hood.displays(handheld)
            start = self._display_index.get(handheld, 0)
            self._display_index[handheld] = len(shown)
            for d in shown[start:]:
                alert_id = self.by_onair.get(d.text)
                if alert_id is None:
                    try:
                        frame = decode(d.text)
                    except MalformedFrame:
                        self.other_displays[handheld] += 1  # reports, acks, chat
                        continue
                    track, _ = self._track(frame, "rf")
                    alert_id = track.alert_id
                track = self.alerts[alert_id]
                track.displayed[handheld] += 1
                track.displayed_at.setdefault(handheld, self.now())
                self._batch("displayed", alert_id, handheld)


def _quote(text: str, limit: int = 60) -> str:
    text = text.replace("\n", " ")
    return json.dumps(text if len(text) <= limit else text[: limit - 1] + "…", ensure_ascii=False)
