"""SVG snapshots of the main screens at 80x24 and 120x40: fixed clock, seeded keys, no broker.

Regenerate with `pytest tests/tui --snapshot-update` and review the SVGs before committing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import TextArea

from relayd.testing.keys import TestNetwork
from tests.tui.support import populate, snapshot_app
from tui.app import Panel, RelaydApp
from tui.drafts import Draft
from tui.widgets.handhelds import HandheldsPanel

SnapCompare = Callable[..., bool]
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def prepared(app: RelaydApp, network: TestNetwork, *keys: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        ids = populate(app, network)
        # The status line is redrawn on a 0.2 s timer after messages arrive; draw it now, so the
        # screenshot does not depend on whether that timer fired before it.
        app.update_status()
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


@dataclass(frozen=True)
class Shown:
    handheld: str
    clock: str
    sender: str
    text: str
    bell: bool
    dm: bool
    check: str


@dataclass
class FixedHandhelds:
    """What the demo's handhelds displayed, fixed (the demo polls the simulator instead)."""

    lines: list[Shown]
    names: list[str] = field(default_factory=lambda: ["hh-alice", "hh-bob", "hh-carol"])
    counts: dict[str, int] = field(default_factory=dict)

    def poll(self) -> list[Shown]:
        new, self.lines = self.lines, []
        for line in new:
            self.counts[line.handheld] = self.counts.get(line.handheld, 0) + 1
        return new


RAID = "ICE raid at 5th & Pine. Observers to the NE corner"
HANDHELD_LINES = [
    Shown("hh-alice", "20:55:01", "Relay North", RAID, True, False, "✓ dispatcher"),
    Shown("hh-bob", "20:55:01", "Relay Center", RAID, True, False, "✓ dispatcher"),
    Shown(
        "hh-carol",
        "20:56:40",
        "Handheld Dave",
        "Raid at the park, everyone go now",
        True,
        False,
        "✗ unknown_key",
    ),
    Shown("hh-bob", "20:57:12", "Relay North", "report received", False, True, ""),
    Shown("hh-alice", "20:58:00", "Relay South", 'NOT FROM DISPATCH: "Raid at the park"', False, False, ""),
]


@pytest.mark.parametrize("size", SIZES)
def test_handhelds(snap_compare: SnapCompare, fixed_net: TestNetwork, size: tuple[int, int]) -> None:
    """The demo's Handhelds panel (key 6)."""
    source = FixedHandhelds(list(HANDHELD_LINES))
    app = snapshot_app(
        fixed_net, extra_panels=[Panel("handhelds", "Handhelds", lambda: HandheldsPanel(source))]
    )
    assert snap_compare(app, terminal_size=size, run_before=prepared(app, fixed_net, "6"))


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
