"""The report inbox: field reports waiting for a dispatcher's decision."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from tui import fmt
from tui.model import FeedItem, InboxEntry, InboxStatus

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("status", "status", 11),
    ("age", "age", 4),
    ("via", "via", 14),
    ("origin", "handheld", 9),
    ("area", "area", 6),
    ("text", "report", 160),
)
STATUS_STYLE = {
    InboxStatus.NEW: "bold yellow",
    InboxStatus.VERIFIER_DISPATCHED: "cyan",
    InboxStatus.CONFIRMED: "green",
    InboxStatus.DISMISSED: "dim",
}


class InboxTable(DataTable[Text | str]):
    BINDINGS = [  # noqa: RUF012 - Textual's declared class-level binding list
        Binding("enter", "act('open')", "Detail"),
        Binding("v", "act('dispatch')", "Dispatch verifier"),
        Binding("c", "act('confirm')", "Confirm→compose"),
        Binding("x", "act('dismiss')", "Dismiss"),
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
    def cells(entry: InboxEntry, item: FeedItem, now_s: float, room: int = 160) -> list[Text | str]:
        status = entry.status.value
        if entry.status is InboxStatus.VERIFIER_DISPATCHED and entry.dispatched:
            status = f"→ {entry.dispatched[-1][0]}"
        origin = item.alert.fields.origin_node
        dim = entry.status in (InboxStatus.CONFIRMED, InboxStatus.DISMISSED)
        return [
            Text(status, style=STATUS_STYLE[entry.status]),
            fmt.duration(now_s - item.alert.fields.issued_at_s),
            item.signer_name or "?",
            f"!{origin:08x}" if origin is not None else "-",
            item.alert.fields.area or "",
            Text(fmt.one_line(item.text, room), style="dim" if dim else ""),
        ]

    def sync(self, entries: list[tuple[InboxEntry, FeedItem]], now_s: float) -> None:
        """The inbox is small (reports awaiting a decision), so it is redrawn whole."""
        selected = self.selected_id
        self.clear()
        room = fmt.text_room(self.size.width or self.app.size.width, COLUMNS)
        # Newest first: the report that just came in is the one to look at.
        for entry, item in reversed(entries):
            self.add_row(*self.cells(entry, item, now_s, room), key=entry.alert_id)
        if selected is not None:
            for index, (entry, _) in enumerate(reversed(entries)):
                if entry.alert_id == selected:
                    self.move_cursor(row=index, animate=False)

    @property
    def selected_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
        except CellDoesNotExist:
            return None

    def action_act(self, action: str) -> None:
        if self.selected_id:
            self.post_message(self.Action(action, self.selected_id))
