"""Helpers for the TUI tests: deterministic networks, bounded waits, a plain MQTT peer."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from textual.pilot import Pilot

from relayd.core.control import ControlKind
from relayd.core.identity import Identity
from relayd.core.jsonform import Envelope, encode_alert
from relayd.core.model import Kind, Role, Severity
from relayd.core.status import (
    EventKind,
    LinkState,
    RelayEvent,
    RelayState,
    RelayStatus,
    encode_event,
    encode_status,
)
from relayd.core.topics import Topics
from relayd.testing.keys import TestNetwork, make_network
from relayd.trustfile import load_bundle
from tui.app import Panel, RelaydApp
from tui.config import TuiConfig
from tui.drafts import load_signer

# A fixed instant for snapshots: 2026-11-21T13:14:08Z.
FIXED_NOW_S = 1_795_266_848.0

# What the app under test returns when it exits (textual's Pilot is generic, and invariant, in it).
AppResult = TypeVar("AppResult")


def seeded_identity(name: str) -> Identity:
    """Deterministic keys, so key ids, alert ids and signatures are stable across runs."""
    return Identity(name, Role.ROOT, hashlib.sha256(b"relayd-tui-test:" + name.encode()).digest())


def fixed_network(directory: Path) -> TestNetwork:
    return make_network(directory, now_s=FIXED_NOW_S, rng=seeded_identity)


async def wait_for(pilot: Pilot[AppResult], predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll `predicate` between UI pauses, up to `timeout_s`; fail with a clear message."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.02)
    if not predicate():
        raise AssertionError(f"condition not met within {timeout_s} s")


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)


def snapshot_app(
    network: TestNetwork,
    *,
    key: str | None = "dispatcher",
    dark: bool = True,
    extra_panels: Sequence[Panel] = (),
) -> RelaydApp:
    """An app with no broker, a frozen clock and no cursor blink: deterministic screenshots."""
    config = TuiConfig(None, cursor_blink=False, dark=dark)
    signer = load_signer(network.key_path(key)) if key else None
    return RelaydApp(
        config,
        signer=signer,
        bundle=load_bundle(network.bundle_path),
        clock=lambda: FIXED_NOW_S,
        tick_interval_s=0,
        extra_panels=extra_panels,
    )


def populate(app: RelaydApp, network: TestNetwork) -> dict[str, str]:
    """A realistic evening: relays in every state, alerts of every kind, a forged one, reports."""
    t = Topics("relayd")
    now = FIXED_NOW_S
    history = tuple(float((i * 7) % 11) * 0.6 for i in range(60))
    statuses = [
        RelayStatus(
            "relay-north",
            RelayState.ONLINE,
            now - 3,
            "0.1.0",
            LinkState.CONNECTED,
            "/dev/ttyACM0",
            "!a1b2c3d4",
            LinkState.CONNECTED,
            0,
            44.0,
            360.0,
            history,
            12,
            4,
            31,
            31,
            {"duplicate": 12, "bad_signature": 1},
            now - 20,
            None,
            None,
            1,
            backlog={"late_report": 2, "other": 3},  # restarted: two reports delivered late
        ),
        RelayStatus(
            "relay-center",
            RelayState.ONLINE,
            now - 5,
            "0.1.0",
            LinkState.CONNECTED,
            "tcp:10.0.0.7:4403",
            "!0badcafe",
            LinkState.CONNECTED,
            3,
            120.0,
            360.0,
            tuple(reversed(history)),
            30,
            1,
            40,
            40,
            {"rate_limited": 2},
            now - 90,
            "clock jumped back 2 h: not trusted until NTP or GPS",
            None,
            1,
        ),
        RelayStatus(
            "relay-south",
            RelayState.ONLINE,
            now - 600,
            "0.1.0",
            LinkState.CONNECTED,
            "/dev/ttyUSB0",
            "!5e5e5e5e",
            LinkState.CONNECTED,
            0,
            2.0,
            360.0,
            (),
            1,
            0,
            3,
            3,
            {},
            now - 700,
            None,
            None,
            1,
        ),
    ]
    for s in statuses:
        app.ingest(t.status(s.relay), network.seal(s.relay, ControlKind.STATUS, encode_status(s)))
    offline = json.dumps({"v": 1, "relay": "relay-south", "state": "offline"}).encode()
    app.ingest(t.status("relay-south"), network.seal("relay-south", ControlKind.STATUS, offline))

    raid = network.sign(
        "dispatcher",
        "ICE raid at 5th & Pine. Observers to the NE corner, stay on sidewalk.",
        now_s=now - 300,
        area="9q8yyk",
    )
    update = network.sign(
        "dispatcher2",
        "Update: 3 vans, moving north on Pine. Need 2 more observers.",
        kind=Kind.UPDATE,
        severity=Severity.URGENT,
        now_s=now - 120,
        ref=raid.alert_id,
        area="9q8yyk",
    )
    advisory = network.sign(
        "dispatcher2",
        "Know-your-rights training tonight 7pm at the library.",
        severity=Severity.ADVISORY,
        lifetime_s=6 * 3600,
        now_s=now - 3000,
    )
    drill = network.sign(
        "dispatcher",
        "Monthly drill, no action needed",
        kind=Kind.TEST,
        severity=Severity.INFO,
        now_s=now - 4000,
        lifetime_s=600,
    )
    forged_onair = network.sign(
        "dispatcher",
        "All clear at 5th & Pine, go home",
        kind=Kind.ALERT,
        severity=Severity.WARNING,
        now_s=now - 60,
    ).onair.replace("go home", "go away")
    report = network.sign(
        "relay-north",
        "!r cops at the school gate, 4 cars",
        kind=Kind.REPORT,
        severity=Severity.WARNING,
        now_s=now - 45,
    )
    report2 = network.sign(
        "reporter",
        "Checkpoint on Oak & 9th? not sure",
        kind=Kind.REPORT,
        severity=Severity.ADVISORY,
        now_s=now - 30,
        area="zone-3",
    )
    app.ingest(t.outbox, encode_alert(drill))
    app.ingest(t.alerts, encode_alert(advisory, Envelope(relay="relay-center", via="mqtt")))
    app.ingest(t.outbox, encode_alert(raid))
    for relay, via in (("relay-north", "mqtt"), ("relay-center", "rf"), ("relay-south", "rf")):
        app.ingest(t.alerts, encode_alert(raid, Envelope(relay=relay, via=via)))
    app.ingest(t.active(raid.id_hex), encode_alert(raid))
    app.ingest(
        t.events("relay-north"),
        network.seal(
            "relay-north",
            ControlKind.EVENT,
            encode_event(RelayEvent("relay-north", EventKind.TRANSMITTED, raid.id_hex, now - 298)),
        ),
    )
    app.ingest(t.alerts, encode_alert(update, Envelope(relay="relay-north", via="mqtt")))
    app.ingest(
        t.events("relay-center"),
        network.seal(
            "relay-center",
            ControlKind.EVENT,
            encode_event(RelayEvent("relay-center", EventKind.TRANSMITTED, update.id_hex, now - 118)),
        ),
    )
    app.ingest(t.outbox, forged_onair.encode())
    app.ingest(t.reports, encode_alert(report, Envelope(relay="relay-north", via="rf")))
    app.ingest(t.reports, encode_alert(report2))
    # Responders' answers to the raid, wrapped by a relay: two on their way, one cannot come.
    for node, word, ago in ((0x11111111, "!omw", 200), (0x22222222, "!y", 150), (0x33333333, "!n", 100)):
        answer = network.sign(
            "relay-north", word, kind=Kind.REPORT, severity=Severity.INFO, now_s=now - ago,
            ref=raid.alert_id, origin_node=node,
        )  # fmt: skip
        app.ingest(t.reports, encode_alert(answer, Envelope(relay="relay-north", via="rf")))
    app.ingest(t.alerts, b"{not json")
    return {"raid": raid.id_hex, "update": update.id_hex, "report": report.id_hex}
