"""The live feed: one row per alert id, updated in place as copies and relay events arrive.

A virtual list (Textual's Line API), not a DataTable: with 10,000 rows a DataTable
recomputes row offsets and re-renders every visible cell on each change, which costs
hundreds of milliseconds per message. Here a new or changed alert renders one row; every
other visible row comes from a per-row strip cache. See bench/bench_tui.py.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from relayd.core.model import Kind
from tui import fmt
from tui.model import FeedFilter, FeedItem
from tui.outbox import OutboxEntry

# (key, label, width); widths include one space of gap. The text column takes what is left.
WIDE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("kind", "kind", 7),
    ("sev", "sev", 5),
    ("state", "state", 11),
    ("verify", "verification", 27),
    ("age", "age", 5),
    ("ttl", "ttl", 5),
    ("area", "area", 8),
    ("relays", "relays", 15),
    ("resp", "resp", 5),
    ("text", "text", 0),
)
NARROW_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("sev", "sev", 5),
    ("kind", "kind", 7),
    ("state", "state", 11),
    ("verify", "verification", 16),
    ("ttl", "ttl", 5),
    ("relays", "relays", 9),
    ("resp", "resp", 5),
    ("text", "text", 0),
)
WIDE_MIN_COLUMNS = 100
TEXT_LIMIT = 300
HEADER_LINES = 1


class FeedTable(ScrollView, can_focus=True):
    """Rows are keyed by alert id, oldest first.

    The cursor stays on the alert the operator chose: new arrivals never move it (a key
    pressed on the row being read must act on that row), and a row leaving the view moves
    it to its neighbour.
    """

    BINDINGS = [  # noqa: RUF012 - Textual's declared class-level binding list
        Binding("enter", "open", "Detail"),
        Binding("n", "reply('alert')", "New"),
        Binding("u", "reply('update')", "Update"),
        Binding("c", "reply('cancel')", "Cancel"),
        Binding("a", "reply('allclear')", "All-clear"),
        Binding("k", "cycle('kind')", "Kind", show=False),
        Binding("s", "cycle('severity')", "Sev", show=False),
        Binding("r", "cycle('relay')", "Relay", show=False),
        Binding("slash", "search", "Search", show=False),
        Binding("x", "clear_filters", "Clear filters", show=False),
        Binding("v", "toggle_view", "Active/all"),
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Newest", show=False),
    ]
    COMPONENT_CLASSES = {  # noqa: RUF012 - Textual's declared class-level set
        "feed--header",
        "feed--cursor",
        "feed--even",
    }
    DEFAULT_CSS = """
    FeedTable { background: $surface; }
    FeedTable > .feed--header { text-style: bold; background: $panel; }
    FeedTable > .feed--cursor { background: $block-cursor-background; }
    FeedTable:blur > .feed--cursor { background: $block-cursor-blurred-background; }
    FeedTable > .feed--even { background: $surface-lighten-1 10%; }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True, repaint=False)

    class Action(Message):
        """The operator asked for something about an alert (or about no alert: `alert_id=None`)."""

        def __init__(self, action: str, alert_id: str | None) -> None:
            super().__init__()
            self.action = action
            self.alert_id = alert_id

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        outbox: Callable[[str], OutboxEntry | None] = lambda _id: None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.outbox = outbox
        self.filter = FeedFilter()
        self.columns_spec = NARROW_COLUMNS
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._items: dict[str, FeedItem] = {}
        self._cells: dict[str, list[Text]] = {}
        self._strips: dict[str, tuple[tuple[object, ...], Strip]] = {}

    # ---- the table-like API used by screens and tests ------------------------------

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def rows(self) -> dict[str, FeedItem]:
        return self._items

    def has_item(self, alert_id: str) -> bool:
        return alert_id in self._index

    def get_row_index(self, alert_id: str) -> int:
        return self._index[alert_id]

    def get_cell(self, alert_id: str, column: str) -> Text:
        keys = [key for key, _, _ in self.columns_spec]
        return self._cells_of(alert_id)[keys.index(column)]

    @property
    def selected_id(self) -> str | None:
        if not self._order:
            return None
        return self._order[min(self.cursor_row, len(self._order) - 1)]

    def move_cursor(self, *, row: int, animate: bool = False) -> None:
        if not self._order:
            self.cursor_row = 0
            return
        self.cursor_row = max(0, min(row, len(self._order) - 1))

    def set_wide(self, wide: bool) -> bool:
        """Choose the column set for the terminal width; True if it changed."""
        spec = WIDE_COLUMNS if wide else NARROW_COLUMNS
        if spec is self.columns_spec:
            return False
        self.columns_spec = spec
        self._cells.clear()
        self._strips.clear()
        self.refresh()
        return True

    # ---- data -----------------------------------------------------------------------

    def cells(self, item: FeedItem, now_s: float) -> list[Text]:
        narrow = self.columns_spec is NARROW_COLUMNS
        widths = {key: width for key, _, width in self.columns_spec}
        style = "" if item.lifecycle(now_s).live or item.kind is Kind.REPORT else "dim"
        text = Text(fmt.one_line(item.text, TEXT_LIMIT), style=style)
        if item.urgent and item.ok:
            text.stylize("bold")
        values: dict[str, Text | str] = {
            "kind": fmt.kind_cell(item),
            "sev": fmt.severity_cell(item),
            "state": fmt.state_cell(item, self.outbox(item.alert_id), now_s),
            "verify": fmt.verify_cell(item, short=narrow),
            "age": fmt.duration(now_s - item.alert.fields.issued_at_s),
            "ttl": fmt.ttl(item, now_s),
            "area": item.alert.fields.area or "",
            "relays": fmt.relays_cell(item, widths.get("relays", 41) - 1),
            "resp": fmt.responding_cell(item),
            "text": text,
        }
        out: list[Text] = []
        for key, _, width in self.columns_spec:
            value = values[key]
            cell = Text(value) if isinstance(value, str) else value.copy()
            if width:
                cell.truncate(width - 1, overflow="ellipsis")
            out.append(cell)
        return out

    def _cells_of(self, alert_id: str) -> list[Text]:
        cells = self._cells.get(alert_id)
        if cells is None:
            cells = self.cells(self._items[alert_id], self.clock())
            self._cells[alert_id] = cells
        return cells

    def _invalidate(self, alert_id: str) -> None:
        self._cells.pop(alert_id, None)
        self._strips.pop(alert_id, None)
        row = self._index.get(alert_id)
        if row is not None:
            self._refresh_row(row)

    def sync_item(self, item: FeedItem, now_s: float) -> None:
        """Add, update or drop the row for `item` as it passes the filter. O(1) but for a drop."""
        matches = self.filter.matches(item, now_s)
        if item.alert_id in self._index:
            if not matches:
                self.remove_item(item.alert_id)
                return
            self._items[item.alert_id] = item
            self._invalidate(item.alert_id)
            return
        if not matches:
            return
        self._index[item.alert_id] = len(self._order)
        self._order.append(item.alert_id)
        self._items[item.alert_id] = item
        self._resize_virtual()
        self._refresh_row(len(self._order) - 1)
        if len(self._order) == 1:
            self.cursor_row = 0

    def drop_stale(self, now_s: float) -> None:
        """Rows that left the view by time alone (an alert expiring off the active view)."""
        if self.filter.show_all:
            return
        for alert_id in [a for a, item in self._items.items() if not self.filter.matches(item, now_s)]:
            self.remove_item(alert_id)

    def remove_item(self, alert_id: str) -> None:
        row = self._index.pop(alert_id, None)
        if row is None:
            return
        del self._order[row]
        self._items.pop(alert_id, None)
        self._cells.pop(alert_id, None)
        self._strips.pop(alert_id, None)
        # Eviction removes the oldest rows; re-indexing is a C-speed loop over ids.
        self._index = {key: i for i, key in enumerate(self._order)}
        if self.cursor_row > row:
            self.cursor_row -= 1
        elif self.cursor_row >= len(self._order):
            self.cursor_row = max(0, len(self._order) - 1)
        self._resize_virtual()
        self.refresh()

    def rebuild(self, items: list[FeedItem], now_s: float) -> None:
        """Replace every row (filter change, bundle change). Cells are computed lazily on draw."""
        selected, old_row = self.selected_id, self.cursor_row
        self._order = [item.alert_id for item in items]
        self._index = {key: i for i, key in enumerate(self._order)}
        self._items = {item.alert_id: item for item in items}
        self._cells.clear()
        self._strips.clear()
        self._resize_virtual()
        if selected is not None and selected in self._index:
            self.cursor_row = self._index[selected]
        else:
            self.cursor_row = max(0, min(old_row, len(self._order) - 1))
        self.refresh()

    def refresh_times(self, items: dict[str, FeedItem], now_s: float) -> None:
        """Keep age and time-to-expiry current on the rows on screen; redraw only rows that changed."""
        keys = [key for key, _, _ in self.columns_spec]
        timed = [keys.index(k) for k in ("age", "ttl", "state") if k in keys]
        top = int(self.scroll_y)
        for row in range(top, min(len(self._order), top + self._body_height())):
            alert_id = self._order[row]
            old = self._cells.get(alert_id)
            if old is None:
                continue
            new = self.cells(self._items[alert_id], now_s)
            if any(old[i].plain != new[i].plain for i in timed) or old[-1].style != new[-1].style:
                self._cells[alert_id] = new
                self._strips.pop(alert_id, None)
                self._refresh_row(row)

    # ---- geometry and scrolling -----------------------------------------------------

    def _body_height(self) -> int:
        return max(1, self.size.height - HEADER_LINES)

    def _resize_virtual(self) -> None:
        self.virtual_size = Size(self.size.width, len(self._order) + HEADER_LINES)

    def on_resize(self) -> None:
        self._strips.clear()
        self._resize_virtual()
        self._scroll_cursor_into_view()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # theme changed: cached rows carry the old colours

    def watch_cursor_row(self, old: int, new: int) -> None:
        self._refresh_row(old)
        self._refresh_row(new)
        self._scroll_cursor_into_view()

    def _scroll_cursor_into_view(self) -> None:
        top = int(self.scroll_y)
        height = self._body_height()
        row = self.cursor_row
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= top + height:
            self.scroll_to(y=row - height + 1, animate=False, immediate=True)

    def _refresh_row(self, row: int) -> None:
        y = row - int(self.scroll_y) + HEADER_LINES
        if HEADER_LINES <= y < self.size.height:
            self.refresh_line(y)

    # ---- rendering ------------------------------------------------------------------

    def _layout(self, width: int) -> list[int]:
        fixed = sum(w for _, _, w in self.columns_spec if w)
        return [w if w else max(1, width - fixed) for _, _, w in self.columns_spec]

    def _line(self, cells: list[Text], width: int, base: Style) -> Strip:
        line = Text(no_wrap=True, overflow="crop")
        for cell, col_width in zip(cells, self._layout(width), strict=True):
            piece = cell.copy()
            piece.truncate(col_width, overflow="ellipsis", pad=True)
            line.append_text(piece)
        segments = list(line.render(self.app.console))
        strip = Strip(segments, line.cell_len).crop_extend(0, width, None)
        return strip.apply_style(base)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y < HEADER_LINES:
            header = [Text(label) for _, label, _ in self.columns_spec]
            return self._line(header, width, base + self.get_component_rich_style("feed--header"))
        row = int(self.scroll_y) + y - HEADER_LINES
        if row >= len(self._order):
            return Strip([Segment(" " * width, base)], width)
        alert_id = self._order[row]
        selected = row == self.cursor_row
        key = (width, selected, row % 2, self.has_focus)
        cached = self._strips.get(alert_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        style = base
        if row % 2:
            style += self.get_component_rich_style("feed--even")
        if selected:
            style += self.get_component_rich_style("feed--cursor")
        strip = self._line(self._cells_of(alert_id), width, style)
        self._strips[alert_id] = (key, strip)
        return strip

    def on_focus(self) -> None:
        self._refresh_row(self.cursor_row)

    def on_blur(self) -> None:
        self._refresh_row(self.cursor_row)

    # ---- actions --------------------------------------------------------------------

    def action_move(self, delta: int) -> None:
        self.move_cursor(row=self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(row=self.cursor_row + direction * self._body_height())

    def action_jump(self, row: int) -> None:
        self.move_cursor(row=row if row >= 0 else len(self._order) - 1)

    def action_open(self) -> None:
        if self.selected_id:
            self.post_message(self.Action("open", self.selected_id))

    def action_reply(self, kind: str) -> None:
        self.post_message(self.Action(f"compose:{Kind(kind).value}", self.selected_id))

    def action_cycle(self, what: str) -> None:
        self.post_message(self.Action(f"cycle:{what}", None))

    def action_search(self) -> None:
        self.post_message(self.Action("search", None))

    def action_toggle_view(self) -> None:
        self.post_message(self.Action("toggle_view", None))

    def action_clear_filters(self) -> None:
        self.post_message(self.Action("clear_filters", None))
