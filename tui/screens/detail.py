"""One alert in full: fields, verification, on-air text, signature, reference chain, raw JSON."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from relayd.core.timefmt import iso_utc
from tui import fmt
from tui.model import FeedItem, Model, visible_onair


class DetailScreen(Screen[None]):
    BINDINGS = [  # noqa: RUF012 - Textual's declared class-level binding list
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("u", "reply('update')", "Update"),
        Binding("c", "reply('cancel')", "Cancel alert"),
        Binding("a", "reply('allclear')", "All-clear"),
    ]

    class Reply(Message):
        def __init__(self, kind: str, alert_id: str) -> None:
            super().__init__()
            self.kind = kind
            self.alert_id = alert_id

    def __init__(self, model: Model, alert_id: str) -> None:
        super().__init__()
        self.model = model
        self.alert_id = alert_id

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail"):
            yield Static(id="detail-summary")
            yield Static(id="detail-onair", classes="box")
            yield Static(id="detail-sig", classes="box")
            yield Static(id="detail-chain", classes="box")
            yield Static(id="detail-relays", classes="box")
            yield Static(id="detail-raw", classes="box")
        yield Footer()

    def on_mount(self) -> None:
        self.render_item()
        self.query_one("#detail", VerticalScroll).focus()

    def render_item(self) -> None:
        item = self.model.feed.get(self.alert_id)
        if item is None:
            self.query_one("#detail-summary", Static).update("This alert is no longer in the feed.")
            return
        now = self.model.clock()
        f = item.alert.fields
        head = Text()
        head.append(f"{item.kind.value.upper()} ", style="bold")
        head.append(f" {item.severity.value} ", style=fmt.SEVERITY_STYLE[item.severity])
        head.append(f"  id {item.alert_id}\n")
        head.append_text(fmt.verify_long(item))
        head.append("\n")
        head.append(f"issued {iso_utc(f.issued_at_s)}  expires {iso_utc(f.expires_at_s)} ")
        left = f.expires_at_s - now
        head.append(
            f"(in {fmt.duration(left)})\n" if left > 0 else "(expired)\n", style="" if left > 0 else "red"
        )
        head.append(f"area {f.area or '-'}   ref {f.ref.hex() if f.ref else '-'}   ")
        head.append(f"origin handheld {f'!{f.origin_node:08x}' if f.origin_node is not None else '-'}\n")
        state = {True: "active (retained)", False: "cleared", None: "-"}[item.active]
        head.append(f"first seen {fmt.duration(now - item.first_seen_s)} ago   active: {state}   ")
        head.append(f"via {', '.join(sorted(s.value for s in item.sources))}\n\n")
        head.append(item.text + "\n", style="bold")
        self.query_one("#detail-summary", Static).update(head)

        onair = Text()
        onair.append(f"On-air text ({len(item.alert.onair.encode())} bytes; ␇ is the bell)\n", style="bold")
        onair.append(visible_onair(item.alert.onair))
        self.query_one("#detail-onair", Static).update(onair)

        sig = Text()
        sig.append("Signature and key\n", style="bold")
        sig.append(f"key id {f.key_id.hex()}  signer {item.signer_name or 'unknown'}")
        sig.append(f" ({item.signer_role.value})" if item.signer_role else "")
        sig.append(f"  seq {f.seq}\nEd25519 signature {item.alert.signature.hex()}\n")
        if item.detail:
            sig.append(f"verifier: {item.detail}\n", style="red" if not item.ok else "dim")
        self.query_one("#detail-sig", Static).update(sig)

        chain = Text()
        chain.append("Reference chain (alert → updates → cancel / all-clear)\n", style="bold")
        for depth, node in self.model.chain(self.alert_id):
            mark = "▶ " if node.alert_id == self.alert_id else "  "
            chain.append(f"{mark}{'  ' * depth}{node.kind.value:8} {node.alert_id[:8]} ")
            chain.append_text(fmt.verify_cell(node))
            chain.append(f"  {fmt.one_line(node.text, 60)}\n")
        if f.ref is not None and f.ref.hex() not in self.model.feed:
            chain.append(f"  (refers to {f.ref.hex()}, not seen by this console)\n", style="dim")
        self.query_one("#detail-chain", Static).update(chain)

        relays = Text()
        relays.append("Relays\n", style="bold")
        if not item.relays:
            relays.append("  no relay has reported this alert yet\n", style="dim")
        for relay in item.seen_by():
            events = ", ".join(sorted(item.relays[relay]))
            reason = item.drop_reasons.get(relay)
            relays.append(f"  {relay}: {events}{f' ({reason})' if reason else ''}\n")
        relays.append_text(responders_text(self.model, item, now))
        self.query_one("#detail-relays", Static).update(relays)

        raw = Text()
        raw.append("Raw message (last copy received)\n", style="bold")
        raw.append(item.raw_json)
        self.query_one("#detail-raw", Static).update(raw)

    def action_reply(self, kind: str) -> None:
        self.post_message(self.Reply(kind, self.alert_id))


def responders_text(model: Model, item: FeedItem, now_s: float) -> Text:
    """The answers to this alert, by alias only, newest first."""
    out = Text()
    answers = model.answers(item.alert_id)
    responding = sum(1 for a in answers if a.word.responding)
    out.append(f"\nResponders: {responding} responding", style="bold")
    if not answers:
        out.append("  (no answer yet: handhelds answer !y, !omw, !here or !n)\n", style="dim")
        return out
    out.append(f", {len(answers)} answered\n")
    for answer in answers:
        style = "" if answer.word.responding else "dim"
        out.append(
            f"  {answer.alias}: {answer.word.label} ({fmt.duration(now_s - answer.at_s)} ago)\n", style=style
        )
    return out


def describe(item: FeedItem) -> str:
    return f"{item.kind.value} {item.alert_id[:8]} {fmt.one_line(item.text, 40)}"
