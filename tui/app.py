"""The Textual app: wires the model, the broker worker and the screens. Logic lives elsewhere."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from textual import on
from textual.app import App
from textual.binding import Binding

from relayd.core.codec import ComposeError
from relayd.core.jsonform import Envelope, encode_alert
from relayd.core.model import Kind, SignedAlert
from relayd.core.topics import DEFAULT_ROOT, Topics
from relayd.core.trust import SignedBundle
from tui.config import TuiConfig
from tui.drafts import Draft, Signer
from tui.messages import BrokerState, LinkState, MqttReceived
from tui.model import Change, Clock, Model, VerifyState
from tui.mqtt_worker import MqttLink, NotConnected
from tui.outbox import (
    Outbox,
    OutboxEntry,
    OutboxFileError,
    OutboxState,
    acknowledged,
    alert_of,
    failed,
    new_entry,
)
from tui.screens.compose import ComposeScreen, prefill
from tui.screens.detail import DetailScreen
from tui.screens.dialogs import DispatchVerifierScreen, HelpScreen, SendProgressScreen
from tui.screens.main import MainScreen, Panel
from tui.widgets.feed import FeedTable
from tui.widgets.inbox import InboxTable
from tui.widgets.outbox import OutboxTable

log = logging.getLogger(__name__)

__all__ = ["Panel", "RelaydApp"]

STATUS_INTERVAL_S = 0.2
# A waiting alert is retried no more often than this while the broker is connected (a
# refused or timed-out publish); a reconnect retries at once.
OUTBOX_RETRY_S = 5.0
FREEZE_AFTER_NEW_ITEMS = 500


class RelaydApp(App[None]):
    """The relayd console.

    Extension points (used by `relayd demo`):
    - `extra_panels`: extra tabs on the main screen, bound to keys 6-9 (see `Panel`).
    - subclass and override `make_main_screen()` for a different layout.
    - `ingest(topic, payload)` feeds one MQTT message without a broker (tests, replays).
    """

    # Absolute, so subclasses in other packages (e.g. relayd demo) still find the stylesheet.
    CSS_PATH = Path(__file__).with_name("relayd.tcss")
    TITLE = "relayd"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [  # noqa: RUF012 - Textual's declared class-level binding list
        Binding("question_mark,f1", "help", "Help"),
        Binding("t", "toggle_theme", "Theme", show=False),
        Binding("b", "toggle_bell", "Bell", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        config: TuiConfig,
        *,
        signer: Signer | None = None,
        bundle: SignedBundle | None = None,
        clock: Clock = time.time,
        extra_panels: Sequence[Panel] = (),
        tick_interval_s: float = 1.0,
    ) -> None:
        super().__init__()
        self.config = config
        self.signer = signer
        self.clock = clock
        self.extra_panels = tuple(extra_panels)
        self.bell_enabled = config.bell
        self.tick_interval_s = tick_interval_s
        root = config.mqtt.root if config.mqtt else DEFAULT_ROOT
        self.topics = Topics(root)
        source = f"file {config.trust_path.name}" if config.trust_path else "file"
        self.model = Model(self.topics, bundle.bundle if bundle else None, clock, trust_source=source)
        self.link = MqttLink(config.mqtt, self.post_message) if config.mqtt else None
        self.link_state = LinkState.CONNECTING if self.link else LinkState.DISABLED
        self.link_detail = ""
        self.outbox = Outbox(config.outbox_dir)
        self.outbox_note = ""  # shown when the outbox cannot be saved to disk
        self._in_flight: set[str] = set()
        self._last_try: dict[str, float] = {}
        self.theme = "textual-dark" if config.dark else "textual-light"
        self._main: MainScreen | None = None
        self._status_dirty = False
        self._frozen_feed_size = 0

    # ---- lifecycle ------------------------------------------------------------------

    def make_main_screen(self) -> MainScreen:
        return MainScreen(self.model, self.outbox, self.extra_panels)

    @property
    def main(self) -> MainScreen:
        if self._main is None:
            raise RuntimeError("the main screen is not mounted yet")
        return self._main

    def on_mount(self) -> None:
        self._load_outbox()
        self._main = self.make_main_screen()
        self.push_screen(self._main)
        self.update_status()
        if self.link is not None:
            self.run_worker(self.link.run(), name="mqtt", group="mqtt", exclusive=True, exit_on_error=False)
        if self.tick_interval_s > 0:
            self.set_interval(self.tick_interval_s, self._tick)
        self.set_interval(STATUS_INTERVAL_S, self._flush_status)
        self._warn_about_key()

    def _load_outbox(self) -> None:
        """Alerts signed before a restart and not yet acknowledged are shown and sent again."""
        try:
            entries = self.outbox.load(self.clock())
        except OSError as exc:
            self.notify(f"could not read the outbox: {exc}", title="Outbox", severity="error", timeout=15)
            return
        for entry in entries:
            try:
                alert = alert_of(entry)
            except OutboxFileError:  # from_json already checked it; kept as the last fence
                continue
            self.model.add_sent(alert, entry.payload)
        for line in self.outbox.unreadable:
            log.warning("outbox file kept aside: %s", line)
        if self.outbox.unreadable:
            self.notify(
                f"{len(self.outbox.unreadable)} outbox file(s) could not be read and were set aside "
                "(renamed .unreadable); they will not be sent",
                title="Outbox",
                severity="warning",
                timeout=15,
            )

    def _warn_about_key(self) -> None:
        bundle = self.model.trust.bundle
        if self.signer is None or bundle is None:
            return
        key_id = self.signer.identity.key_id
        if bundle.key(key_id) is None or bundle.is_revoked(key_id):
            self.notify(
                f"your key {self.signer.name} ({key_id.hex()}) is not a valid key in the trust bundle: "
                "relays will reject what you sign",
                severity="warning",
                timeout=15,
            )

    def _freeze_long_lived(self) -> None:
        """Move the feed history out of the cyclic GC's sight once it has grown.

        With 10,000 alerts in memory a full (generation 2) collection walks every object and
        stalls the UI for 100-200 ms. Feed items are freed by reference counting when evicted
        (they hold no cycles), so freezing them costs nothing and removes those stalls.
        """
        size = len(self.model.feed)
        if size - self._frozen_feed_size >= FREEZE_AFTER_NEW_ITEMS:
            gc.freeze()
            self._frozen_feed_size = size

    def _flush_status(self) -> None:
        if self._status_dirty:
            self._status_dirty = False
            self.update_status()

    def _tick(self) -> None:
        self._freeze_long_lived()
        self._settle_outbox()
        self.flush_outbox()
        if self._main is not None and self._main.is_mounted:
            self._main.tick()
            self.update_status()

    # ---- incoming -------------------------------------------------------------------

    def ingest(self, topic: str, payload: bytes) -> Change:
        """Apply one MQTT message to the model and redraw what changed."""
        change = self.model.ingest(topic, payload)
        self.apply(change)
        return change

    def apply(self, change: Change) -> None:
        if change.empty:
            return
        if self._main is not None and self._main.is_mounted:
            self._main.apply(change)
            # The status line is redrawn at most STATUS_INTERVAL_S apart: at 50 messages a
            # second, redrawing it per message costs more than the feed row itself.
            if change.relay is not None or change.trust:
                self.update_status()  # alarms are shown at once
            else:
                self._status_dirty = True
        if change.feed_new and change.feed_id and self.bell_enabled:
            item = self.model.feed.get(change.feed_id)
            if item is not None and item.urgent and item.state is VerifyState.VERIFIED:
                self.bell()

    @on(MqttReceived)
    def _mqtt_received(self, message: MqttReceived) -> None:
        self.ingest(message.topic, message.payload)

    @on(BrokerState)
    def _broker_state(self, message: BrokerState) -> None:
        self.link_state = message.state
        detail = message.detail
        if message.retry_in_s is not None:
            detail += f" — retrying in {message.retry_in_s:.0f} s"
        self.link_detail = detail
        self.update_status()
        if message.state is LinkState.CONNECTED:
            self._last_try.clear()  # a new connection: whatever waits is due now
            self.flush_outbox()

    def update_status(self) -> None:
        if self._main is None or not self._main.is_mounted:
            return
        key = f"{self.signer.name} ({self.signer.role.value})" if self.signer else None
        broker = self.config.mqtt.display if self.config.mqtt else ""
        self._main.show_status(
            self.link_state, self.link_detail, broker, key, self.bell_enabled, outbox_note=self.outbox_note
        )

    # ---- feed and inbox actions -----------------------------------------------------

    @on(FeedTable.Action)
    def _feed_action(self, message: FeedTable.Action) -> None:
        action = message.action
        main = self.main
        if action == "open" and message.alert_id:
            self.push_screen(DetailScreen(self.model, message.alert_id))
        elif action.startswith("compose:"):
            self.reply(Kind(action.split(":", 1)[1]), message.alert_id)
        elif action.startswith("cycle:"):
            main.cycle_filter(action.split(":", 1)[1])
        elif action == "search":
            main.focus_search()
        elif action == "clear_filters":
            main.clear_filters()
        elif action == "toggle_view":
            main.toggle_view()

    @on(DetailScreen.Reply)
    def _detail_reply(self, message: DetailScreen.Reply) -> None:
        self.reply(Kind(message.kind), message.alert_id)

    def reply(self, kind: Kind, alert_id: str | None) -> None:
        """New alert (kind ALERT) or an update/cancel/all-clear about `alert_id`."""
        if kind is Kind.ALERT:
            self.open_compose(prefill(kind, None))
            return
        item = self.model.feed.get(alert_id or "")
        if item is None or item.kind not in (Kind.ALERT, Kind.UPDATE, Kind.TEST) or not item.ok:
            self.notify(
                f"select a verified alert first, then press the key for {kind.value}",
                severity="warning",
            )
            return
        self.open_compose(prefill(kind, item))

    @on(OutboxTable.Action)
    def _outbox_action(self, message: OutboxTable.Action) -> None:
        if message.action == "resend":
            self.resend(message.alert_id)
        elif message.action == "discard":
            self.discard(message.alert_id)
        elif message.action == "open":
            self.push_screen(
                SendProgressScreen(self.model, self.outbox, message.alert_id, lambda: self.connected)
            )

    @on(InboxTable.Action)
    def _inbox_action(self, message: InboxTable.Action) -> None:
        item = self.model.feed.get(message.alert_id)
        if item is None:
            return
        if message.action == "open":
            self.push_screen(DetailScreen(self.model, message.alert_id))
        elif message.action == "dispatch":

            def dispatched(who: str | None) -> None:
                if who:
                    self.model.dispatch_verifier(message.alert_id, who)
                    self.apply(Change(inbox=True))
                    log.info("verifier %s dispatched to report %s", who, message.alert_id)

            self.push_screen(DispatchVerifierScreen(item.text), dispatched)
        elif message.action == "dismiss":
            self.model.dismiss_report(message.alert_id)
            self.apply(Change(inbox=True))
        elif message.action == "confirm":
            f = item.alert.fields
            draft = Draft(kind=Kind.ALERT, severity=f.severity, area=f.area or "", text=f.text)
            self.open_compose(draft, report_id=message.alert_id)

    # ---- compose and send -----------------------------------------------------------

    def open_compose(self, draft: Draft, *, report_id: str | None = None) -> None:
        if self.signer is None:
            self.notify(
                "composing needs a dispatcher or verifier key: restart with --key PATH",
                title="Watch-only console",
                severity="warning",
            )
            return
        signer = self.signer
        label = f"{signer.name} ({signer.role.value}, key {signer.identity.key_id.hex()})"

        def done(result: Draft | None) -> None:
            if result is None:
                return
            alert = self.sign_and_send(result)
            if alert is not None and report_id is not None:
                self.model.confirm_report(report_id, alert.id_hex)
                self.apply(Change(inbox=True))

        screen = ComposeScreen(
            draft, signer.role, label, self.model.active_alerts(), cursor_blink=self.config.cursor_blink
        )
        self.push_screen(screen, done)

    def sign_and_send(self, draft: Draft) -> SignedAlert | None:
        """Sign, save in the outbox, show it, and publish it when the broker is there."""
        if self.signer is None:
            return None
        try:
            alert = self.signer.sign(draft, self.clock())
        except (ComposeError, OSError) as exc:
            self.notify(str(exc), title="Not signed", severity="error")
            return None
        payload = encode_alert(
            alert, Envelope(signer_name=self.signer.name, signer_role=self.signer.role.value)
        )
        log.info("signed %s %s seq %d", alert.kind.value, alert.id_hex, alert.fields.seq)
        self._save(new_entry(alert, payload, self.clock()))
        self.apply(self.model.add_sent(alert, payload))
        self.push_screen(SendProgressScreen(self.model, self.outbox, alert.id_hex, lambda: self.connected))
        self.flush_outbox()
        return alert

    @property
    def connected(self) -> bool:
        return self.link is not None and self.link.connected

    def _save(self, entry: OutboxEntry) -> None:
        try:
            self.outbox.put(entry)
        except OSError as exc:
            # Still held in memory and still sent; but it would not survive a restart.
            self.outbox_note = f"outbox not saved to disk: {exc.strerror or exc}"
            log.warning("could not save outbox entry %s: %s", entry.alert_id, exc)
            self.notify(self.outbox_note, title="Outbox", severity="error", timeout=15)
        self._outbox_changed(entry.alert_id)

    def _outbox_changed(self, alert_id: str) -> None:
        if self._main is not None and self._main.is_mounted:
            self._main.outbox_changed(alert_id)
        self.update_status()

    def _settle_outbox(self) -> None:
        for entry in self.outbox.settle_all(self.clock()):
            log.info("outbox %s expired before the broker acknowledged it: not sent", entry.alert_id)
            self._outbox_changed(entry.alert_id)

    def flush_outbox(self) -> None:
        """Publish whatever waits, if the broker is connected (one publish per alert at a time)."""
        if not self.connected:
            return
        now = time.monotonic()
        due = [
            e
            for e in self.outbox
            if e.due(self.clock())
            and e.alert_id not in self._in_flight
            and now - self._last_try.get(e.alert_id, -OUTBOX_RETRY_S) >= OUTBOX_RETRY_S
        ]
        if due:
            for entry in due:
                self._in_flight.add(entry.alert_id)
                self._last_try[entry.alert_id] = now
            self.run_worker(self._publish(due), group="outbox", exit_on_error=False)

    async def _publish(self, entries: list[OutboxEntry]) -> None:
        """Oldest first; stops at the first failure (the rest wait for the next try)."""
        try:
            for index, queued in enumerate(entries):
                entry = self.outbox.get(queued.alert_id)
                # Discarded or expired since it was queued: never published.
                if entry is None or not entry.due(self.clock()) or self.link is None:
                    self._in_flight.discard(queued.alert_id)
                    continue
                try:
                    await self.link.publish(self.topics.outbox, entry.payload, qos=1)
                except NotConnected as exc:
                    self._save(failed(entry, str(exc)))
                    for rest in entries[index:]:
                        self._in_flight.discard(rest.alert_id)
                    return
                # The PUBACK arrived: the broker has it, whatever happened to the entry meanwhile.
                current = self.outbox.get(entry.alert_id) or entry
                self._save(acknowledged(current, self.clock()))
                self._in_flight.discard(entry.alert_id)
                log.info("published %s to %s", entry.alert_id, self.topics.outbox)
        finally:
            for queued in entries:
                self._in_flight.discard(queued.alert_id)

    def resend(self, alert_id: str) -> None:
        """Publish again now: a waiting alert (retry) or a sent one (relays drop duplicates)."""
        entry = self.outbox.get(alert_id)
        if entry is None:
            return
        if self.clock() >= entry.expires_at_s:
            self.notify("this alert has expired: it is never sent", severity="warning")
            return
        if entry.state is OutboxState.DISCARDED:
            self.notify("discarded alerts are not sent; compose it again", severity="warning")
            return
        self._last_try.pop(alert_id, None)
        if entry.state is OutboxState.SENT:
            self._save(replace(entry, state=OutboxState.WAITING))
        if not self.connected:
            self.notify("not connected to the broker: it is sent when the broker is back")
        self.flush_outbox()

    def discard(self, alert_id: str) -> None:
        entry = self.outbox.get(alert_id)
        if entry is None:
            return
        if entry.state is not OutboxState.WAITING:
            self.notify(
                f"already {entry.state.value}: a sent alert cannot be recalled; cancel it from the Feed (c)",
                severity="warning",
            )
            return
        if alert_id in self._in_flight:
            self.notify("being published right now; if the broker takes it, cancel it from the Feed (c)")
        self._save(replace(entry, state=OutboxState.DISCARDED))
        log.info("outbox %s discarded before it was sent", alert_id)

    # ---- app actions ----------------------------------------------------------------

    def action_help(self) -> None:
        sections = [
            ("Everywhere", list(self.BINDINGS)),
            (
                "Main screen",
                list(MainScreen.BINDINGS)[:6] + ([("6-9", "", "extra panels")] if self.extra_panels else []),
            ),
            ("Feed", list(FeedTable.BINDINGS)),
            ("Inbox", list(InboxTable.BINDINGS)),
            ("Outbox", list(OutboxTable.BINDINGS)),
            ("Alert detail", list(DetailScreen.BINDINGS)),
            (
                "Compose",
                [*list(ComposeScreen.BINDINGS), ("tab", "", "next field"), ("enter", "", "open a list")],
            ),
        ]
        self.push_screen(HelpScreen(sections))

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def action_toggle_bell(self) -> None:
        self.bell_enabled = not self.bell_enabled
        self.notify(f"terminal bell on urgent alerts {'on' if self.bell_enabled else 'off'}")
        self.update_status()
