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
from tui.outbox import Outbox, OutboxState, delivery, settle


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
    """Follows a signed alert: outbox, broker acknowledgement, relays taking it, on air.

    Each line says only what the console has evidence for; nothing about relays is said
    before the broker has acknowledged the alert.
    """

    BINDINGS = [Binding("escape,enter", "close", "Close")]  # noqa: RUF012 - Textual's binding list

    def __init__(self, model: Model, outbox: Outbox, alert_id: str, connected: Callable[[], bool]) -> None:
        super().__init__()
        self.model = model
        self.outbox = outbox
        self.alert_id = alert_id
        self.connected = connected

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Sending", classes="dialog-title")
            yield Static(id="progress")
            yield Static("", id="progress-hint", classes="dim")

    def on_mount(self) -> None:
        self.update_progress()
        self.set_interval(0.25, self.update_progress)

    def progress(self) -> tuple[Text, str]:
        """The progress lines and the closing hint (pure, for tests)."""
        now = self.model.clock()
        entry = self.outbox.get(self.alert_id)
        item = self.model.feed.get(self.alert_id)
        relays = item.relays if item is not None else {}
        state = delivery(entry, relays, now)
        t = Text()
        t.append(f"alert {self.alert_id}\n", style="bold")
        t.append("✓ signed and kept in the outbox\n", style="green")
        settled = settle(entry, now) if entry is not None else None
        if settled is not None and settled.state is OutboxState.EXPIRED:
            t.append("✗ expired before the broker had it: never sent\n", style="bold red")
            return t, "esc closes; compose a new alert if it is still needed"
        if settled is not None and settled.state is OutboxState.DISCARDED:
            t.append("✗ discarded: never sent\n", style="bold red")
            return t, "esc closes"
        if not state.sent:
            if self.connected():
                t.append("… publishing to the broker (QoS 1)\n", style="yellow")
            else:
                t.append("… waiting for the broker: not connected, not sent yet\n", style="bold yellow")
            if entry is not None and entry.last_error:
                t.append(f"  last try: {entry.last_error}\n", style="yellow")
            return t, "esc closes · it stays in the outbox (o) and is sent when the broker is back"
        t.append("✓ broker acknowledged (outbox)\n", style="green")
        heard = sorted(r for r, ev in relays.items() if ev - {"transmitted", "dropped"})
        if heard:
            t.append(f"✓ relays have it: {', '.join(heard)}\n", style="green")
        else:
            t.append("… waiting for relays to report it\n", style="yellow")
        if state.label.startswith(("taken", "on air")):
            t.append(f"✓ {state.label}\n", style=state.style)
        else:
            t.append("… waiting for a relay to transmit\n", style="yellow")
        for relay, reason in sorted(item.drop_reasons.items() if item else ()):
            t.append(f"✗ {relay} dropped it: {reason}\n", style="red")
        return t, "esc closes; relays keep sending it"

    def update_progress(self) -> None:
        text, hint = self.progress()
        self.query_one("#progress", Static).update(text)
        self.query_one("#progress-hint", Static).update(hint)

    def action_close(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close")]  # noqa: RUF012 - Textual's binding list

    def __init__(self, sections: Iterable[tuple[str, list[BindingType]]]) -> None:
        super().__init__()
        self.sections = list(sections)

    def compose(self) -> ComposeResult:
        t = Text()
        t.append("relayd console — keys", style="bold")
        t.append("   esc, q or ? closes this help · ↑ ↓ scroll\n", style="bold reverse")
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
        t.append("esc, q or ? closes this help.\n", style="bold")
        with VerticalScroll(id="help"):
            yield Static(t)

    def action_close(self) -> None:
        self.dismiss(None)
