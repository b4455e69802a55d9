"""Compose without a broker: the byte budget, role checks and the watch-only refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Button, Static, TextArea

from relayd.core.codec import text_budget_bytes
from relayd.core.model import Kind, Role, Severity
from relayd.errors import KeyFileError
from relayd.testing.keys import TestNetwork
from tests.tui.support import snapshot_app, wait_for
from tui.drafts import Draft, SignerRefused, load_signer, problems
from tui.screens.compose import ComposeScreen, ConfirmScreen


async def test_byte_counter_blocks_oversize_text(fixed_net: TestNetwork) -> None:
    app = snapshot_app(fixed_net)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
        screen = app.screen
        assert isinstance(screen, ComposeScreen)
        budget = text_budget_bytes(Kind.ALERT, Severity.URGENT)
        text = screen.query_one("#text", TextArea)
        text.load_text("x" * budget)
        await pilot.pause()
        counter = str(screen.query_one("#counter", Static).render())
        assert f"{budget}/{budget} bytes · 0 bytes left" in counter
        assert not screen.query_one("#send", Button).disabled

        text.load_text("é" * budget)  # two bytes each in UTF-8
        await pilot.pause()
        counter = str(screen.query_one("#counter", Static).render())
        assert f"cut {budget} bytes" in counter
        assert screen.query_one("#send", Button).disabled
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is screen  # no confirmation step for an oversize alert
        assert not isinstance(app.screen, ConfirmScreen)


async def test_watch_only_console_refuses_compose(fixed_net: TestNetwork) -> None:
    app = snapshot_app(fixed_net, key=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        assert not isinstance(app.screen, ComposeScreen)
        assert any("--key" in n.message for n in app._notifications)


def test_budget_shrinks_with_reference_and_area() -> None:
    plain = Draft(text="a")
    with_ref = Draft(kind=Kind.UPDATE, ref="00" * 8, area="9q8yyk", text="a")
    assert with_ref.budget_bytes < plain.budget_bytes
    assert problems(plain, Role.DISPATCHER) == []


def test_verifier_may_not_cancel() -> None:
    draft = Draft(kind=Kind.CANCEL, ref="11" * 8, text="wrong address")
    assert problems(draft, Role.VERIFIER) == ["a verifier key may not sign a cancel"]
    assert problems(draft, Role.DISPATCHER) == []


def test_update_needs_reference() -> None:
    found = problems(Draft(kind=Kind.UPDATE, text="more vans"), Role.DISPATCHER)
    assert any("reference" in p for p in found)


@pytest.mark.parametrize("name", ["reporter", "relay-north"])
def test_reporter_or_relay_key_is_refused(fixed_net: TestNetwork, name: str) -> None:
    with pytest.raises(SignerRefused, match="dispatcher or verifier key"):
        load_signer(fixed_net.key_path(name))


def test_key_with_loose_permissions_is_refused(fixed_net: TestNetwork) -> None:
    path: Path = fixed_net.key_path("dispatcher")
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_signer(path)
