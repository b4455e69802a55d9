"""The demo's Handhelds panel (key 6): every text each simulated stock handheld displayed,
newest at the bottom, with what a client holding the trust bundle would know about it.

The console knows nothing of the simulator: it is handed a `HandheldSource` (in the demo,
relayd/demo/handhelds.py `HandheldWatch`) and polls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

REFRESH_S = 0.3


class HandheldLine(Protocol):
    @property
    def handheld(self) -> str: ...
    @property
    def clock(self) -> str: ...
    @property
    def sender(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def bell(self) -> bool: ...
    @property
    def dm(self) -> bool: ...
    @property
    def check(self) -> str: ...


class HandheldSource(Protocol):
    @property
    def names(self) -> list[str]: ...
    @property
    def counts(self) -> dict[str, int]: ...
    def poll(self) -> Sequence[HandheldLine]: ...


# (key, label, width) per layout; the text column takes what is left and ends in "…" when cut.
WIDE: tuple[tuple[str, str, int], ...] = (
    ("handheld", "handheld", 9),
    ("time", "time", 8),
    ("from", "from", 12),
    ("marks", "", 4),
    ("check", "check", 16),
)
NARROW: tuple[tuple[str, str, int], ...] = (
    ("handheld", "handheld", 8),
    ("marks", "", 4),
    ("check", "check", 14),
)
WIDE_MIN_COLUMNS = 100
CELL_PADDING = 2  # DataTable's default padding, one cell either side
MIN_TEXT = 12


def fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


class HandheldsPanel(Vertical):
    """Every text each handheld displayed; the cursor follows new lines only when it was on
    the last one (reading an older line is not interrupted). At 80 columns the time and
    sender columns give way to the text, which is cut with an ellipsis, never silently."""

    DEFAULT_CSS = """
    HandheldsPanel { height: 1fr; }
    HandheldsPanel #handhelds-summary { height: auto; padding: 0 1; color: $text-muted; }
    HandheldsPanel DataTable { height: 1fr; }
    """

    def __init__(self, source: HandheldSource) -> None:
        super().__init__(id="handhelds-panel")
        self.source = source
        self.lines: list[HandheldLine] = []
        self._layout: tuple[tuple[str, str, int], ...] = ()
        self._text_width = MIN_TEXT

    @property
    def rows(self) -> int:
        return len(self.lines)

    def compose(self) -> ComposeResult:
        yield Static(id="handhelds-summary")
        yield DataTable(id="handhelds-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.refresh_rows()
        self.set_interval(REFRESH_S, self.refresh_rows)

    def on_resize(self) -> None:
        self._relayout()

    def _relayout(self) -> None:
        """Pick the columns for this width and redraw every row (a few hundred at most)."""
        width = self.size.width or 80
        layout = WIDE if width >= WIDE_MIN_COLUMNS else NARROW
        used = sum(w + CELL_PADDING for _, _, w in layout) + CELL_PADDING + 2  # + scrollbar
        text_width = max(MIN_TEXT, width - used)
        if (layout, text_width) == (self._layout, self._text_width):
            return
        self._layout, self._text_width = layout, text_width
        table: DataTable[str] = self.query_one(DataTable)
        row = table.cursor_row
        table.clear(columns=True)
        for key, label, w in layout:
            table.add_column(label, key=key, width=w)
        table.add_column("text", key="text", width=text_width)
        for line in self.lines:
            self._add(table, line)
        if self.lines:
            table.move_cursor(row=min(row, len(self.lines) - 1))

    def _add(self, table: DataTable[str], line: HandheldLine) -> None:
        values = {
            "handheld": line.handheld.removeprefix("hh-"),
            "time": line.clock,
            "from": fit(line.sender, 12),
            "marks": ("🔔" if line.bell else "") + ("DM" if line.dm else ""),
            "check": f"[red]{line.check}[/]" if line.check.startswith("✗") else line.check,
        }
        table.add_row(*(values[key] for key, _, _ in self._layout), fit(line.text, self._text_width))

    def refresh_rows(self) -> None:
        if not self._layout:
            self._relayout()
        table: DataTable[str] = self.query_one(DataTable)
        follow = table.cursor_row >= table.row_count - 1
        new = list(self.source.poll())
        for line in new:
            self.lines.append(line)
            self._add(table, line)
        if new and follow:
            table.move_cursor(row=table.row_count - 1)
        counts = " · ".join(
            f"{n.removeprefix('hh-')} {self.source.counts.get(n, 0)}" for n in self.source.names
        )
        self.query_one("#handhelds-summary", Static).update(
            f"What each stock handheld displayed ({counts}). 🔔 = bell (urgent), DM = direct message; "
            "check = verified against the trust bundle (a stock handheld shows any text it hears)."
        )
