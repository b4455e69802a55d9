"""Small modal dialogs: dispatch a verifier, send progress, help."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from tui.model import Model


class DispatchVerifierScreen(ModalScreen[str | None]):
    """Ask who was sent to verify a report; the answer is recorded in the inbox (locally)."""

    BINDINGS = [Binding("escape", "cancel", "Back")]  # noqa: RUF012 - Textual's binding list

    def __init__(self, report_text: str) -> None:
        super().__init__()
        self.report_text = report_text

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Dispatch a verifier to this report", classes="dialog-title")
            yield Static(Text(self.report_text[:200], style="italic"))
            yield Label("Who is going? (callsign or name; recorded on this console only)")
            yield Input(placeholder="e.g. team-2", id="who")

    def on_mount(self) -> None:
        self.query_one("#who", Input).focus()

    @on(Input.Submitted, "#who")
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class SendProgressScreen(ModalScreen[None]):
    """Follows a sent alert: broker acknowledgement, relays receiving it, relays transmitting it."""

    BINDINGS = [Binding("escape,enter", "close", "Close")]  # noqa: RUF012 - Textual's binding list

    def __init__(self, model: Model, alert_id: str, publish_state: Callable[[str], str | None]) -> None:
        super().__init__()
        self.model = model
        self.alert_id = alert_id
        self.publish_state = publish_state

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Sending", classes="dialog-title")
            yield Static(id="progress")
            yield Label("esc closes; the alert keeps going", classes="dim")

    def on_mount(self) -> None:
        self.update_progress()
        self.set_interval(0.25, self.update_progress)

    def update_progress(self) -> None:
        item = self.model.feed.get(self.alert_id)
        t = Text()
        t.append(f"alert {self.alert_id}\n", style="bold")
        t.append("✓ signed\n", style="green")
        state = self.publish_state(self.alert_id)
        if state is None:
            t.append("… publishing to outbox (QoS 1)\n", style="yellow")
        elif state == "ok":
            t.append("✓ broker acknowledged (outbox)\n", style="green")
        else:
            t.append(f"✗ {state}\n", style="bold red")
        if item is not None:
            received = [r for r, ev in item.relays.items() if ev - {"transmitted"}]
            tx = item.transmitted_by()
            if received:
                t.append(f"✓ relays have it: {', '.join(sorted(received))}\n", style="green")
            else:
                t.append("… waiting for relays\n", style="yellow")
            if tx:
                t.append(f"✓ TRANSMITTED by {', '.join(tx)}\n", style="bold green")
            else:
                t.append("… waiting for a relay to transmit\n", style="yellow")
            for relay, reason in sorted(item.drop_reasons.items()):
                t.append(f"✗ {relay} dropped it: {reason}\n", style="red")
        self.query_one("#progress", Static).update(t)

    def action_close(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close")]  # noqa: RUF012 - Textual's binding list

    def __init__(self, sections: Iterable[tuple[str, list[BindingType]]]) -> None:
        super().__init__()
        self.sections = list(sections)

    def compose(self) -> ComposeResult:
        t = Text()
        t.append("relayd console — keys\n", style="bold")
        for title, bindings in self.sections:
            t.append(f"\n{title}\n", style="bold underline")
            for b in bindings:
                if isinstance(b, Binding):
                    key, desc = b.key, b.description
                elif len(b) >= 3:
                    key, desc = b[0], str(b[2])
                else:
                    continue
                if not desc:
                    continue
                t.append(f"  {key.replace('question_mark', '?').replace('slash', '/'):<22}{desc}\n")
        t.append(
            "\nEverything works without a mouse (and over SSH). Alert text is never logged.\n", style="dim"
        )
        with VerticalScroll(id="help"):
            yield Static(t)

    def action_close(self) -> None:
        self.dismiss(None)
