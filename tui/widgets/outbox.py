"""The outbox tab: every alert this console signed, with what is known of its delivery."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from tui import fmt
from tui.model import Model
from tui.outbox import Outbox, OutboxEntry, delivery

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("alert", "alert", 8),
    ("kind", "kind", 8),
    ("state", "state", 26),
    ("tries", "tries", 5),
    ("age", "age", 4),
    ("text", "text", 60),
)


class OutboxTable(DataTable[Text | str]):
    BINDINGS = [  # noqa: RUF012 - Textual's declared class-level binding list
        Binding("r", "act('resend')", "Resend"),
        Binding("d", "act('discard')", "Discard"),
        Binding("enter", "act('open')", "Detail"),
    ]

    class Action(Message):
        def __init__(self, action: str, alert_id: str) -> None:
            super().__init__()
            self.action = action
            self.alert_id = alert_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    @staticmethod
    def cells(entry: OutboxEntry, model: Model, now_s: float, room: int = 200) -> list[Text | str]:
        item = model.feed.get(entry.alert_id)
        state = delivery(entry, item.relays if item else {}, now_s)
        text = fmt.one_line(item.text, room) if item else ""
        return [
            entry.alert_id[:8],
            entry.kind.value,
            Text(state.label, style=state.style),
            str(entry.attempts),
            fmt.duration(now_s - entry.signed_at_s),
            text,
        ]

    def sync(self, outbox: Outbox, model: Model, now_s: float) -> None:
        """Newest first; rows updated in place so the cursor stays on its alert."""
        entries = sorted(outbox, key=lambda e: -e.signed_at_s)
        room = fmt.text_room(self.size.width or self.app.size.width, COLUMNS)
        wanted = [e.alert_id for e in entries]
        current = [k.value for k in self.rows]
        if current != wanted:
            selected = self.selected_id
            self.clear()
            for entry in entries:
                self.add_row(*self.cells(entry, model, now_s, room), key=entry.alert_id)
            if selected in wanted:
                self.move_cursor(row=wanted.index(selected))
            return
        for entry in entries:
            for (key, _, _), value in zip(COLUMNS, self.cells(entry, model, now_s, room), strict=True):
                self.update_cell(entry.alert_id, key, value)

    @property
    def selected_id(self) -> str | None:
        if not self.row_count:
            return None
        key: RowKey = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return key.value

    def action_act(self, action: str) -> None:
        if self.selected_id:
            self.post_message(self.Action(action, self.selected_id))
