"""SVG snapshots of the main screens at 80x24 and 120x40: fixed clock, seeded keys, no broker.

Regenerate with `pytest tests/tui --snapshot-update` and review the SVGs before committing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import TextArea

from relayd.testing.keys import TestNetwork
from tests.tui.support import populate, snapshot_app
from tui.app import RelaydApp
from tui.drafts import Draft

SnapCompare = Callable[..., bool]
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def prepared(app: RelaydApp, network: TestNetwork, *keys: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        ids = populate(app, network)
        await pilot.pause()
        for key in keys:
            if key.startswith("@"):  # select a feed row by name, e.g. "@raid"
                table = app.main.feed_table
                table.move_cursor(row=table.get_row_index(ids[key[1:]]), animate=False)
            else:
                await pilot.press(key)
            await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_feed(snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]) -> None:
    app = snapshot_app(fixed_net)
    assert snap_compare(app, terminal_size=size, run_before=prepared(app, fixed_net))


@pytest.mark.parametrize("size", SIZES)
def test_relays(snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]) -> None:
    app = snapshot_app(fixed_net)
    assert snap_compare(app, terminal_size=size, run_before=prepared(app, fixed_net, "2"))


@pytest.mark.parametrize("size", SIZES)
def test_inbox(snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]) -> None:
    app = snapshot_app(fixed_net)
    assert snap_compare(app, terminal_size=size, run_before=prepared(app, fixed_net, "3"))


@pytest.mark.parametrize("size", SIZES)
def test_alert_detail(snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]) -> None:
    app = snapshot_app(fixed_net)
    assert snap_compare(app, terminal_size=size, run_before=prepared(app, fixed_net, "@update", "enter"))


@pytest.mark.parametrize("size", SIZES)
def test_alert_detail_responders(
    snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]
) -> None:
    """The raid's detail, scrolled to who is responding (aliases only)."""
    app = snapshot_app(fixed_net)

    async def run_before(pilot: Pilot[Any]) -> None:
        await prepared(app, fixed_net, "@raid", "enter")(pilot)
        app.screen.query_one("#detail-relays").scroll_visible(animate=False)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_compose_update(snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]) -> None:
    app = snapshot_app(fixed_net)

    async def run_before(pilot: Pilot[Any]) -> None:
        await prepared(app, fixed_net, "@raid", "u")(pilot)
        app.screen.query_one("#text", TextArea).insert("3 more vans at Pine & 7th")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_compose_oversize_blocked(
    snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]
) -> None:
    app = snapshot_app(fixed_net)

    async def run_before(pilot: Pilot[Any]) -> None:
        await prepared(app, fixed_net, "n")(pilot)
        app.screen.query_one("#text", TextArea).load_text("Observers needed at the courthouse steps. " * 4)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_trust(snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]) -> None:
    app = snapshot_app(fixed_net)
    assert snap_compare(app, terminal_size=size, run_before=prepared(app, fixed_net, "4"))


@pytest.mark.parametrize("size", SIZES)
def test_diagnostics(snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]) -> None:
    app = snapshot_app(fixed_net)
    assert snap_compare(app, terminal_size=size, run_before=prepared(app, fixed_net, "5"))


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]) -> None:
    app = snapshot_app(fixed_net)
    assert snap_compare(app, terminal_size=size, run_before=prepared(app, fixed_net, "question_mark"))


def test_feed_light_theme(snap_compare: SnapCompare, fixed_net: TestNetwork) -> None:
    app = snapshot_app(fixed_net, dark=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=prepared(app, fixed_net))


def sent_while_offline(app: RelaydApp, network: TestNetwork, *keys: str) -> Callable[[Pilot[Any]], Any]:
    """The evening, plus an alert this console signed with no broker: it waits in the outbox."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await prepared(app, network)(pilot)
        app.sign_and_send(Draft(text="Observers to the courthouse steps, bring water", area="zone-3"))
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_send_progress_waiting(
    snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]
) -> None:
    app = snapshot_app(fixed_net)
    assert snap_compare(app, terminal_size=size, run_before=sent_while_offline(app, fixed_net))


@pytest.mark.parametrize("size", SIZES)
def test_outbox(snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]) -> None:
    app = snapshot_app(fixed_net)
    assert snap_compare(app, terminal_size=size, run_before=sent_while_offline(app, fixed_net, "escape", "o"))


@pytest.mark.parametrize("size", SIZES)
def test_feed_all(snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]) -> None:
    app = snapshot_app(fixed_net)
    assert snap_compare(app, terminal_size=size, run_before=prepared(app, fixed_net, "v"))


@pytest.mark.parametrize("size", SIZES)
def test_confirm(snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]) -> None:
    app = snapshot_app(fixed_net)

    async def run_before(pilot: Pilot[Any]) -> None:
        await prepared(app, fixed_net, "@raid", "c")(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_dispatch_verifier(snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]) -> None:
    app = snapshot_app(fixed_net)
    assert snap_compare(app, terminal_size=size, run_before=prepared(app, fixed_net, "3", "v"))
