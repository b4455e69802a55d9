"""Compose an alert: fields, live byte budget, handheld preview, confirmation."""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Input, Label, Select, Static, TextArea

from relayd.core.model import Kind, Role, Severity
from tui import fmt
from tui.drafts import Draft, problems
from tui.model import FeedItem


def counter_text(draft: Draft) -> Text:
    left = draft.bytes_left
    if left < 0:
        return Text(
            f"✗ {draft.text_bytes}/{draft.budget_bytes} bytes: {-left} bytes too long for one LoRa "
            f"frame — cut {-left} bytes",
            style="bold red",
        )
    style = "yellow" if left < 20 else "green"
    return Text(
        f"{draft.text_bytes}/{draft.budget_bytes} bytes · {left} bytes left in one LoRa frame", style=style
    )


def preview_text(draft: Draft) -> Text:
    t = Text()
    t.append(draft.preview() or " ")
    t.append("\n[+ 1 line: signature token]", style="dim")
    return t


class ComposeScreen(Screen[Draft | None]):
    """Returns the confirmed draft, or None if the operator backed out."""

    BINDINGS = [  # noqa: RUF012 - Textual's declared class-level binding list
        Binding("ctrl+s", "send", "Send", priority=True),
        Binding("escape", "back", "Back"),
    ]

    def __init__(
        self,
        draft: Draft,
        role: Role | None,
        signer: str,
        active: list[FeedItem],
        *,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self.draft = draft
        self.role = role
        self.signer = signer
        self.active = active
        self.cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        d = self.draft
        refs = [
            (f"{i.alert_id[:8]} {i.kind.value} {fmt.one_line(i.text, 40)}", i.alert_id) for i in self.active
        ]
        if d.ref and d.ref not in {r for _, r in refs}:
            refs.insert(0, (f"{d.ref[:8]} (not active)", d.ref))
        yield Static(Text(f" Compose — signing as {self.signer}", style="bold"), id="compose-title")
        with VerticalScroll(id="compose-form"):
            with Horizontal(classes="form-row"):
                yield Label("kind", classes="field-label")
                yield Select(
                    [(k.value, k.value) for k in Kind if k is not Kind.REPORT],
                    value=d.kind.value,
                    allow_blank=False,
                    compact=True,
                    id="kind",
                )
                yield Label("severity", classes="field-label")
                yield Select(
                    [(s.value, s.value) for s in Severity],
                    value=d.severity.value,
                    allow_blank=False,
                    compact=True,
                    id="severity",
                )
                yield Label("expires in", classes="field-label")
                yield Input(d.lifetime, placeholder="30m", compact=True, id="lifetime")
            with Horizontal(classes="form-row"):
                yield Label("area", classes="field-label")
                yield Input(d.area, placeholder="geohash/zone", compact=True, id="area")
                yield Label("ref", classes="field-label")
                yield Select(
                    refs,
                    value=d.ref if d.ref else Select.NULL,
                    prompt="(none)",
                    allow_blank=True,
                    compact=True,
                    id="ref",
                )
            yield TextArea(
                d.text, id="text", soft_wrap=True, compact=True, placeholder="where, what, what is needed"
            )
            yield Static(id="counter")
            with Vertical(id="preview-box"):
                yield Static(id="preview")
            yield Static(id="problems")
            with Horizontal(id="compose-buttons"):
                yield Button("Send… ^s", variant="error", id="send", compact=True)
                yield Button("Back esc", id="back", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#preview-box").border_title = "handheld shows"
        for widget in self.query(Input):
            widget.cursor_blink = self.cursor_blink
        area = self.query_one("#text", TextArea)
        area.cursor_blink = self.cursor_blink
        area.focus()
        area.move_cursor(area.document.end)
        self.refresh_draft()

    # ---- live state -----------------------------------------------------------------

    def read_draft(self) -> Draft:
        kind = self.query_one("#kind", Select).value
        sev = self.query_one("#severity", Select).value
        ref = self.query_one("#ref", Select).value
        return Draft(
            kind=Kind(kind) if isinstance(kind, str) else self.draft.kind,
            severity=Severity(sev) if isinstance(sev, str) else self.draft.severity,
            lifetime=self.query_one("#lifetime", Input).value.strip(),
            area=self.query_one("#area", Input).value.strip(),
            ref=ref if isinstance(ref, str) else "",
            text=self.query_one("#text", TextArea).text,
        )

    def refresh_draft(self) -> list[str]:
        self.draft = self.read_draft()
        found = problems(self.draft, self.role)
        self.query_one("#counter", Static).update(counter_text(self.draft))
        self.query_one("#preview", Static).update(preview_text(self.draft))
        self.query_one("#problems", Static).update(
            Text("\n".join(f"✗ {p}" for p in found), style="red")
            if found
            else Text("ready to sign", style="green")
        )
        self.query_one("#send", Button).disabled = bool(found)
        return found

    @on(Input.Changed)
    @on(Select.Changed)
    @on(TextArea.Changed)
    def _changed(self) -> None:
        self.refresh_draft()

    # ---- actions --------------------------------------------------------------------

    @on(Button.Pressed, "#send")
    def action_send(self) -> None:
        found = self.refresh_draft()
        if found:
            self.app.bell()
            self.notify(found[0], title="Not sent", severity="error")
            return
        draft = self.draft

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.dismiss(draft)

        self.app.push_screen(ConfirmScreen(draft, self.signer), confirmed)

    @on(Button.Pressed, "#back")
    def action_back(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [  # noqa: RUF012 - Textual's declared class-level binding list
        Binding("y", "answer(True)", "Sign and send"),
        Binding("n,escape", "answer(False)", "Back"),
    ]

    def __init__(self, draft: Draft, signer: str) -> None:
        super().__init__()
        self.draft = draft
        self.signer = signer

    def compose(self) -> ComposeResult:
        d = self.draft
        t = Text()
        t.append("Sign and publish this alert?\n\n", style="bold")
        t.append(f"{d.kind.value.upper()} · {d.severity.value} · expires in {d.lifetime}")
        t.append(f" · area {d.area or '-'} · ref {d.ref[:8] if d.ref else '-'}\n")
        t.append(f"signed by {self.signer} · {d.text_bytes}/{d.budget_bytes} text bytes\n\n")
        t.append(d.preview() + "\n", style="bold")
        t.append(
            "\nIt waits in the outbox until the broker has it; relays then put it on air. "
            "Once sent it cannot be recalled, only cancelled.",
            style="dim",
        )
        with Vertical(id="confirm-box"):
            yield Static(t)
            with Horizontal(id="confirm-buttons"):
                yield Button("Sign & send (y)", variant="error", id="yes", compact=True)
                yield Button("Back (n)", id="no", compact=True)

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.dismiss(False)

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


def prefill(kind: Kind, ref_item: FeedItem | None) -> Draft:
    """The draft for a new alert, or an update/cancel/all-clear about `ref_item`."""
    if ref_item is None or kind is Kind.ALERT:
        return Draft(kind=kind)
    f = ref_item.alert.fields
    text = {Kind.CANCEL: "Disregard earlier alert: ", Kind.ALLCLEAR: "All clear: "}.get(kind, "")
    return replace(
        Draft(kind=kind, severity=f.severity if kind is not Kind.ALLCLEAR else Severity.INFO),
        ref=ref_item.alert_id,
        area=f.area or "",
        text=text,
    )
