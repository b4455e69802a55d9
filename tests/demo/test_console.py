"""The interactive demo, assembled exactly as `relayd demo` does it, driven from the keyboard."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from textual.pilot import Pilot
from textual.widgets import DataTable, Select

from relayd.core.identity import Identity
from relayd.core.model import Role
from relayd.demo.script import BackgroundPlan, sign_with
from relayd.demo.stack import DemoOptions
from tui.demo import demo_session
from tui.model import InboxStatus
from tui.screens.compose import ComposeScreen, ConfirmScreen
from tui.screens.dialogs import SendProgressScreen

SIZE = (120, 36)
# A short scenario: one field report right away, nothing else to wait for.
QUICK = BackgroundPlan(
    first_report_s=0.3,
    report_every_s=3600,
    first_forgery_s=1.5,
    forgery_every_s=3600,
    first_update_s=3600,
    update_every_s=3600,
)
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.svg"
# What the console app returns when it exits (textual's Pilot is generic, and invariant, in it).
AppResult = TypeVar("AppResult")


async def wait_for(pilot: Pilot[AppResult], predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await pilot.pause(0.05)


async def test_confirm_a_report_from_the_keyboard_and_see_it_on_every_handheld() -> None:
    async with demo_session(DemoOptions(), plan=QUICK, cursor_blink=False) as (stack, app):
        async with app.run_test(size=SIZE) as pilot:
            # A handheld's "!r ..." arrives in the inbox, wrapped and signed by a relay.
            await wait_for(pilot, lambda: len(app.model.inbox) >= 1, 15)
            report_id = next(iter(app.model.inbox))
            await pilot.press("3")
            await pilot.pause()
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen), 5)
            # Reports come in as info; the dispatcher makes the confirmed alert urgent (bell).
            app.screen.query_one("#severity", Select).value = "urgent"
            await pilot.pause()
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5)
            await pilot.press("y")
            await wait_for(pilot, lambda: isinstance(app.screen, SendProgressScreen), 5)
            assert app.model.inbox[report_id].status is InboxStatus.CONFIRMED
            sent_id = app.model.inbox[report_id].confirmed_by
            assert sent_id is not None
            onair = app.model.feed[sent_id].alert.onair

            # Signed here, published to the outbox, put on air by a relay, shown on every handheld.
            def everywhere() -> bool:
                return all(any(d.text == onair for d in stack.hood.displays(h)) for h in stack.handhelds)

            await wait_for(pilot, everywhere, 20)
            await wait_for(pilot, lambda: bool(app.model.feed[sent_id].transmitted_by()), 5)
            for h in stack.handhelds:
                assert sum(1 for d in stack.hood.displays(h) if d.text == onair) == 1, h

            # The Handhelds panel (key 6) shows it on each handheld, verified, without the token line.
            await pilot.press("escape")
            await pilot.press("6")
            text = app.model.feed[sent_id].alert.fields.text

            def panel_rows() -> list[list[str]]:
                table = app.screen.query_one("#handhelds-table", DataTable)
                return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]

            await wait_for(
                pilot, lambda: sum(1 for r in panel_rows() if r[-1] == text) == len(stack.handhelds), 5
            )
            rows = [r for r in panel_rows() if r[-1] == text]
            assert all("✓ dispatcher" in r[4] for r in rows), rows
            assert all("🔔" in r[3] for r in rows), rows  # confirmed as urgent: the bell rings
            assert all("\n" not in r[-1] for r in rows)
            if os.environ.get("RELAYD_DEMO_SCREENSHOT"):
                # For docs/screenshot.svg: a rogue handheld's forgery, flagged in the panel.
                forged = sign_with(Identity.generate("impostor", Role.DISPATCHER), "RAID at Birch & 2nd NOW")
                stack.hood.handheld_send("hh-erin", forged.onair, channel_index=0)
                await wait_for(pilot, lambda: any("✗ unknown_key" in r[4] for r in panel_rows()), 10)
                await pilot.pause(1.0)
                app.save_screenshot(SCREENSHOT.name, str(SCREENSHOT.parent))
            await pilot.press("ctrl+c")
            await pilot.pause()
        assert not app.is_running
