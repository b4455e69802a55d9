"""Responders answer an alert from stock handhelds and the console counts them: the demo's
relays and simulated radios, a real Mosquitto, the console driven through Pilot."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import aiomqtt
import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from relayd.core.jsonform import Envelope, encode_alert
from relayd.core.model import Role, Severity
from relayd.demo.stack import DemoOptions
from relayd.testing.mosquitto import MosquittoBroker
from tests.demo.test_console import QUICK
from tui.demo import demo_session
from tui.screens.detail import DetailScreen

pytestmark = pytest.mark.mosquitto
SIZE = (120, 40)


async def wait_for(pilot: Pilot[None], predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await pilot.pause(0.05)


def lossless_neighborhood(tmp_path: Path) -> Path:
    """The packaged neighborhood without link loss: one answer, sent once with no retry by a
    stock handheld, must reach a relay for the count to be exact."""
    text = resources.files("relayd").joinpath("data/neighborhood.toml").read_text(encoding="utf-8")
    path = tmp_path / "neighborhood.toml"
    path.write_text(re.sub(r"(?m)^loss = .*$", "loss = 0.0", text), encoding="utf-8")
    return path


async def test_answers_from_handhelds_are_counted_on_the_alert_row_and_in_detail(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    options = DemoOptions(broker_url=mosquitto.url, scenario_path=lossless_neighborhood(tmp_path))
    async with (
        demo_session(options, plan=QUICK, cursor_blink=False) as (stack, app),
        app.run_test(size=SIZE) as pilot,
    ):
        alert = stack.network.sign("dispatcher", "ICE at Oak & 5th: observers", severity=Severity.URGENT)
        envelope = Envelope(signer_name="dispatcher", signer_role=Role.DISPATCHER.value)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish(stack.topics.outbox, encode_alert(alert, envelope), qos=1)

        def shown_on(handheld: str) -> int:
            return next((d.packet_id for d in stack.hood.displays(handheld) if d.text == alert.onair), 0)

        await wait_for(pilot, lambda: all(shown_on(h) for h in ("hh-alice", "hh-bob", "hh-carol")), 30)
        await wait_for(pilot, lambda: alert.id_hex in app.main.feed_table.rows, 10)
        assert app.main.feed_table.get_cell(alert.id_hex, "resp").plain == ""

        stack.hood.handheld_send("hh-alice", "!omw")
        stack.hood.handheld_send("hh-bob", "\U0001f44d", reply_id=shown_on("hh-bob"), emoji=True)
        stack.hood.handheld_send("hh-carol", "!n")
        item = app.model.feed[alert.id_hex]
        await wait_for(pilot, lambda: len(app.model.responders.answers(alert.id_hex)) == 3, 30)
        await pilot.pause(0.2)
        assert item.responding == 2, "on my way and a thumbs-up respond; no does not"
        assert app.main.feed_table.get_cell(alert.id_hex, "resp").plain == "2"
        # Answers are not field reports: the inbox stays as it was.
        assert all(e.alert_id != alert.id_hex for e in app.model.inbox.values())

        app.main.feed_table.move_cursor(row=app.main.feed_table.get_row_index(alert.id_hex))
        app.main.feed_table.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), 5)
        shown = str(app.screen.query_one("#detail-relays", Static).render())
        assert "Responders: 2 responding, 3 answered" in shown
        assert "on my way" in shown
        assert "can respond" in shown
        assert "cannot respond" in shown
        # Aliases only: no names, no node numbers.
        for name in ("Alice", "Bob", "Carol"):
            assert name not in shown
        for handheld in ("hh-alice", "hh-bob", "hh-carol"):
            assert stack.hood.endpoints[handheld].node_id.lstrip("!") not in shown
