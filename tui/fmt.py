"""Text formatting shared by widgets: ages, sparklines, verification labels. Pure functions."""

from __future__ import annotations

from rich.text import Text

from relayd.core.model import Kind, Severity
from relayd.core.status import LinkState, RelayState, RelayStatus
from tui.health import relay_problems
from tui.model import FeedItem, Lifecycle, VerifyState
from tui.outbox import OutboxEntry, OutboxState, settle

SPARK_BLOCKS = " ▁▂▃▄▅▆▇█"
SEVERITY_SHORT = {
    Severity.URGENT: "URG",
    Severity.WARNING: "warn",
    Severity.ADVISORY: "adv",
    Severity.INFO: "info",
}
SEVERITY_STYLE = {
    Severity.URGENT: "bold white on red",
    Severity.WARNING: "bold yellow",
    Severity.ADVISORY: "cyan",
    Severity.INFO: "dim",
}
DROP_SHORT = {
    "bad_signature": "sig",
    "unknown_key": "key?",
    "revoked": "revk",
    "key_expired": "kexp",
    "role_not_allowed": "role",
    "replay": "rply",
    "expired": "exp",
    "not_yet_valid": "futr",
    "malformed": "malf",
    "rate_limited": "rate",
    "duplicate": "dup",
}


def duration(seconds: float) -> str:
    """Compact duration: 45s, 12m, 3h, 2d."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def age(now_s: float, then_s: float | None) -> str:
    return "never" if then_s is None else duration(now_s - then_s)


def ttl(item: FeedItem, now_s: float) -> Text:
    left = item.alert.fields.expires_at_s - now_s
    if left <= 0:
        return Text("expd", style="dim")
    return Text(duration(left))


def sparkline(values: tuple[float, ...] | list[float], width: int = 12, ceiling: float | None = None) -> str:
    """`values` squeezed into `width` cells (max per bucket), scaled to `ceiling` or their max."""
    if not values:
        return " " * width
    n = len(values)
    buckets = [
        max(values[i * n // width : max((i + 1) * n // width, i * n // width + 1)]) for i in range(width)
    ]
    top = ceiling if ceiling and ceiling > 0 else max(buckets)
    if top <= 0:
        return SPARK_BLOCKS[1] * width
    last = len(SPARK_BLOCKS) - 1
    return "".join(SPARK_BLOCKS[min(last, max(1 if v > 0 else 0, round(v / top * last)))] for v in buckets)


def short_relay(name: str) -> str:
    return name.removeprefix("relay-")


def relays_cell(item: FeedItem, width: int = 40) -> str:
    """Relays that have the alert, transmitters (⇡) first; "+N" when they do not all fit."""
    tx = set(item.transmitted_by())
    names = sorted(item.seen_by(), key=lambda r: (r not in tx, r))
    if not names:
        return "-"
    labels = [short_relay(r) + ("⇡" if r in tx else "") for r in names]
    full = " ".join(labels)
    if len(full) <= width:
        return full
    for shown in range(len(labels) - 1, 0, -1):
        candidate = " ".join(labels[:shown]) + f" +{len(labels) - shown}"
        if len(candidate) <= width:
            return candidate
    return f"{len(labels)} relays"[:width]


def responding_cell(item: FeedItem) -> Text:
    """How many responders answered that they are responding (blank: none yet)."""
    if not item.responding:
        return Text("")
    return Text(str(item.responding), style="bold green")


def kind_cell(item: FeedItem) -> Text:
    label = item.kind.value.upper() if item.kind is not Kind.ALLCLEAR else "ALLCLR"
    return Text(label, style="bold" if item.urgent else "")


def severity_cell(item: FeedItem) -> Text:
    return Text(SEVERITY_SHORT[item.severity], style=SEVERITY_STYLE[item.severity] if item.ok else "dim")


ROLE_SHORT = {"dispatcher": "dsp", "verifier": "vrf", "reporter": "rpt", "relay": "rly", "root": "root"}


def verify_cell(item: FeedItem, *, short: bool = False) -> Text:
    if item.state is VerifyState.VERIFIED:
        role = item.signer_role.value if item.signer_role else "?"
        if short:
            return Text(f"✓ {(item.signer_name or '?')[:11]}/{ROLE_SHORT.get(role, role)}", style="green")
        return Text(f"✓ {item.signer_name} ({role})", style="green")
    if item.state is VerifyState.REJECTED:
        reason = item.reason.value if item.reason else "rejected"
        return Text(f"✗ {reason}", style="bold red")
    if item.state is VerifyState.REPORT:
        name = short_relay(item.signer_name or "?") if short else item.signer_name
        return Text(f"? report/{name}", style="yellow")
    return Text("- unchecked", style="dim")


def verify_long(item: FeedItem) -> Text:
    if item.state is VerifyState.VERIFIED:
        role = item.signer_role.value if item.signer_role else "?"
        return Text(f"✓ verified — signed by {item.signer_name} ({role})", style="bold green")
    if item.state is VerifyState.REJECTED:
        reason = item.reason.value if item.reason else "rejected"
        return Text(f"✗ REJECTED — {reason}: {item.detail}", style="bold red")
    if item.state is VerifyState.REPORT:
        return Text(
            f"? unverified report — wrapped and signed by {item.signer_name} "
            f"({item.signer_role.value if item.signer_role else '?'}); the content is not confirmed",
            style="bold yellow",
        )
    return Text("- not checked: start with --trust BUNDLE to verify signatures", style="dim")


def text_room(table_width: int, columns: tuple[tuple[str, str, int], ...]) -> int:
    """Cells left for a DataTable's last (text) column: it is cut there with an ellipsis
    rather than by the screen edge. Each column has one cell of padding either side."""
    fixed = sum(width + 2 for _, _, width in columns[:-1])
    return max(8, table_width - fixed - 2 - 1)  # its own padding, and the scrollbar


def one_line(text: str, limit: int = 200) -> str:
    flat = text.replace("\n", " ⏎ ")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def relay_state_cell(status: RelayStatus) -> Text:
    problems = relay_problems(status)
    if problems:
        return Text(problems[0].short, style="bold white on red")
    if status.state is RelayState.DRAINING:
        return Text("draining", style="yellow")
    return Text("online", style="green")


def link_cell(state: LinkState, offline: bool) -> Text:
    if offline:
        return Text("-", style="dim")
    style = {LinkState.CONNECTED: "green", LinkState.CONNECTING: "yellow", LinkState.DISCONNECTED: "red"}
    label = {LinkState.CONNECTED: "up", LinkState.CONNECTING: "conn", LinkState.DISCONNECTED: "down"}
    return Text(label[state], style=style[state])


def drops_cell(drops: dict[str, int]) -> str:
    parts = [f"{DROP_SHORT.get(k, k)} {v}" for k, v in sorted(drops.items(), key=lambda kv: -kv[1]) if v]
    return " ".join(parts) or "-"


def airtime_cell(status: RelayStatus) -> str:
    used = status.airtime_last_hour_s
    budget = status.airtime_budget_per_hour_s
    pct = f"{used / budget * 100:3.0f}%" if budget > 0 else f"{used:4.0f}s"
    per_min_budget = budget / 60 if budget > 0 else None
    return f"{pct} {sparkline(status.airtime_history_s, 12, per_min_budget)}"


LIFECYCLE_STYLE = {
    Lifecycle.ACTIVE: "bold green",
    Lifecycle.UPDATED: "bold cyan",
    Lifecycle.CANCELLED: "magenta",
    Lifecycle.ALLCLEAR: "green",
    Lifecycle.EXPIRED: "dim",
    Lifecycle.ENDS: "",
    Lifecycle.REPORT: "yellow",
}


def state_cell(item: FeedItem, entry: OutboxEntry | None, now_s: float) -> Text:
    """The row's state: this console's unsent alert first (it is not on the network), else
    where the alert stands by verified messages."""
    if entry is not None:
        settled = settle(entry, now_s)
        if settled.state is OutboxState.WAITING and settled.sent_at_s is None:
            return Text("unsent", style="bold yellow")
        if settled.state is OutboxState.EXPIRED:
            return Text("exp unsent", style="bold red")
        if settled.state is OutboxState.DISCARDED:
            return Text("discarded", style="dim")
    life = item.lifecycle(now_s)
    return Text(life.value, style=LIFECYCLE_STYLE[life])
