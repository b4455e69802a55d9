"""Small read-only panels: status bar, banner, trust and diagnostics."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from relayd.cli.trust import EXPIRY_WARNING_S, bundle_summary
from relayd.core.timefmt import iso_utc
from tui import fmt
from tui.messages import LinkState
from tui.model import Model

ESSENTIAL = 9


@dataclass(frozen=True, slots=True)
class Part:
    text: str
    style: str = ""
    keep: int = 0  # higher is kept longer when the line does not fit


def status_parts(
    model: Model, link: LinkState, *, broker: str, key: str | None, bell: bool, waiting: int
) -> list[Part]:
    """The status line's pieces in display order. Pure: `fit` decides what a width can show.

    Kept at every width: the broker link, the relay count and how many are red, unsent
    alerts, the trust version and new reports.
    """
    link_style = {
        LinkState.CONNECTED: "green",
        LinkState.CONNECTING: "yellow",
        LinkState.RETRYING: "bold red",
        LinkState.DISABLED: "dim",
    }[link]
    bundle = model.trust.bundle
    red = len(model.alarming_relays)
    new = model.inbox_new
    bad = model.diagnostics.malformed_total
    parts = [
        Part(" relayd ", "bold reverse", 3),
        Part(f" ● {link.value}", link_style, ESSENTIAL),
        Part(f" {broker}" if broker else "", "", 1),
        Part(f" │ key {key}" if key else " │ watch only", "", 2),
        Part(
            f" │ trust v{bundle.version}" if bundle else " │ NO TRUST",
            "" if bundle else "bold yellow",
            ESSENTIAL,
        ),
        Part(f" │ relays {len(model.relays)}", "", ESSENTIAL),
        Part(f" · {red} RED" if red else "", "bold red", ESSENTIAL),
        Part(f" │ outbox {waiting} unsent" if waiting else "", "bold yellow", ESSENTIAL),
        Part(f" │ inbox {new}", "bold yellow" if new else "", ESSENTIAL),
        Part(f" │ malformed {bad}" if bad else "", "yellow", 4),
        Part(" │ 🔔" if bell else "", "", 2),
    ]
    return [p for p in parts if p.text]


def fit(parts: list[Part], width: int) -> Text:
    """Drop the least important parts until the line fits `width` cells."""
    shown = list(parts)
    while shown and sum(Text(p.text).cell_len for p in shown) > width:
        lowest = min(p.keep for p in shown)
        if lowest >= ESSENTIAL:  # only essentials left: keep them all, crop the rest
            break
        shown = [p for p in shown if p.keep != lowest]
    t = Text(no_wrap=True, overflow="crop")
    for p in shown:
        t.append(p.text, style=p.style)
    return t


class StatusBar(Static):
    """One line: broker link, key, trust version and counters; at any width the essentials."""

    _parts: list[Part] | None = None

    def show(
        self, model: Model, link: LinkState, broker: str, key: str | None, bell: bool, *, waiting: int = 0
    ) -> None:
        self._parts = status_parts(model, link, broker=broker, key=key, bell=bell, waiting=waiting)
        self._draw()

    def _draw(self) -> None:
        if self._parts is not None:
            width = self.size.width or self.app.size.width
            self.update(fit(self._parts, width))

    def on_resize(self) -> None:
        self._draw()


class Banner(Static):
    """A loud line for what needs attention now: broker down, relays red, trust expiring."""

    MAX_LINES = 3

    def show(self, lines: list[str]) -> None:
        """One line per problem, cut with an ellipsis; past three, a count and where to look."""
        if len(lines) > self.MAX_LINES:
            more = len(lines) - (self.MAX_LINES - 1)
            lines = [*lines[: self.MAX_LINES - 1], f"{more} more: see Relays (2) and the status line"]
        self.display = bool(lines)
        self.update(Text("\n".join(f"⚠ {line}" for line in lines), no_wrap=True, overflow="ellipsis"))


class TrustView(Static):
    def show(self, model: Model, now_s: float) -> None:
        bundle = model.trust.bundle
        t = Text()
        if bundle is None:
            t.append("No trust bundle loaded: signatures are not checked.\n", style="bold yellow")
            t.append("Start with --trust trust.json (from your network admin) to verify alerts.\n")
            if model.trust.note:
                t.append(f"\n{model.trust.note}\n", style="dim")
            self.update(t)
            return
        s = bundle_summary(bundle, now_s)
        state = "EXPIRED" if s["expired"] else ("expires soon" if s["expires_soon"] else "valid")
        state_style = "bold red" if s["expired"] else ("bold yellow" if s["expires_soon"] else "green")
        t.append(f"Trust bundle v{bundle.version}", style="bold")
        t.append(f"  root {bundle.root_key_id.hex()}  from {model.trust.source}\n")
        t.append(f"issued {s['issued_at']}  expires {s['expires_at']} ")
        t.append(f"({state}, in {fmt.duration(bundle.expires_at_s - now_s)})\n", style=state_style)
        if s["expires_soon"]:
            days = EXPIRY_WARNING_S // 86400
            t.append(
                f"⚠ the bundle expires within {days} days: ask your admin for a new one\n",
                style="bold yellow",
            )
        if model.trust.note:
            t.append(f"{model.trust.note}\n", style="dim")
        t.append(f"\n{'key id':10}{'name':18}{'role':12}{'expires':22}state\n", style="bold underline")
        for k in sorted(bundle.keys, key=lambda k: (k.role.value, k.name)):
            revoked = bundle.is_revoked(k.key_id)
            expired = k.is_expired(now_s)
            flag = "REVOKED" if revoked else ("expired" if expired else "ok")
            exp = iso_utc(k.expires_at_s) if k.expires_at_s is not None else "-"
            style = "red" if revoked or expired else ""
            t.append(f"{k.key_id.hex():10}{k.name[:17]:18}{k.role.value:12}{exp:22}{flag}\n", style=style)
        listed = {k.key_id for k in bundle.keys}
        for r in sorted(bundle.revoked - listed):
            t.append(f"{r.hex():10}{'(unlisted)':18}{'':12}{'':22}REVOKED\n", style="red")
        self.update(t)


class DiagnosticsView(Static):
    def show(self, model: Model, now_s: float) -> None:
        d = model.diagnostics
        t = Text()
        t.append("Messages by topic (malformed / total)\n", style="bold")
        topics = sorted(set(d.messages) | set(d.malformed), key=lambda x: x.value)
        if not topics:
            t.append("  nothing received yet\n", style="dim")
        for topic in topics:
            bad = d.malformed.get(topic, 0)
            t.append(f"  {topic.value:8} ")
            t.append(f"{bad:5}", style="bold yellow" if bad else "dim")
            t.append(f" / {d.messages.get(topic, 0)}\n")
        # Frames that failed verification and relay messages not signed by their relay.
        t.append(f"\nRejected frames {d.rejected_total}", style="bold yellow" if d.rejected_total else "dim")
        unverified = ", ".join(f"{k} {n}" for k, n in sorted(d.unverified.items())) or "none"
        t.append(f"   relay messages not believed: {unverified}\n")
        t.append("\nRecent problems (newest first)\n", style="bold")
        if not d.recent:
            t.append("  none\n", style="dim")
        for line in reversed(d.recent):
            t.append(f"  {fmt.duration(now_s - line.ts_s):>4} ago  {line.topic.value:7} {line.detail}\n")
        self.update(t)
