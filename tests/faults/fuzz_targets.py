"""Fuzz targets shared by the hypothesis tests (test_fuzz.py) and the atheris driver
(bench/fuzz_atheris.py): every parser that reads bytes an attacker controls.

Each target takes raw bytes and raises AssertionError if its promise breaks:
* it raises nothing but its own documented error type, and
* it accepts nothing that is not genuine (a frame accepted must be byte-identical to a frame
  a trusted key signed; a bundle accepted must carry the genuine body and signature).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import itertools
import json
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from relayd.core.codec import MalformedFrame, compose, decode
from relayd.core.control import ControlKind, seal
from relayd.core.identity import Identity
from relayd.core.jsonform import MalformedMessage, encode_alert, onair_from_message
from relayd.core.model import AlertFields, Kind, Role, Severity
from relayd.core.status import (
    EventKind,
    LinkState,
    RelayEvent,
    RelayState,
    RelayStatus,
    ReportNote,
    encode_event,
    encode_report_note,
    encode_status,
    parse_event,
    parse_status,
)
from relayd.core.trust import (
    SignedBundle,
    TrustBundleError,
    TrustedKey,
    new_bundle,
    parse_signed_bundle,
    sign_bundle,
)
from relayd.core.verify import Verifier
from relayd.meshapi.framing import MAX_FRAME_PAYLOAD_BYTES, StreamDecoder, encode_frame
from relayd.meshapi.packets import (
    MalformedMessageError,
    parse_from_radio,
    parse_to_radio,
    text_packet,
    to_radio_packet,
)
from relayd.testing.hostile import hostile_payloads

if TYPE_CHECKING:
    from relayd.daemon.relay import Relay
    from tui.model import Model

NOW_S = 1_795_266_848
ROOT = "relayd"
# The topics a relay and the console subscribe to; a whole-handler input's first byte picks one.
HANDLER_TOPICS = (
    f"{ROOT}/outbox",
    f"{ROOT}/alerts",
    f"{ROOT}/reports",
    f"{ROOT}/trust",
    f"{ROOT}/active/e70f58add945c0e0",
    f"{ROOT}/relays/relay-north/status",
    f"{ROOT}/relays/relay-north/events",
    f"{ROOT}/relays/mallory/status",
    f"{ROOT}/relays/fuzz-relay/status",
    f"{ROOT}/unknown/topic",
)


def _identity(name: str, role: Role) -> Identity:
    return Identity(name, role, hashlib.sha256(f"relayd fuzz {name}".encode()).digest())


@dataclass(frozen=True)
class Corpus:
    root: Identity
    signed_bundle: SignedBundle
    bundle_bytes: bytes
    frames: tuple[str, ...]
    messages: tuple[bytes, ...]  # MQTT payloads: alert messages, a status, an event
    device_frames: tuple[bytes, ...]  # stream-framed ToRadio packets


@cache
def corpus() -> Corpus:
    """Genuine inputs to mutate (deterministic keys, so failures replay)."""
    root = _identity("root", Role.ROOT)
    members = {
        "dispatcher": _identity("dispatcher", Role.DISPATCHER),
        "verifier": _identity("verifier", Role.VERIFIER),
        "reporter": _identity("reporter", Role.REPORTER),
        "relay-north": _identity("relay-north", Role.RELAY),
    }
    bundle = new_bundle(
        root.public_key,
        NOW_S - 86400,
        365 * 86400,
        [TrustedKey(i.public_key, n, i.role) for n, i in members.items()],
    )
    signed = sign_bundle(bundle, root.sign)
    frames = []
    for seq, (name, kind, severity, text) in enumerate(
        [
            ("dispatcher", Kind.ALERT, Severity.URGENT, "Police at 5th & Main, observers needed"),
            ("dispatcher", Kind.CANCEL, Severity.INFO, "Cancel: wrong corner"),
            ("verifier", Kind.UPDATE, Severity.WARNING, "Update: two vans on Elm, Café side ñ"),
            ("reporter", Kind.REPORT, Severity.INFO, "smoke on Oak"),
            ("dispatcher", Kind.TEST, Severity.ADVISORY, "Drill"),
        ],
        start=1,
    ):
        ident = members[name]
        fields = AlertFields(
            kind=kind,
            severity=severity,
            key_id=ident.key_id,
            issued_at_s=NOW_S - 5,
            seq=seq,
            expires_at_s=NOW_S + 1800,
            text=text,
            ref=b"\x11" * 8 if kind.needs_reference else None,
            area="9q8yyk" if seq % 2 else None,
        )
        frames.append(compose(fields, ident.sign).onair)
    status = RelayStatus(
        relay="relay-north",
        state=RelayState.ONLINE,
        ts_s=NOW_S,
        version="0.1.0",
        radio=LinkState.CONNECTED,
        radio_device="tcp:127.0.0.1:4403",
        radio_node="!a1b2c3d4",
        broker=LinkState.CONNECTED,
        queue_depth=2,
        airtime_last_hour_s=12.5,
        airtime_budget_per_hour_s=360.0,
        airtime_history_s=(0.0, 2.2),
        transmitted=4,
        suppressed=1,
        heard=9,
        published=9,
        drops={"bad_signature": 3},
        last_heard_s=NOW_S - 3.0,
        clock_warning=None,
        storage_error=None,
        trust_version=1,
    )
    event = RelayEvent("relay-north", EventKind.TRANSMITTED, "e70f58add945c0e0", NOW_S, "rf", None)
    # What relay-north really publishes: sealed status and event, and a report with its note.
    north = members["relay-north"]
    report_fields = AlertFields(
        kind=Kind.REPORT,
        severity=Severity.INFO,
        key_id=north.key_id,
        issued_at_s=NOW_S - 5,
        seq=100,
        expires_at_s=NOW_S + 7200,
        text="two vans at Oak",
        origin_node=0x134DB580,
    )
    report = compose(report_fields, north.sign).to_signed_alert()
    frames.append(report.onair)
    note = ReportNote("relay-north", report.id_hex, 0x134DB580, 77)
    report_doc = json.loads(encode_alert(report))
    report_doc |= {"relay": "relay-north", "origin_packet": 77}
    report_doc["note"] = seal(
        ControlKind.REPORT_NOTE, "relay-north", encode_report_note(note), north.key_id, north.sign
    ).decode()

    def sealed(kind: ControlKind, body: bytes) -> bytes:
        return seal(kind, "relay-north", body, north.key_id, north.sign)

    messages = (
        *tuple(encode_alert(decode(f).to_signed_alert()) for f in frames),
        encode_status(status),
        encode_event(event),
        sealed(ControlKind.STATUS, encode_status(status)),
        sealed(ControlKind.EVENT, encode_event(event)),
        json.dumps(report_doc).encode(),
    )
    device = tuple(
        encode_frame(to_radio_packet(text_packet(f, packet_id=i + 1))) for i, f in enumerate(frames)
    )
    return Corpus(root, signed, signed.to_bytes(), tuple(frames), messages, device)


# --- targets ---------------------------------------------------------------------------------------


def check_frame(data: bytes | str) -> None:
    """decode + Verifier.verify: only MalformedFrame; only genuine frames accepted."""
    c = corpus()
    with contextlib.suppress(MalformedFrame):
        decode(data)
    verdict = Verifier(c.signed_bundle.bundle).verify(data, NOW_S)
    if verdict.ok:
        text = data if isinstance(data, str) else data.decode("utf-8")
        assert text in c.frames, f"forgery accepted: {data!r}"


def check_bundle(data: bytes) -> None:
    """parse_signed_bundle: only TrustBundleError; only the genuine body and signature."""
    c = corpus()
    try:
        got = parse_signed_bundle(data, pinned_root=c.root.public_key)
    except TrustBundleError:
        return
    assert got.body == c.signed_bundle.body, f"forged bundle accepted: {data[:200]!r}"
    assert got.signature == c.signed_bundle.signature


def check_message(data: bytes) -> None:
    """MQTT JSON ingest: onair_from_message, parse_status, parse_event raise only MalformedMessage,
    and what onair_from_message returns goes through the verifier safely."""
    try:
        onair = onair_from_message(data)
    except MalformedMessage:
        onair = None
    if onair is not None:
        assert isinstance(onair, str)
        check_frame(onair)  # the relay verifies the text as is (lone surrogates included)
    for parse in (parse_status, parse_event):
        with contextlib.suppress(MalformedMessage):
            parse(data)


def check_device_stream(data: bytes) -> None:
    """StreamDecoder never raises and yields frames within the limit; the protobuf parsers
    raise only MalformedMessageError."""
    decoder = StreamDecoder()
    half = len(data) // 2
    for chunk in (data[:half], data[half:]):
        for frame in decoder.feed(chunk):
            assert len(frame) <= MAX_FRAME_PAYLOAD_BYTES
            _parse_protobufs(frame)
    _parse_protobufs(data)


def _parse_protobufs(payload: bytes) -> None:
    for parse in (parse_from_radio, parse_to_radio):
        with contextlib.suppress(MalformedMessageError):
            parse(payload)


# --- whole MQTT handlers: the relay's _on_mqtt and the console's Model.ingest ----------------------


@dataclass(frozen=True)
class RelayHarness:
    relay: Relay
    loop: asyncio.AbstractEventLoop


@cache
def relay_harness() -> RelayHarness:
    """A real Relay (real storage in a temp dir, links never started) on the corpus's keys."""
    from relayd.daemon.config import load_config  # noqa: PLC0415 - only the handler targets need these
    from relayd.daemon.relay import Relay  # noqa: PLC0415
    from relayd.testing.harness import write_relay_config  # noqa: PLC0415
    from relayd.testing.keys import make_network  # noqa: PLC0415

    tmp = Path(tempfile.mkdtemp(prefix="relayd-fuzz-"))
    atexit.register(shutil.rmtree, tmp, True)
    members = {"dispatcher": Role.DISPATCHER, "verifier": Role.VERIFIER, "reporter": Role.REPORTER}
    members |= {"fuzz-relay": Role.RELAY, "relay-north": Role.RELAY}
    net = make_network(tmp / "keys", members, now_s=NOW_S, rng=lambda name: _identity(name, Role.ROOT))
    config = write_relay_config(tmp, "fuzz-relay", net, radio_port=1, broker_port=1, topic_root=ROOT)
    loop = asyncio.new_event_loop()
    atexit.register(loop.close)
    return RelayHarness(Relay.load(load_config(config), clock=lambda: NOW_S), loop)


def _split(data: bytes) -> tuple[str, bytes]:
    if not data:
        return HANDLER_TOPICS[0], b""
    return HANDLER_TOPICS[data[0] % len(HANDLER_TOPICS)], data[1:]


def check_relay_mqtt(data: bytes) -> None:
    """Relay._on_mqtt on every topic: never raises, never hits its last-fence handler, and
    queues for the radio only frames a trusted key signed."""
    from relayd.daemon.mqtt import Incoming  # noqa: PLC0415

    h = relay_harness()
    topic, payload = _split(data)
    h.loop.run_until_complete(h.relay._on_mqtt(Incoming(topic, payload, retain=False)))
    assert getattr(h.relay.counters, "handler_errors", 0) == 0, f"handler error on {topic}: {payload[:200]!r}"
    # Only relay-north's key can seal a peer's status; nothing else may become a peer.
    assert {r for r, _ in h.relay.peers.items()} <= {"relay-north"}, f"forged peer from {payload[:200]!r}"
    c = corpus()
    for row in h.relay.queued.values():
        assert row.onair in c.frames, f"forgery queued: {row.onair!r}"


_radio_packets = itertools.count(1)


def check_relay_radio(data: bytes) -> None:
    """Relay._on_radio_text as the radio link hands it a received text (any channel, to
    anyone): never raises, and queues for the radio only frames a trusted key signed."""
    from relayd.daemon.radio import ReceivedText  # noqa: PLC0415

    h = relay_harness()
    head = data[0] if data else 0
    rt = ReceivedText(
        radio="main",
        from_node=0x2000 + (head & 0x0F),
        to_node=0xFFFFFFFF if head & 0x10 else 0x1234,
        packet_id=next(_radio_packets),
        channel=(head >> 5) % 3,
        payload=data[1:],
        rx_time_s=float(NOW_S),
        hop_start=3,
        hop_limit=2,
    )
    h.relay._on_radio_text(rt)
    c = corpus()
    for row in h.relay.queued.values():
        assert row.onair in c.frames, f"forgery queued from RF: {row.onair!r}"


def fresh_genuine_alert(seq: int) -> str:
    """A genuine alert the harness relay has not seen: after fuzzing it must still be taken."""
    ident = _identity("dispatcher", Role.DISPATCHER)
    fields = AlertFields(
        kind=Kind.ALERT,
        severity=Severity.URGENT,
        key_id=ident.key_id,
        issued_at_s=NOW_S - 1,
        seq=seq,
        expires_at_s=NOW_S + 1800,
        text=f"After the fuzz: observers to Elm & {seq}th",
    )
    return compose(fields, ident.sign).onair


@cache
def console() -> Model:
    from relayd.core.topics import Topics  # noqa: PLC0415
    from tui.model import Model  # noqa: PLC0415

    return Model(Topics(ROOT), corpus().signed_bundle.bundle, lambda: NOW_S)


def check_console(data: bytes) -> None:
    """The console's Model.ingest on every topic: never raises, never hits its last fence, and
    calls nothing verified that a trusted key did not sign."""
    from tui.model import VerifyState  # noqa: PLC0415

    model = console()
    topic, payload = _split(data)
    model.ingest(topic, payload)
    assert getattr(model.diagnostics, "handler_errors", 0) == 0, (
        f"handler error on {topic}: {payload[:200]!r}"
    )
    c = corpus()
    for item in model.feed.values():
        if item.state is VerifyState.VERIFIED:
            assert item.alert.onair in c.frames, f"forgery verified: {item.alert.onair!r}"


TARGETS = {
    "frame": check_frame,
    "bundle": check_bundle,
    "message": check_message,
    "device": check_device_stream,
    "relay_mqtt": check_relay_mqtt,
    "relay_radio": check_relay_radio,
    "console": check_console,
}


def seeds(target: str) -> list[bytes]:
    """Genuine inputs for a target, to mutate from."""
    c = corpus()
    if target == "frame":
        return [f.encode() for f in c.frames]
    if target == "bundle":
        return [
            c.bundle_bytes,
            json.dumps({"format": "relayd-trust/1", "body": c.signed_bundle.body}).encode(),
        ]
    if target == "message":
        return [*c.messages, *hostile_payloads("relay-north").values()]
    if target == "relay_radio":
        texts = [f.encode() for f in c.frames]
        texts += [b"!r police at 5th", b"\x07URGENT raid at Oak", b"coffee anyone?", b"\xff\xfe"]
        return [bytes([i]) + t for i in (0x10, 0x11, 0x30, 0x50) for t in texts]
    if target in ("relay_mqtt", "console"):
        payloads = [*c.messages, c.bundle_bytes, *hostile_payloads("relay-north").values()]
        return [bytes([i]) + p for i in range(len(HANDLER_TOPICS)) for p in payloads]
    return list(c.device_frames)
