"""An alert's thread: the updates, cancels and all-clears that refer to it. Pure functions
over the model's feed and its reply index (`Model._replies`: alert id -> ids referring to it).

Like the relays (relayd/daemon/relay.py), a cancel or all-clear of X ends X and the updates
that refer to X; only verified replies count.
"""

from __future__ import annotations

from collections.abc import Mapping

from relayd.core.model import Kind
from tui.feeditems import FeedItem

Feed = Mapping[str, FeedItem]
Replies = Mapping[str, list[str]]


def thread_state(feed: Feed, replies: Replies, alert_id: str) -> tuple[bool, Kind | None]:
    """(updated, closed_by) of one alert from its own verified replies."""
    updated, closer = False, None
    for reply_id in replies.get(alert_id, ()):
        reply = feed.get(reply_id)
        if reply is None or not reply.ok:
            continue
        if reply.kind is Kind.UPDATE:
            updated = True
        elif reply.kind in (Kind.CANCEL, Kind.ALLCLEAR):
            closer = reply.kind
    return updated, closer


def refresh_thread(feed: Feed, replies: Replies, alert_id: str) -> list[str]:
    """Recompute an alert's state and that of its updates; returns the rows that changed."""
    changed: list[str] = []
    updated, closer = thread_state(feed, replies, alert_id)
    item = feed.get(alert_id)
    if item is not None:
        own = closer
        ref = item.alert.fields.ref
        if own is None and item.kind is Kind.UPDATE and ref is not None:
            own = thread_state(feed, replies, ref.hex())[1]
        if (item.updated, item.closed_by) != (updated, own):
            item.updated, item.closed_by = updated, own
            changed.append(alert_id)
    for reply_id in replies.get(alert_id, ()):
        reply = feed.get(reply_id)
        if reply is not None and reply.kind is Kind.UPDATE:
            r_updated, r_closer = thread_state(feed, replies, reply_id)
            r_closer = r_closer or closer
            if (reply.updated, reply.closed_by) != (r_updated, r_closer):
                reply.updated, reply.closed_by = r_updated, r_closer
                changed.append(reply_id)
    return changed


def chain(feed: Feed, alert_id: str) -> list[tuple[int, FeedItem]]:
    """The reference chain around an alert: its root first, then replies by depth-first order."""
    item = feed.get(alert_id)
    if item is None:
        return []
    root = item
    seen = {root.alert_id}
    while root.alert.fields.ref is not None:
        parent = feed.get(root.alert.fields.ref.hex())
        if parent is None or parent.alert_id in seen:
            break
        seen.add(parent.alert_id)
        root = parent
    children: dict[str, list[FeedItem]] = {}
    for i in feed.values():
        if i.alert.fields.ref is not None:
            children.setdefault(i.alert.fields.ref.hex(), []).append(i)
    out: list[tuple[int, FeedItem]] = []
    visited: set[str] = set()

    def walk(node: FeedItem, depth: int) -> None:
        if node.alert_id in visited:
            return
        visited.add(node.alert_id)
        out.append((depth, node))
        for child in children.get(node.alert_id, []):
            walk(child, depth + 1)

    walk(root, 0)
    return out


def thread_root(feed: Feed, alert_id: str) -> str:
    """The alert an update refers to, up the chain (as far as the feed knows): responders'
    answers to an update count for the incident, on its first alert."""
    seen = {alert_id}
    item = feed.get(alert_id)
    while item is not None and item.kind is Kind.UPDATE and item.alert.fields.ref is not None:
        parent = item.alert.fields.ref.hex()
        if parent in seen:
            break
        seen.add(parent)
        alert_id, item = parent, feed.get(parent)
    return alert_id
