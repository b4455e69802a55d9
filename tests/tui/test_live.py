"""The console against a real Mosquitto, fed real status, events and signed alerts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import aiomqtt
import pytest
from rich.text import Text
from textual.pilot import Pilot

from relayd.core.codec import compose
from relayd.core.control import ControlKind
from relayd.core.identity import Identity
from relayd.core.jsonform import Envelope, encode_alert
from relayd.core.model import AlertFields, Kind, Role, Severity
from relayd.core.status import (
    EventKind,
    LinkState,
    RelayEvent,
    RelayState,
    RelayStatus,
    encode_event,
    encode_status,
    offline_status,
)
from relayd.core.topics import Topics
from relayd.testing.keys import TestNetwork
from relayd.testing.mosquitto import MosquittoBroker, free_port
from relayd.trustfile import load_bundle
from tests.tui.support import wait_for
from tui.app import RelaydApp
from tui.config import MqttConfig, TuiConfig
from tui.drafts import load_signer
from tui.messages import LinkState as TuiLink
from tui.model import InboxStatus, VerifyState
from tui.outbox import OutboxState
from tui.screens.compose import ComposeScreen, ConfirmScreen
from tui.screens.dialogs import SendProgressScreen

pytestmark = pytest.mark.mosquitto

T = Topics("relayd")
SIZE = (120, 40)


def make_app(broker_url: str, network: TestNetwork, *, key: str | None = "dispatcher") -> RelaydApp:
    mqtt = replace(MqttConfig.from_url(broker_url), retry_initial_s=0.1, retry_max_s=0.5)
    config = TuiConfig(mqtt, trust_path=network.bundle_path, cursor_blink=False)
    signer = load_signer(network.key_path(key)) if key else None
    return RelaydApp(config, signer=signer, bundle=load_bundle(network.bundle_path))


@asynccontextmanager
async def peer(broker: MosquittoBroker, name: str = "test-peer") -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=name) as client:
        yield client


async def connected(pilot: Pilot[None], app: RelaydApp) -> None:
    await wait_for(pilot, lambda: app.link_state is TuiLink.CONNECTED)


class Cells(Protocol):
    """A table of the console: the relay table (a DataTable) or the feed (FeedTable)."""

    def get_cell(self, row_key: str, column: str, /) -> Text | str: ...


def cell_text(table: Cells, row_key: str, column: str) -> str:
    value = table.get_cell(row_key, column)
    return value.plain if isinstance(value, Text) else str(value)


def cell_style(table: Cells, row_key: str, column: str) -> str:
    value = table.get_cell(row_key, column)
    return str(value.style) if isinstance(value, Text) else ""


# A relay process with a real last will: killing it makes the broker publish "offline".
RELAY_SCRIPT = """
import asyncio, sys, aiomqtt
port, topic = int(sys.argv[1]), sys.argv[2]
online, will = bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4])
async def main():
    async with aiomqtt.Client("127.0.0.1", port, identifier="relay-north",
                              will=aiomqtt.Will(topic, will, qos=1, retain=True)) as c:
        await c.publish(topic, online, qos=1, retain=True)
        print("ready", flush=True)
        await asyncio.sleep(120)
asyncio.run(main())
"""


async def test_relay_going_offline_turns_red(mosquitto: MosquittoBroker, network: TestNetwork) -> None:
    online = RelayStatus(
        "relay-north",
        RelayState.ONLINE,
        time.time(),
        radio=LinkState.CONNECTED,
        broker=LinkState.CONNECTED,
        queue_depth=2,
        airtime_history_s=(0.0, 2.2, 4.4),
    )
    will = json.dumps({"v": 1, "relay": "relay-north", "state": "offline"}).encode()
    proc = subprocess.Popen(  # noqa: ASYNC220 - a child we kill; nothing blocks the loop
        [
            sys.executable,
            "-c",
            RELAY_SCRIPT,
            str(mosquitto.port),
            T.status("relay-north"),
            network.seal("relay-north", ControlKind.STATUS, encode_status(online)).hex(),
            network.seal("relay-north", ControlKind.STATUS, will).hex(),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        assert line.strip() == b"ready"
        app = make_app(mosquitto.url, network)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("2")
            table = app.main.relay_table
            await wait_for(pilot, lambda: "relay-north" in app.model.relays)
            assert cell_text(table, "relay-north", "state") == "online"
            assert "red" not in cell_style(table, "relay-north", "relay")
            proc.kill()  # no DISCONNECT: the broker publishes the last will at once
            await wait_for(pilot, lambda: app.model.relays["relay-north"].status.alarming)
            await pilot.pause()
            assert cell_text(table, "relay-north", "state") == "OFFLINE"
            assert "red" in cell_style(table, "relay-north", "state")
            assert "red" in cell_style(table, "relay-north", "relay")
            # What we knew before the will is kept (the will carries only the state).
            assert app.model.relays["relay-north"].status.queue_depth == 2
            assert "relay relay-north: offline" in str(app.main.query_one("#banner").render())
    finally:
        proc.kill()
        proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()


async def test_clock_warning_turns_relay_red(mosquitto: MosquittoBroker, network: TestNetwork) -> None:
    app = make_app(mosquitto.url, network)
    async with app.run_test(size=SIZE) as pilot, peer(mosquitto) as client:
        await connected(pilot, app)
        status = RelayStatus(
            "relay-south",
            RelayState.ONLINE,
            time.time(),
            radio=LinkState.CONNECTED,
            broker=LinkState.CONNECTED,
            clock_warning="clock is 1970",
        )
        await client.publish(
            T.status("relay-south"),
            network.seal("relay-south", ControlKind.STATUS, encode_status(status)),
            qos=1,
            retain=True,
        )
        await wait_for(pilot, lambda: "relay-south" in app.model.relays)
        await pilot.pause()
        assert cell_text(app.main.relay_table, "relay-south", "state") == "CLOCK!"
        assert "red" in cell_style(app.main.relay_table, "relay-south", "relay")


async def test_a_field_report_too_old_to_deliver_turns_its_relay_red(
    mosquitto: MosquittoBroker, network: TestNetwork
) -> None:
    """The relay's signed status counts what its radio heard before relayd connected."""
    app = make_app(mosquitto.url, network)
    async with app.run_test(size=SIZE) as pilot, peer(mosquitto) as client:
        await connected(pilot, app)
        for relay, backlog in (
            ("relay-north", {"late_report": 2, "other": 1}),
            ("relay-south", {"old_report": 1}),
        ):
            status = RelayStatus(
                relay, RelayState.ONLINE, time.time(), radio=LinkState.CONNECTED,
                broker=LinkState.CONNECTED, backlog=backlog,
            )  # fmt: skip
            sealed = network.seal(relay, ControlKind.STATUS, encode_status(status))
            await client.publish(T.status(relay), sealed, qos=1, retain=True)
        await wait_for(pilot, lambda: {"relay-north", "relay-south"} <= set(app.model.relays))
        await pilot.pause()
        table = app.main.relay_table
        assert cell_text(table, "relay-south", "state") == "BKLOG!"
        assert "red" in cell_style(table, "relay-south", "relay")
        # Late reports were delivered: nothing to alarm about.
        assert "red" not in cell_style(table, "relay-north", "relay")
        banner = str(app.main.query_one("#banner").render())
        assert "1 field report(s) heard before relayd connected" in banner


async def test_new_urgent_alert_appears_verified_once(
    mosquitto: MosquittoBroker, network: TestNetwork
) -> None:
    app = make_app(mosquitto.url, network)
    alert = network.sign("dispatcher", "Raid at 5th & Pine, observers needed", area="9q8yyk")
    async with app.run_test(size=SIZE) as pilot, peer(mosquitto) as client:
        await connected(pilot, app)
        # The same alert arrives from the outbox, from two relays and as retained active.
        await client.publish(T.outbox, encode_alert(alert), qos=1)
        await client.publish(T.alerts, encode_alert(alert, Envelope(relay="relay-north", via="mqtt")), qos=1)
        await client.publish(T.alerts, encode_alert(alert, Envelope(relay="relay-south", via="rf")), qos=1)
        await client.publish(T.active(alert.id_hex), encode_alert(alert), qos=1, retain=True)
        event = RelayEvent("relay-north", EventKind.TRANSMITTED, alert.id_hex, time.time(), via="rf")
        await client.publish(
            T.events("relay-north"),
            network.seal("relay-north", ControlKind.EVENT, encode_event(event)),
            qos=1,
        )
        table = app.main.feed_table
        await wait_for(
            pilot,
            lambda: alert.id_hex in app.model.feed and app.model.feed[alert.id_hex].transmitted_by() != [],
        )
        await pilot.pause()
        item = app.model.feed[alert.id_hex]
        assert item.state is VerifyState.VERIFIED
        assert item.active is True
        assert table.row_count == 1  # shown once, relay info merged
        assert cell_text(table, alert.id_hex, "verify") == "✓ dispatcher (dispatcher)"
        assert cell_text(table, alert.id_hex, "sev") == "URG"
        assert "red" in cell_style(table, alert.id_hex, "sev")
        assert cell_text(table, alert.id_hex, "relays") == "north⇡ south"


async def test_forged_alerts_are_rejected_with_reason(
    mosquitto: MosquittoBroker, network: TestNetwork
) -> None:
    app = make_app(mosquitto.url, network)
    genuine = network.sign("dispatcher", "All quiet at the park", severity=Severity.INFO)
    # Tampered text: the frame still parses, but the signature no longer matches.
    tampered_onair = genuine.onair.replace("quiet", "RAID!")
    # A key the network never trusted.
    stranger = Identity.generate("mallory", Role.DISPATCHER)
    now = int(time.time())
    fields = AlertFields(Kind.ALERT, Severity.URGENT, stranger.key_id, now, 1, now + 600, "Evacuate now")
    unknown = compose(fields, stranger.sign).to_signed_alert()
    # A reporter may not sign a confirmed alert.
    by_reporter = network.sign("reporter", "I am a dispatcher, trust me")
    async with app.run_test(size=SIZE) as pilot, peer(mosquitto) as client:
        await connected(pilot, app)
        await client.publish(T.outbox, tampered_onair.encode(), qos=1)
        await client.publish(T.alerts, encode_alert(unknown), qos=1)
        await client.publish(T.outbox, encode_alert(by_reporter), qos=1)
        await wait_for(pilot, lambda: app.model.diagnostics.rejected_total == 3)
        await pilot.pause()
        # Not in the feed (a flood of forgeries would evict genuine alerts), and their text is
        # kept nowhere: only id, kind and reason, in the diagnostics ring.
        assert not app.model.feed
        reasons = {r.alert_id: r.reason.value for r in app.model.diagnostics.rejected if r.reason}
        assert reasons[unknown.id_hex] == "unknown_key"
        assert reasons[by_reporter.id_hex] == "role_not_allowed"
        assert sorted(reasons.values()) == ["bad_signature", "role_not_allowed", "unknown_key"]
        assert not any("RAID" in repr(r) or "Evacuate" in repr(r) for r in app.model.diagnostics.rejected)


async def test_malformed_messages_are_counted_not_fatal(
    mosquitto: MosquittoBroker, network: TestNetwork
) -> None:
    app = make_app(mosquitto.url, network)
    async with app.run_test(size=SIZE) as pilot, peer(mosquitto) as client:
        await connected(pilot, app)
        await client.publish(T.alerts, b"\xff\xfe not utf-8", qos=1)
        await client.publish(T.outbox, b'{"v":1,"onair":"no token here"}', qos=1)
        await client.publish(T.reports, b"[1,2,3]", qos=1)
        await client.publish(T.status("relay-x"), b'{"v":1,"relay":"relay-x","state":"bogus"}', qos=1)
        await client.publish(T.events("relay-x"), b"{}", qos=1)
        await client.publish(T.trust, b"not a bundle", qos=1)
        # Unsigned status and events are not malformed but not believed either.
        d = app.model.diagnostics
        await wait_for(pilot, lambda: d.malformed_total == 4 and d.unverified == {"unsigned": 2})
        await pilot.press("5")
        await pilot.pause()
        text = str(app.main.query_one("#diag-view").render())
        assert "no token line" in text
        assert not app.model.feed


async def test_report_confirm_compose_sign_publish_is_accepted_by_cli(
    mosquitto: MosquittoBroker, network: TestNetwork
) -> None:
    report = network.sign(
        "relay-north", "Two ICE vans on Elm St, people detained", kind=Kind.REPORT, severity=Severity.WARNING
    )
    app = make_app(mosquitto.url, network)
    received: list[bytes] = []
    async with app.run_test(size=SIZE) as pilot, peer(mosquitto, "outbox-watcher") as watcher:
        await watcher.subscribe(T.outbox, qos=1)

        async def collect() -> None:
            async for message in watcher.messages:
                assert isinstance(message.payload, bytes)
                received.append(message.payload)

        collector = asyncio.create_task(collect())
        await connected(pilot, app)
        await watcher.publish(T.reports, encode_alert(report, Envelope(relay="relay-north", via="rf")), qos=1)
        await wait_for(pilot, lambda: report.id_hex in app.model.inbox)
        await pilot.press("3")
        await pilot.pause()
        inbox = app.main.inbox_table
        assert inbox.row_count == 1
        assert app.model.feed[report.id_hex].state is VerifyState.REPORT

        # Dispatch a verifier (recorded locally), then confirm the report.
        await pilot.press("v")
        await pilot.press(*"team-2", "enter")
        await pilot.pause()
        assert app.model.inbox[report.id_hex].status is InboxStatus.VERIFIER_DISPATCHED
        assert cell_text(inbox, report.id_hex, "status") == "→ team-2"

        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
        compose_screen = app.screen
        assert isinstance(compose_screen, ComposeScreen)
        assert compose_screen.draft.text == report.fields.text
        assert compose_screen.draft.kind is Kind.ALERT
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, SendProgressScreen))
        await wait_for(pilot, lambda: len(received) >= 1)
        sent_id = app.model.inbox[report.id_hex].confirmed_by
        assert sent_id is not None
        entry = app.outbox.get(sent_id)
        assert entry is not None
        assert entry.state is OutboxState.SENT
        assert app.model.inbox[report.id_hex].status is InboxStatus.CONFIRMED

        # A relay reports that it transmitted it: the progress screen says so.
        event = RelayEvent("relay-center", EventKind.TRANSMITTED, sent_id, time.time(), via="rf")
        await watcher.publish(
            T.events("relay-center"),
            network.seal("relay-center", ControlKind.EVENT, encode_event(event)),
            qos=1,
        )
        await wait_for(pilot, lambda: app.model.feed[sent_id].transmitted_by() == ["relay-center"])
        await pilot.pause(0.3)
        assert "on air by relay-center" in str(app.screen.query_one("#progress").render())
        collector.cancel()

    doc = json.loads(received[0])
    assert doc["id"] == sent_id
    assert doc["signer"] == {"name": "dispatcher", "role": "dispatcher"}
    verdict = subprocess.run(  # noqa: ASYNC221 - after the app has exited
        [
            sys.executable,
            "-m",
            "relayd",
            "alert",
            "verify",
            "--trust",
            str(network.bundle_path),
            "--root",
            str(network.pub_path("root")),
        ],
        input=doc["onair"].encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    result = json.loads(verdict.stdout)
    assert result["ok"] is True
    assert result["signer"] == {"name": "dispatcher", "role": "dispatcher"}
    assert result["alert"]["text"] == report.fields.text


async def test_update_from_active_alert_is_one_keystroke(
    mosquitto: MosquittoBroker, network: TestNetwork
) -> None:
    alert = network.sign("dispatcher2", "Checkpoint at Oak & 9th", severity=Severity.WARNING, area="zone-3")
    app = make_app(mosquitto.url, network)
    async with app.run_test(size=SIZE) as pilot, peer(mosquitto) as client:
        await connected(pilot, app)
        await client.publish(T.active(alert.id_hex), encode_alert(alert), qos=1, retain=True)
        await wait_for(pilot, lambda: alert.id_hex in app.model.feed)
        await pilot.pause()
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
        screen = app.screen
        assert isinstance(screen, ComposeScreen)
        assert screen.draft.kind is Kind.ALLCLEAR
        assert screen.draft.ref == alert.id_hex
        assert screen.draft.area == "zone-3"


async def test_unreachable_broker_shows_banner_then_connects(tmp_path: Path, network: TestNetwork) -> None:
    port = free_port()
    app = make_app(f"mqtt://127.0.0.1:{port}", network)
    broker = MosquittoBroker(tmp_path / "late-broker", port=port)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.link_state is TuiLink.RETRYING)
        banner = app.main.query_one("#banner")
        await pilot.pause()
        assert banner.display
        assert "unreachable" in str(banner.render())
        assert "retrying in" in str(banner.render())
        broker.start()
        try:
            await wait_for(pilot, lambda: app.link_state is TuiLink.CONNECTED, timeout_s=10)
            await pilot.pause()
            assert not banner.display
        finally:
            broker.stop()


async def test_newer_bundle_on_mqtt_replaces_file_and_revokes(
    mosquitto: MosquittoBroker, network: TestNetwork
) -> None:
    alert = network.sign("dispatcher2", "Vans leaving the depot", severity=Severity.WARNING)
    app = make_app(mosquitto.url, network)
    async with app.run_test(size=SIZE) as pilot, peer(mosquitto) as client:
        await connected(pilot, app)
        await client.publish(T.alerts, encode_alert(alert), qos=1)
        await wait_for(pilot, lambda: alert.id_hex in app.model.feed)
        assert app.model.feed[alert.id_hex].state is VerifyState.VERIFIED
        old = network.bundle
        newer = replace(old, version=old.version + 1).with_revoked(alert.fields.key_id)
        signed = network.resign(newer)
        await client.publish(T.trust, signed.to_bytes(), qos=1, retain=True)
        await wait_for(
            pilot, lambda: app.model.trust.bundle is not None and app.model.trust.bundle.version == 2
        )
        await pilot.pause()
        assert app.model.feed[alert.id_hex].reason is not None
        assert cell_text(app.main.feed_table, alert.id_hex, "verify") == "✗ revoked"
        # An older bundle is ignored.
        await client.publish(T.trust, network.signed_bundle.to_bytes(), qos=1, retain=True)
        offline = encode_status(offline_status("relay-north"))
        await client.publish(
            T.status("relay-north"), network.seal("relay-north", ControlKind.STATUS, offline), qos=1
        )
        await wait_for(pilot, lambda: "relay-north" in app.model.relays)
        assert app.model.trust.bundle is not None
        assert app.model.trust.bundle.version == 2


async def test_diagnostics_count_good_messages_too(mosquitto: MosquittoBroker, network: TestNetwork) -> None:
    app = make_app(mosquitto.url, network)
    alert = network.sign("dispatcher", "Vans at the depot", severity=Severity.WARNING)
    async with app.run_test(size=SIZE) as pilot, peer(mosquitto) as client:
        await connected(pilot, app)
        await pilot.press("5")
        await pilot.pause()
        await client.publish(T.alerts, encode_alert(alert), qos=1)
        await wait_for(pilot, lambda: alert.id_hex in app.model.feed)
        await pilot.pause(1.2)  # one clock tick
        text = str(app.main.query_one("#diag-view").render())
        assert "nothing received yet" not in text
        assert "alerts       0 / 1" in text
