"""Relay status: one row per relay from the retained status topics; alarming relays in red."""

from __future__ import annotations

import contextlib

from rich.text import Text
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowDoesNotExist, RowKey

from relayd.core.status import RelayState
from tui import fmt
from tui.health import relay_problems
from tui.model import RelayRow

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("relay", "relay", 14),
    ("state", "state", 8),
    ("heard", "heard", 5),
    ("queue", "queue", 5),
    ("airtime", "airtime (1 h)", 17),
    ("radio", "radio", 5),
    ("broker", "mqtt", 5),
    ("drops", "drops", 40),
)


class RelayTable(DataTable[Text | str]):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    @staticmethod
    def cells(name: str, row: RelayRow, now_s: float) -> list[Text | str]:
        s = row.status
        offline = s.state is RelayState.OFFLINE
        red = "bold red" if relay_problems(s) else ""
        return [
            Text(name, style=red),
            fmt.relay_state_cell(s),
            fmt.age(now_s, s.last_heard_s),
            Text(str(s.queue_depth), style="yellow" if s.queue_depth > 10 else ""),
            fmt.airtime_cell(s),
            fmt.link_cell(s.radio, offline),
            fmt.link_cell(s.broker, offline),
            Text(fmt.drops_cell(s.drops), style=red),
        ]

    def sync(self, name: str, row: RelayRow | None, now_s: float) -> None:
        if row is None:
            with contextlib.suppress(RowDoesNotExist):
                self.remove_row(name)
            return
        cells = self.cells(name, row, now_s)
        if RowKey(name) in self.rows:
            for (key, _, _), value in zip(COLUMNS, cells, strict=True):
                self.update_cell(name, key, value)
        else:
            self.add_row(*cells, key=name)
            self.sort("relay", key=lambda cell: cell.plain if isinstance(cell, Text) else cell)


class RelayDetail(Static):
    """The selected relay's full status: warnings in words, device, counters, all drops."""

    def show(self, name: str | None, row: RelayRow | None, now_s: float) -> None:
        if name is None or row is None:
            self.update("No relay status yet. Relays publish retained status on <root>/relays/+/status.")
            return
        s = row.status
        lines = Text()
        lines.append(f"{name}", style="bold")
        lines.append(f"  {s.state.value}  v{s.version or '?'}  status {fmt.age(now_s, row.updated_s)} ago")
        lines.append(f"  radio {s.radio.value} {s.radio_device} {s.radio_node}\n")
        for problem in relay_problems(s):
            lines.append(f"⚠ {problem.detail}\n", style="bold red")
        lines.append(
            f"tx {s.transmitted}  suppressed {s.suppressed}  heard {s.heard}  published {s.published}  "
            f"airtime {s.airtime_last_hour_s:.1f}/{s.airtime_budget_per_hour_s:.0f} s/h  "
            f"trust v{s.trust_version if s.trust_version is not None else '?'}\n"
        )
        drops = ", ".join(f"{k} {v}" for k, v in sorted(s.drops.items())) or "none"
        lines.append(f"drops: {drops}")
        if s.backlog:
            # What its radio heard before relayd connected (relayd/core/backlog.py).
            heard = ", ".join(f"{k} {v}" for k, v in sorted(s.backlog.items()))
            lines.append(f"\nheard before connecting: {heard}")
        self.update(lines)
