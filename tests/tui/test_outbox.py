"""The outbox: an alert signed while the broker is down is kept, shown as waiting, and sent
exactly once when the broker returns; an expired one is never sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import aiomqtt
import pytest
from textual.pilot import Pilot
from textual.widgets import Input, TextArea

from relayd.core.jsonform import encode_alert
from relayd.core.topics import Topics
from relayd.testing.keys import TestNetwork
from relayd.testing.mosquitto import MosquittoBroker, free_port
from relayd.trustfile import load_bundle
from tests.tui.support import wait_for
from tui.app import RelaydApp
from tui.config import MqttConfig, TuiConfig
from tui.drafts import load_signer
from tui.messages import LinkState as TuiLink
from tui.model import Model
from tui.outbox import (
    Outbox,
    OutboxFileError,
    OutboxState,
    acknowledged,
    delivery,
    from_json,
    new_entry,
    settle,
    to_json,
)
from tui.screens.compose import ComposeScreen, ConfirmScreen
from tui.screens.dialogs import SendProgressScreen

T = Topics("relayd")
SIZE = (120, 40)


class Clock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def make_app(
    port: int, network: TestNetwork, state: Path, *, retry_s: float = 0.2, clock: Clock | None = None
) -> RelaydApp:
    mqtt = replace(
        MqttConfig.from_url(f"mqtt://127.0.0.1:{port}"), retry_initial_s=retry_s, retry_max_s=retry_s
    )
    config = TuiConfig(mqtt, trust_path=network.bundle_path, cursor_blink=False, state_dir=state)
    signer = load_signer(network.key_path("dispatcher"))
    bundle = load_bundle(network.bundle_path)
    if clock is None:
        return RelaydApp(config, signer=signer, bundle=bundle)
    return RelaydApp(config, signer=signer, bundle=bundle, clock=clock)


@asynccontextmanager
async def outbox_counter(port: int) -> AsyncIterator[list[bytes]]:
    """Every message published to <root>/outbox, as a separate subscriber sees it."""
    received: list[bytes] = []
    async with aiomqtt.Client("127.0.0.1", port, identifier="outbox-counter") as client:
        await client.subscribe(T.outbox, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                received.append(message.payload)

        task = asyncio.create_task(collect())
        try:
            yield received
        finally:
            task.cancel()


def outbox_state(app: RelaydApp, alert_id: str) -> OutboxState:
    entry = app.outbox.get(alert_id)
    assert entry is not None, f"{alert_id} is not in the outbox"
    return entry.state


async def compose_and_send(pilot: Pilot[None], app: RelaydApp, text: str, lifetime: str = "30m") -> str:
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
    screen = app.screen
    screen.query_one("#text", TextArea).insert(text)
    screen.query_one("#lifetime", Input).value = lifetime
    await pilot.pause()
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    await pilot.press("y")
    await wait_for(pilot, lambda: isinstance(app.screen, SendProgressScreen))
    progress = app.screen
    assert isinstance(progress, SendProgressScreen)
    return progress.alert_id


def progress_text(app: RelaydApp) -> str:
    screen = app.screen
    assert isinstance(screen, SendProgressScreen)
    text, hint = screen.progress()
    return text.plain + "\n" + hint


# ---- pure -----------------------------------------------------------------------------


def test_entry_round_trips_and_settles(network: TestNetwork) -> None:
    alert = network.sign("dispatcher", "Vans at the depot", lifetime_s=600)
    entry = new_entry(alert, encode_alert(alert), 100.0)
    assert from_json(to_json(entry)) == entry
    assert entry.due(alert.fields.expires_at_s - 1)
    assert not entry.due(alert.fields.expires_at_s)
    assert settle(entry, alert.fields.expires_at_s).state is OutboxState.EXPIRED
    sent = acknowledged(entry, 101.0)
    assert settle(sent, alert.fields.expires_at_s) is sent
    # Resent after a PUBACK and then expired: it was sent, never "expired unsent".
    resent = replace(sent, state=OutboxState.WAITING)
    assert settle(resent, alert.fields.expires_at_s).state is OutboxState.SENT


def test_delivery_says_only_what_is_known(network: TestNetwork) -> None:
    alert = network.sign("dispatcher", "Vans at the depot", lifetime_s=600)
    entry = new_entry(alert, encode_alert(alert), 100.0)
    now = alert.fields.issued_at_s + 1
    assert delivery(entry, {}, now).label == "waiting for broker"
    assert not delivery(entry, {"relay-north": {"transmitted"}}, now).sent
    assert delivery(entry, {}, alert.fields.expires_at_s).label == "expired unsent"
    sent = acknowledged(entry, 101.0)
    assert delivery(sent, {}, now).label == "sent to relays"
    assert delivery(sent, {"relay-north": {"received", "taken"}}, now).label == "taken by relay-north"
    both = {"relay-north": {"taken"}, "relay-south": {"transmitted"}}
    assert delivery(sent, both, now).label == "on air by relay-south"


def test_unreadable_files_are_set_aside(tmp_path: Path, network: TestNetwork) -> None:
    alert = network.sign("dispatcher", "Vans at the depot")
    box = Outbox(tmp_path)
    box.put(new_entry(alert, encode_alert(alert), float(alert.fields.issued_at_s)))
    (tmp_path / "0000000000000000.json").write_text("{not json")
    # A file whose id does not match the alert inside it.
    other = network.sign("dispatcher", "Another")
    doc = to_json(new_entry(other, encode_alert(other), 1.0)).replace(other.id_hex.encode(), b"f" * 16, 1)
    (tmp_path / "ffffffffffffffff.json").write_bytes(doc)
    with pytest.raises(OutboxFileError):
        from_json(doc)
    again = Outbox(tmp_path)
    loaded = again.load(float(alert.fields.issued_at_s))
    assert [e.alert_id for e in loaded] == [alert.id_hex]
    assert len(again.unreadable) == 2
    assert sorted(p.name for p in tmp_path.glob("*.unreadable")) == [
        "0000000000000000.unreadable",
        "ffffffffffffffff.unreadable",
    ]


# ---- against a real Mosquitto ---------------------------------------------------------

pytestmark_live = pytest.mark.mosquitto


@pytestmark_live
async def test_compose_while_broker_down_is_sent_once_when_it_returns(
    tmp_path: Path, network: TestNetwork
) -> None:
    port = free_port()
    # Retries 0.5-1 s apart: the counting subscriber is in place before the console reconnects.
    app = make_app(port, network, tmp_path / "state", retry_s=1.0)
    broker = MosquittoBroker(tmp_path / "broker", port=port)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.link_state is TuiLink.RETRYING)
        alert_id = await compose_and_send(pilot, app, "Raid at 5th & Pine, observers needed")
        await pilot.pause(0.3)
        text = progress_text(app)
        assert "waiting for the broker: not connected, not sent yet" in text
        assert "stays in the outbox" in text
        # Nothing that contradicts "not sent": no word of relays, no acknowledgement.
        assert "relay" not in text
        assert "acknowledged" not in text
        entry = app.outbox.get(alert_id)
        assert entry is not None
        assert entry.state is OutboxState.WAITING
        assert (tmp_path / "state" / "outbox" / f"{alert_id}.json").is_file()
        await pilot.press("escape")
        await pilot.pause()
        assert "outbox 1 unsent" in str(app.main.query_one("#status-bar").render())
        await pilot.press("o")
        await pilot.pause()
        assert str(app.main.outbox_table.get_cell(alert_id, "state")) == "waiting for broker"

        broker.start()
        try:
            async with outbox_counter(port) as received:
                assert app.link_state is not TuiLink.CONNECTED, "console reconnected before the counter"
                await wait_for(pilot, lambda: len(received) >= 1, timeout_s=10)
                await wait_for(pilot, lambda: outbox_state(app, alert_id) is OutboxState.SENT)
                # A few more ticks and a reconnect: still exactly one copy.
                await pilot.pause(1.5)
                assert len(received) == 1
                assert alert_id.encode() in received[0]
                await pilot.pause()
                assert str(app.main.outbox_table.get_cell(alert_id, "state")) == "sent to relays"
                assert "unsent" not in str(app.main.query_one("#status-bar").render())
        finally:
            broker.stop()


@pytestmark_live
async def test_outbox_survives_a_restart(tmp_path: Path, network: TestNetwork) -> None:
    port = free_port()
    state = tmp_path / "state"
    first = make_app(port, network, state)
    async with first.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: first.link_state is TuiLink.RETRYING)
        alert_id = await compose_and_send(pilot, first, "Checkpoint on Oak & 9th")
    with MosquittoBroker(tmp_path / "broker", port=port) as _broker:
        async with outbox_counter(port) as received:
            second = make_app(port, network, state)
            async with second.run_test(size=SIZE) as pilot:
                # Shown at once, before the broker link is up.
                assert alert_id in second.model.feed
                await wait_for(pilot, lambda: len(received) >= 1, timeout_s=10)
                await wait_for(pilot, lambda: outbox_state(second, alert_id) is OutboxState.SENT)
                await pilot.pause(1.2)
            assert len(received) == 1
            assert alert_id.encode() in received[0]
    # And a third start does not send it again.
    assert from_json((state / "outbox" / f"{alert_id}.json").read_bytes()).state is OutboxState.SENT


@pytestmark_live
async def test_expired_alert_is_never_sent(tmp_path: Path, network: TestNetwork) -> None:
    port = free_port()
    clock = Clock(float(network.bundle.issued_at_s) + 60)
    app = make_app(port, network, tmp_path / "state", clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.link_state is TuiLink.RETRYING)
        alert_id = await compose_and_send(pilot, app, "Short-lived", lifetime="2m")
        clock.now_s += 180
        with MosquittoBroker(tmp_path / "broker", port=port) as _broker:
            async with outbox_counter(port) as received:
                await wait_for(pilot, lambda: app.link_state is TuiLink.CONNECTED, timeout_s=10)
                await wait_for(pilot, lambda: outbox_state(app, alert_id) is OutboxState.EXPIRED)
                await pilot.pause(0.5)
                text = progress_text(app)
                assert "expired before the broker had it: never sent" in text
                assert "waiting" not in text
                app.resend(alert_id)
                await pilot.pause(1.2)
                assert received == []


@pytest.mark.parametrize(
    ("state", "connected", "events"),
    [
        ("waiting", False, {}),
        ("waiting", True, {}),
        ("waiting", False, {"relay-north": {"transmitted"}}),  # an echo cannot make it sent
        ("sent", True, {}),
        ("sent", False, {"relay-north": {"received", "taken"}}),
        ("sent", True, {"relay-north": {"taken", "transmitted"}, "relay-south": {"dropped"}}),
        ("expired", True, {}),
        ("discarded", False, {}),
    ],
)
def test_send_dialog_never_contradicts_itself(
    tmp_path: Path, network: TestNetwork, state: str, connected: bool, events: dict[str, set[str]]
) -> None:
    alert = network.sign("dispatcher", "Raid at 5th & Pine", lifetime_s=600)
    now = float(alert.fields.issued_at_s) + 10
    model = Model(T, network.bundle, lambda: now if state != "expired" else now + 1000)
    model.add_sent(alert, encode_alert(alert))
    model.feed[alert.id_hex].relays.update(events)
    box = Outbox(None)
    entry = new_entry(alert, encode_alert(alert), now)
    if state == "sent":
        entry = acknowledged(entry, now)
    elif state == "discarded":
        entry = replace(entry, state=OutboxState.DISCARDED)
    box.put(entry)
    text, hint = SendProgressScreen(model, box, alert.id_hex, lambda: connected).progress()
    said = text.plain + "\n" + hint
    unsent = state != "sent"
    if unsent:
        for claim in (
            "acknowledged",
            "relays have it",
            "on air",
            "taken",
            "keep sending",
            "waiting for a relay",
        ):
            assert claim not in said, (claim, said)
    else:
        assert "not sent" not in said
        assert "never sent" not in said
        assert "waiting for the broker" not in said
    if state == "expired":
        assert "never sent" in said
        assert "waiting" not in said
    if state == "sent" and "transmitted" in events.get("relay-north", set()):
        assert "on air by relay-north" in said
        assert "waiting for a relay to transmit" not in said
