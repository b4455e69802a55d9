"""The local outbox: alerts this console signed, kept on disk until the broker acknowledges them.

An alert signed while the broker is unreachable must not be lost, and must not be called
sent. Each signed alert is written here first (one JSON file per alert, replaced atomically),
published from here with QoS 1, and marked sent only when the broker's PUBACK arrives. An
alert that expires while it waits is never published: it is marked expired unsent.

`OutboxEntry` and the functions on it are pure; `Outbox` is the thin layer that owns the
entries and mirrors them to a folder (or keeps them in memory when there is no folder).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from relayd.core.codec import MalformedFrame, decode
from relayd.core.jsonform import MalformedMessage, onair_from_message
from relayd.core.model import Kind, SignedAlert
from relayd.core.status import EventKind

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Settled entries (sent, expired, discarded) stay listed this long after the alert expires,
# so the operator can still see what happened; then their files are removed on start-up.
KEEP_SETTLED_S = 24 * 3600


class OutboxState(enum.Enum):
    WAITING = "waiting"  # signed and saved; the broker has not acknowledged it
    SENT = "sent"  # the broker acknowledged the publish (QoS 1 PUBACK)
    EXPIRED = "expired"  # expired before the broker acknowledged it: never published
    DISCARDED = "discarded"  # the operator discarded it before it was sent


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    alert_id: str
    payload: bytes  # the exact MQTT message published to <root>/outbox
    kind: Kind
    signed_at_s: float
    expires_at_s: int
    state: OutboxState = OutboxState.WAITING
    attempts: int = 0
    last_error: str = ""
    sent_at_s: float | None = None

    def due(self, now_s: float) -> bool:
        """Should be published now: still waiting and not expired."""
        return self.state is OutboxState.WAITING and now_s < self.expires_at_s


def new_entry(alert: SignedAlert, payload: bytes, now_s: float) -> OutboxEntry:
    return OutboxEntry(alert.id_hex, payload, alert.kind, now_s, alert.fields.expires_at_s)


def settle(entry: OutboxEntry, now_s: float) -> OutboxEntry:
    """A waiting entry whose alert has expired becomes expired unsent; others are unchanged.

    One the broker acknowledged before (then resent) was sent: it stays sent.
    """
    if entry.state is OutboxState.WAITING and now_s >= entry.expires_at_s:
        return replace(entry, state=OutboxState.SENT if entry.sent_at_s is not None else OutboxState.EXPIRED)
    return entry


def acknowledged(entry: OutboxEntry, now_s: float) -> OutboxEntry:
    return replace(entry, state=OutboxState.SENT, attempts=entry.attempts + 1, last_error="", sent_at_s=now_s)


def failed(entry: OutboxEntry, error: str) -> OutboxEntry:
    return replace(entry, attempts=entry.attempts + 1, last_error=error)


def alert_of(entry: OutboxEntry) -> SignedAlert:
    """The signed alert inside an entry. Raises MalformedMessage or MalformedFrame."""
    return decode(onair_from_message(entry.payload)).to_signed_alert()


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the console can say about one of its alerts, with the evidence it has."""

    label: str
    style: str
    sent: bool  # the broker acknowledged it


def delivery(entry: OutboxEntry | None, relays: dict[str, set[str]], now_s: float) -> Delivery:
    """The truthful state of a composed alert: from the outbox entry and the relays' events.

    `relays` is the feed item's relay -> events map. "taken" means a relay's radio took the
    frame (peers stand down); "on air" only once a relay's firmware confirmed it.
    """
    if entry is not None:
        entry = settle(entry, now_s)
        if entry.state is OutboxState.WAITING:
            if entry.sent_at_s is not None:
                return Delivery("resend waiting for broker", "yellow", sent=True)
            return Delivery("waiting for broker", "bold yellow", sent=False)
        if entry.state is OutboxState.EXPIRED:
            return Delivery("expired unsent", "bold red", sent=False)
        if entry.state is OutboxState.DISCARDED:
            return Delivery("discarded unsent", "dim", sent=False)
    on_air = sorted(r for r, ev in relays.items() if EventKind.TRANSMITTED.value in ev)
    if on_air:
        return Delivery(f"on air by {', '.join(on_air)}", "bold green", sent=True)
    taken = sorted(r for r, ev in relays.items() if EventKind.TAKEN.value in ev)
    if taken:
        return Delivery(f"taken by {', '.join(taken)}", "green", sent=True)
    return Delivery("sent to relays", "green", sent=True)


def to_json(entry: OutboxEntry) -> bytes:
    doc = {
        "v": FORMAT_VERSION,
        "id": entry.alert_id,
        "kind": entry.kind.value,
        "payload": entry.payload.decode("utf-8"),
        "signed_at": entry.signed_at_s,
        "expires_at": entry.expires_at_s,
        "state": entry.state.value,
        "attempts": entry.attempts,
        "error": entry.last_error,
        "sent_at": entry.sent_at_s,
    }
    return json.dumps(doc, ensure_ascii=False, indent=1).encode()


class OutboxFileError(ValueError):
    """An outbox file that cannot be read back (kept aside, never published)."""


def from_json(data: bytes) -> OutboxEntry:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise OutboxFileError("unreadable outbox entry: not JSON") from None
    if not isinstance(doc, dict) or doc.get("v") != FORMAT_VERSION:
        raise OutboxFileError("not an outbox entry of a known version")
    try:
        entry = OutboxEntry(
            alert_id=str(doc["id"]),
            payload=str(doc["payload"]).encode("utf-8"),
            kind=Kind(doc["kind"]),
            signed_at_s=float(doc["signed_at"]),
            expires_at_s=int(doc["expires_at"]),
            state=OutboxState(doc["state"]),
            attempts=int(doc["attempts"]),
            last_error=str(doc["error"]),
            sent_at_s=None if doc["sent_at"] is None else float(doc["sent_at"]),
        )
        alert = alert_of(entry)
    except (ValueError, KeyError, TypeError, RecursionError, MalformedMessage, MalformedFrame) as exc:
        raise OutboxFileError(f"unreadable outbox entry: {exc}") from None
    if alert.id_hex != entry.alert_id:
        raise OutboxFileError("the entry's id does not match the signed alert inside it")
    return entry


class Outbox:
    """Owns the outbox entries, newest last; mirrors each change to `directory` if given.

    A write that fails raises OSError to the caller (the alert is then still held in memory
    and still published, but the operator is told it would not survive a restart).
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._entries: dict[str, OutboxEntry] = {}
        self.unreadable: list[str] = []  # file names kept aside on load, with the reason

    def __iter__(self) -> Iterator[OutboxEntry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, alert_id: str) -> OutboxEntry | None:
        return self._entries.get(alert_id)

    def waiting(self) -> int:
        return sum(1 for e in self._entries.values() if e.state is OutboxState.WAITING)

    def load(self, now_s: float) -> list[OutboxEntry]:
        """Read the folder (on start-up). Drops long-settled entries; keeps bad files aside."""
        if self.directory is None or not self.directory.is_dir():
            return []
        loaded: list[OutboxEntry] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                entry = from_json(path.read_bytes())
            except (OSError, OutboxFileError) as exc:
                self.unreadable.append(f"{path.name}: {exc}")
                with contextlib.suppress(OSError):
                    path.rename(path.with_suffix(".unreadable"))
                continue
            if entry.state is not OutboxState.WAITING and now_s > entry.expires_at_s + KEEP_SETTLED_S:
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            loaded.append(entry)
        loaded.sort(key=lambda e: e.signed_at_s)
        for entry in loaded:
            self._entries[entry.alert_id] = entry
        return loaded

    def put(self, entry: OutboxEntry) -> None:
        """Add or replace an entry: in memory first, then on disk (OSError if that fails)."""
        self._entries[entry.alert_id] = entry
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"{entry.alert_id}.json"
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(to_json(entry))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    def settle_all(self, now_s: float) -> list[OutboxEntry]:
        """Mark waiting entries whose alert expired; returns those that changed."""
        changed = []
        for entry in list(self._entries.values()):
            settled = settle(entry, now_s)
            if settled is not entry:
                changed.append(settled)
                try:
                    self.put(settled)
                except OSError:
                    log.warning("could not save outbox entry %s", entry.alert_id, exc_info=True)
        return changed


class StateInUse(RuntimeError):  # noqa: N818 - reads as the condition
    """Another console holds this state folder."""


def lock_state(directory: Path) -> BinaryIO:
    """Hold `directory` for this console until the returned file is closed (or the process ends).

    Two consoles on one outbox would both publish what waits in it.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle = (directory / "console.lock").open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StateInUse(
            f"another relayd-tui is using {directory}; stop it, or give this one its own --state DIR"
        ) from None
    return handle
