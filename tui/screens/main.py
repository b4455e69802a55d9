"""The main screen: status bar, banner, and tabs for feed, relays, inbox, trust, diagnostics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane

from relayd.core.model import Kind, Severity
from tui.health import relay_problems
from tui.messages import LinkState
from tui.model import Change, FeedFilter, Model
from tui.outbox import Outbox
from tui.widgets.feed import WIDE_MIN_COLUMNS, FeedTable
from tui.widgets.inbox import InboxTable
from tui.widgets.outbox import OutboxTable
from tui.widgets.panels import Banner, DiagnosticsView, StatusBar, TrustView
from tui.widgets.relays import RelayDetail, RelayTable

BUILTIN_TABS = ("feed", "relays", "inbox", "trust", "diagnostics")
MAX_EXTRA_PANELS = 4  # bound to keys 6-9


@dataclass(frozen=True, slots=True)
class Panel:
    """An extra tab on the main screen (e.g. the demo's handhelds view).

    `factory` builds the widget when the screen is composed; the tab is bound to the next
    free digit key (6, 7, 8, 9) in the order panels are given.
    """

    id: str
    title: str
    factory: Callable[[], Widget]


class MainScreen(Screen[None]):
    BINDINGS = [  # noqa: RUF012 - Textual's declared class-level binding list
        Binding("1", "tab('feed')", "Feed", show=False),
        Binding("2", "tab('relays')", "Relays", show=False),
        Binding("3", "tab('inbox')", "Inbox", show=False),
        Binding("4", "tab('trust')", "Trust", show=False),
        Binding("5", "tab('diagnostics')", "Diag", show=False),
        Binding("o", "tab('outbox')", "Outbox", show=False),
        Binding("6", "extra(0)", "Panel 6", show=False),
        Binding("7", "extra(1)", "Panel 7", show=False),
        Binding("8", "extra(2)", "Panel 8", show=False),
        Binding("9", "extra(3)", "Panel 9", show=False),
    ]

    def __init__(self, model: Model, outbox: Outbox, panels: Sequence[Panel] = ()) -> None:
        super().__init__()
        if len(panels) > MAX_EXTRA_PANELS:
            raise ValueError(f"at most {MAX_EXTRA_PANELS} extra panels (keys 6-9)")
        self.model = model
        self.outbox = outbox
        self.panels = tuple(panels)
        self._search_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        yield Banner(id="banner")
        with TabbedContent(id="tabs", initial="feed"):
            with TabPane("Feed 1", id="feed"):
                with Horizontal(id="filter-bar"):
                    yield Static(id="filter-summary")
                    yield Input(placeholder="/ search text, area, id, author", id="search", compact=True)
                yield FeedTable(self.model.clock, outbox=self.outbox.get, id="feed-table")
            with TabPane("Relays 2", id="relays"):
                yield RelayTable(id="relay-table")
                yield RelayDetail(id="relay-detail")
            with TabPane("Inbox 3", id="inbox"):
                yield InboxTable(id="inbox-table")
                yield Static(
                    "v dispatch verifier · c confirm → compose alert · x dismiss · enter detail",
                    id="inbox-help",
                )
            with TabPane("Trust 4", id="trust"), VerticalScroll():
                yield TrustView(id="trust-view")
            with TabPane("Diag 5", id="diagnostics"), VerticalScroll():
                yield DiagnosticsView(id="diag-view")
            with TabPane("Outbox o", id="outbox"):
                yield OutboxTable(id="outbox-table")
                yield Static("r resend · d discard (before it is sent) · enter detail", id="outbox-help")
            for index, panel in enumerate(self.panels):
                with TabPane(f"{panel.title} {index + 6}", id=panel.id):
                    yield panel.factory()
        yield Footer()

    # ---- widget access --------------------------------------------------------------

    @property
    def feed_table(self) -> FeedTable:
        return self.query_one("#feed-table", FeedTable)

    @property
    def relay_table(self) -> RelayTable:
        return self.query_one("#relay-table", RelayTable)

    @property
    def inbox_table(self) -> InboxTable:
        return self.query_one("#inbox-table", InboxTable)

    @property
    def outbox_table(self) -> OutboxTable:
        return self.query_one("#outbox-table", OutboxTable)

    def outbox_changed(self, alert_id: str) -> None:
        """An outbox entry changed state: its feed row and the outbox tab."""
        self.outbox_table.sync(self.outbox, self.model, self.model.clock())
        item = self.model.feed.get(alert_id)
        if item is not None:
            self.feed_table.sync_item(item, self.model.clock())

    def on_mount(self) -> None:
        self.feed_table.set_wide(self.app.size.width >= WIDE_MIN_COLUMNS)
        self.feed_table.focus()
        self.update_filter_summary()
        self.redraw_all()

    def on_resize(self) -> None:
        self.feed_table.set_wide(self.size.width >= WIDE_MIN_COLUMNS)
        # Their text columns end in an ellipsis fitted to the width.
        self._sync_inbox()
        self.outbox_table.sync(self.outbox, self.model, self.model.clock())

    # ---- drawing --------------------------------------------------------------------

    def redraw_all(self) -> None:
        now = self.model.clock()
        self.feed_table.rebuild(list(self.model.items(self.feed_table.filter)), now)
        for name in sorted(self.model.relays):
            self.relay_table.sync(name, self.model.relays[name], now)
        self._sync_inbox()
        self.outbox_table.sync(self.outbox, self.model, now)
        self.query_one(TrustView).show(self.model, now)
        self.query_one(DiagnosticsView).show(self.model, now)
        self._show_relay_detail()

    def apply(self, change: Change) -> None:
        """Redraw only what one ingested message changed."""
        now = self.model.clock()
        feed = self.feed_table
        for alert_id in change.evicted:
            feed.remove_item(alert_id)
        if change.trust:
            self.query_one(TrustView).show(self.model, now)
            feed.rebuild(list(self.model.items(feed.filter)), now)
        elif change.feed_id is not None:
            item = self.model.feed.get(change.feed_id)
            if item is not None:
                feed.sync_item(item, now)
                for related in change.related:
                    other = self.model.feed.get(related)
                    if other is not None:
                        feed.sync_item(other, now)
                if change.feed_id in self._outbox_ids():
                    self.outbox_table.sync(self.outbox, self.model, now)
        if change.relay is not None:
            self.relay_table.sync(change.relay, self.model.relays.get(change.relay), now)
            self._show_relay_detail()
        if change.inbox or change.trust or change.evicted:
            self._sync_inbox()
        if change.diagnostics:
            self.query_one(DiagnosticsView).show(self.model, now)

    def tick(self) -> None:
        """Once a second: ages, time to expiry, last-heard."""
        if not self.query("#feed-table"):
            return  # the timer can fire while the screen's widgets are still mounting or going
        now = self.model.clock()
        self.feed_table.drop_stale(now)
        self.feed_table.refresh_times(self.model.feed, now)
        active = self.query_one(TabbedContent).active
        if active == "relays":
            for name, row in self.model.relays.items():
                self.relay_table.sync(name, row, now)
        elif active == "trust":
            self.query_one(TrustView).show(self.model, now)
        elif active == "outbox":
            self.outbox_table.sync(self.outbox, self.model, now)
        elif active == "inbox":
            self._sync_inbox()  # ages
        elif active == "diagnostics":
            # Counts move with every message, not only with problems.
            self.query_one(DiagnosticsView).show(self.model, now)

    def show_status(
        self,
        link: LinkState,
        link_detail: str,
        broker: str,
        key: str | None,
        bell: bool,
        *,
        outbox_note: str = "",
    ) -> None:
        bars = self.query(StatusBar)
        if not bars:
            # The clock tick can fire while the screen is still composing or being torn down.
            return
        bars.first().show(self.model, link, broker, key, bell, waiting=self.outbox.waiting())
        lines: list[str] = []
        if link is LinkState.RETRYING:
            lines.append(link_detail)
        waiting = self.outbox.waiting()
        if waiting and link is not LinkState.CONNECTED:
            lines.append(f"{waiting} signed alert(s) waiting in the outbox: sent when the broker is back")
        if outbox_note:
            lines.append(outbox_note)
        for name in self.model.alarming_relays:
            problems = relay_problems(self.model.relays[name].status)
            lines.append(f"relay {name}: " + "; ".join(p.detail for p in problems))
        bundle = self.model.trust.bundle
        now = self.model.clock()
        if bundle is not None and bundle.is_expired(now):
            lines.append("trust bundle EXPIRED: alerts cannot be verified; get a new bundle")
        self.query_one(Banner).show(lines)

    def _outbox_ids(self) -> set[str]:
        return {e.alert_id for e in self.outbox}

    def _sync_inbox(self) -> None:
        self.inbox_table.sync(list(self.model.inbox_entries()), self.model.clock())

    def _show_relay_detail(self) -> None:
        table = self.relay_table
        name: str | None = None
        if table.row_count:
            name = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.query_one(RelayDetail).show(name, self.model.relays.get(name or ""), self.model.clock())

    @on(DataTable.RowHighlighted, "#relay-table")
    def _relay_highlighted(self) -> None:
        self._show_relay_detail()

    # ---- tabs -----------------------------------------------------------------------

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self._focus_tab(tab)
        self.tick()

    def action_extra(self, index: int) -> None:
        if index < len(self.panels):
            self.action_tab(self.panels[index].id)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "extra":
            index = parameters[0] if parameters else 0
            return isinstance(index, int) and index < len(self.panels)
        return True

    def _focus_tab(self, tab: str) -> None:
        target = {
            "feed": "#feed-table",
            "relays": "#relay-table",
            "inbox": "#inbox-table",
            "outbox": "#outbox-table",
        }.get(tab)
        if target:
            self.query_one(target).focus()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self._focus_tab(event.pane.id)

    # ---- filters --------------------------------------------------------------------

    def update_filter_summary(self) -> None:
        f = self.feed_table.filter
        parts = [
            "all (v)" if f.show_all else "active (v)",
            f"k:{f.kind.value if f.kind else 'all'}",
            f"s:{f.severity.value if f.severity else 'all'}",
            f"r:{f.relay or 'all'}",
        ]
        self.query_one("#filter-summary", Static).update(" ".join(parts) + " ")

    def set_filter(self, flt: FeedFilter) -> None:
        self.feed_table.filter = flt
        self.update_filter_summary()
        self.feed_table.rebuild(list(self.model.items(flt)), self.model.clock())

    def cycle_filter(self, what: str) -> None:
        f = self.feed_table.filter
        if what == "kind":
            kinds: list[Kind | None] = [None, *Kind]
            f = replace(f, kind=kinds[(kinds.index(f.kind) + 1) % len(kinds)])
        elif what == "severity":
            sevs: list[Severity | None] = [None, *Severity]
            f = replace(f, severity=sevs[(sevs.index(f.severity) + 1) % len(sevs)])
        else:
            relays: list[str | None] = [None, *self.model.relay_names()]
            current = relays.index(f.relay) if f.relay in relays else 0
            f = replace(f, relay=relays[(current + 1) % len(relays)])
        self.set_filter(f)

    def clear_filters(self) -> None:
        self.query_one("#search", Input).value = ""
        self.set_filter(FeedFilter(show_all=self.feed_table.filter.show_all))

    def toggle_view(self) -> None:
        """Active alerts only (the landing view) or everything the console has seen."""
        f = self.feed_table.filter
        self.set_filter(replace(f, show_all=not f.show_all))

    def focus_search(self) -> None:
        self.query_one("#search", Input).focus()

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        # Debounced: rebuilding a 10,000-row table on every keystroke would stutter.
        if self._search_timer is not None:
            self._search_timer.stop()
        text = event.value.strip()

        def apply() -> None:
            f = self.feed_table.filter
            if f.text != text:
                self.set_filter(replace(f, text=text))

        self._search_timer = self.set_timer(0.25, apply)

    @on(Input.Submitted, "#search")
    def _search_done(self) -> None:
        self.feed_table.focus()

    def key_escape(self) -> None:
        if self.focused is self.query_one("#search", Input):
            self.feed_table.focus()
