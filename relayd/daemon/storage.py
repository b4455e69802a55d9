"""Persistent state in one SQLite file (WAL): the queue, dedup and replay state, history,
and MQTT messages waiting for the broker.

A power cut, a broker outage or a `kill -9` loses no accepted alert, and a restart never
re-broadcasts: an alert's acceptance (dedup id, replay window, history and queue entry) is
one transaction, committed before the broker's delivery is acknowledged.
Every sqlite3 error becomes StorageError so the daemon can report it in status and go on.

Each write says which promise it makes (`Promise`), and only the writes that promise
survival of a power cut pay an fsync. In WAL mode a commit at `synchronous=NORMAL` is
appended to the WAL without an fsync: it survives a crash of the process, and reaches the
disk at the next fsync of the WAL (the next durable commit, or a checkpoint), in order.
docs/daemon.md, "Persistence and crashes", lists which write makes which promise.

Health is kept per kind of write: a failed write of one kind is an error until a write of
that same kind succeeds. A full disk often still takes a small write (SQLite reuses WAL
pages) while the larger acceptance fails; a delete must not clear that.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relayd.core.replay import WindowState
from relayd.daemon.ackgate import UnsafeAlerts
from relayd.errors import RelaydError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (alert_id BLOB PRIMARY KEY, seen_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS replay (key_id BLOB PRIMARY KEY, highest INTEGER NOT NULL, bitmap TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS queue (
    alert_id BLOB PRIMARY KEY,
    onair TEXT NOT NULL,
    severity_rank INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    release_at REAL NOT NULL,
    packet_id INTEGER
);
CREATE TABLE IF NOT EXISTS history (
    alert_id BLOB PRIMARY KEY,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    via TEXT NOT NULL,
    received_at REAL NOT NULL,
    expires_at INTEGER NOT NULL,
    onair TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT 'accepted'
);
CREATE INDEX IF NOT EXISTS history_received ON history (received_at);
CREATE TABLE IF NOT EXISTS active (alert_id BLOB PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS mqtt_pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL
);
"""


class StorageError(RelaydError):
    """The state database failed (full disk, read-only filesystem, corruption)."""


class Promise(enum.Enum):
    """What a committed write survives."""

    # Fsynced before the commit returns: survives a power cut. For what someone else
    # forgets once we say we have it (a broker's delivery, a sequence number once used).
    POWER_CUT = "FULL"
    # Survives a crash of relayd; a power cut may lose it (and everything after it up to
    # the next POWER_CUT commit). Only for writes whose loss costs a repeat that the mesh
    # or the subscribers drop as a duplicate, never an alert.
    CRASH = "NORMAL"


# Outcomes whose dequeue may be lost in a power cut (Promise.CRASH). The restored row is
# harmless: a transmitted frame is sent again with the same packet id (a first attempt's id
# is derived from the alert, a retry's was written ahead), which every handheld drops by
# (from, id); an expired one is dropped at restore; a cancel's own acceptance, committed
# right after with an fsync, makes the cancel's dequeue durable too. A suppressed, refused or
# unconfirmed alert restored would go on air again under our radio's id: those are fsynced.
CRASH_SAFE_OUTCOMES = frozenset({"transmitted", "expired", "cancelled"})


@dataclass(frozen=True, slots=True)
class QueuedRow:
    alert_id: bytes
    onair: str
    severity_rank: int
    issued_at_s: int
    expires_at_s: int
    release_at_s: float
    packet_id: int | None


@dataclass(frozen=True, slots=True)
class PendingPublish:
    row_id: int
    topic: str
    payload: bytes
    retain: bool


class Storage:
    def __init__(self, path: Path) -> None:
        self.path = path
        # Alerts accepted while their acceptance could not be stored (relayd/daemon/ackgate.py).
        self.unsafe = UnsafeAlerts()
        self._failures: dict[str, str] = {}
        self._sync = Promise.POWER_CUT
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL by default; each write chooses (see Promise).
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=2000")
            # Deleted rows are overwritten with zeros, not left in free pages: a seized relay's
            # database must not hold alert text past its retention.
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open state database {path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    @property
    def error(self) -> str | None:
        """The newest failure of a kind of write that has not succeeded since, or None."""
        return next(reversed(self._failures.values()), None)

    @contextmanager
    def transaction(
        self, kind: str = "write", promise: Promise = Promise.POWER_CUT
    ) -> Iterator[sqlite3.Connection]:
        """One write of `kind` (its health is tracked by kind), committed with `promise`."""
        try:
            if promise is not self._sync:
                # Allowed only outside a transaction; applies to the commits that follow.
                self._db.execute(f"PRAGMA synchronous={promise.value}")
                self._sync = promise
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            message = f"state database write failed: {exc}"
            self._failures.pop(kind, None)
            self._failures[kind] = message
            raise StorageError(message) from exc
        self._failures.pop(kind, None)

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        # sqlite3 rows are untyped; each caller converts its columns explicitly.
        try:
            return list(self._db.execute(sql, args))
        except sqlite3.Error as exc:
            raise StorageError(f"state database read failed: {exc}") from exc

    # -- meta -------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction("meta") as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def next_relay_seq(self) -> int:
        """Reserve the relay key's next sequence number (persisted before use)."""
        with self.transaction("sequence") as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'relay_seq'").fetchone()
            seq = (int(row[0]) if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('relay_seq', ?)", (str(seq),))
        return seq

    # -- acceptance -------------------------------------------------------------------

    def record_accepted(
        self,
        *,
        alert_id: bytes,
        key_id: bytes,
        window: WindowState | None,
        kind: str,
        severity: str,
        via: str,
        now_s: float,
        expires_at_s: int,
        onair: str,
        queue: QueuedRow | None,
        active: bool,
        newest_issued_s: int | None,
        publishes: list[tuple[str, bytes, bool]] | None = None,
    ) -> None:
        """Everything that accepting one alert changes, in one transaction, including the
        MQTT messages it causes (drained by the publisher, so a crash cannot lose them).
        `newest_issued_s` is None for alerts that may not move the clock floor.

        If this fails, a queued alert is held in `unsafe` until its outcome is known, so
        that its delivery is not acknowledged to the broker before then."""
        try:
            self._record_accepted(
                alert_id=alert_id,
                key_id=key_id,
                window=window,
                kind=kind,
                severity=severity,
                via=via,
                now_s=now_s,
                expires_at_s=expires_at_s,
                onair=onair,
                queue=queue,
                active=active,
                newest_issued_s=newest_issued_s,
                publishes=publishes,
            )
        except StorageError:
            if queue is not None:
                self.unsafe.hold(alert_id)
            raise

    def _record_accepted(
        self,
        *,
        alert_id: bytes,
        key_id: bytes,
        window: WindowState | None,
        kind: str,
        severity: str,
        via: str,
        now_s: float,
        expires_at_s: int,
        onair: str,
        queue: QueuedRow | None,
        active: bool,
        newest_issued_s: int | None,
        publishes: list[tuple[str, bytes, bool]] | None,
    ) -> None:
        with self.transaction("acceptance") as db:
            for topic, payload, retain in publishes or ():
                db.execute(
                    "INSERT INTO mqtt_pending (topic, payload, retain) VALUES (?, ?, ?)",
                    (topic, payload, int(retain)),
                )
            db.execute("INSERT OR REPLACE INTO seen (alert_id, seen_at) VALUES (?, ?)", (alert_id, now_s))
            if window is not None:
                db.execute(
                    "INSERT OR REPLACE INTO replay (key_id, highest, bitmap) VALUES (?, ?, ?)",
                    (key_id, window.highest, format(window.bitmap, "x")),
                )
            db.execute(
                "INSERT OR REPLACE INTO history"
                " (alert_id, kind, severity, via, received_at, expires_at, onair)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (alert_id, kind, severity, via, now_s, expires_at_s, onair),
            )
            if queue is not None:
                db.execute(
                    "INSERT OR REPLACE INTO queue VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        queue.alert_id,
                        queue.onair,
                        queue.severity_rank,
                        queue.issued_at_s,
                        queue.expires_at_s,
                        queue.release_at_s,
                        queue.packet_id,
                    ),
                )
            if active:
                db.execute("INSERT OR REPLACE INTO active VALUES (?, ?)", (alert_id, expires_at_s))
            if newest_issued_s is not None:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('newest_issued', ?) "
                    "ON CONFLICT(key) DO UPDATE SET"
                    " value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                    (str(newest_issued_s),),
                )

    def seen_ids(self, since_s: float) -> list[bytes]:
        return [bytes(r[0]) for r in self._query("SELECT alert_id FROM seen WHERE seen_at >= ?", (since_s,))]

    def replay_windows(self) -> dict[bytes, WindowState]:
        rows = self._query("SELECT key_id, highest, bitmap FROM replay")
        return {bytes(r[0]): WindowState(int(r[1]), int(str(r[2]), 16)) for r in rows}

    def newest_issued_s(self) -> float | None:
        value = self.get_meta("newest_issued")
        return float(value) if value else None

    def clamp_newest_issued(self, limit_s: float) -> None:
        """Lower the clock floor to `limit_s` if it is above (the clock was set)."""
        with self.transaction("meta") as db:
            db.execute(
                "UPDATE meta SET value = ? WHERE key = 'newest_issued' AND CAST(value AS INTEGER) > ?",
                (str(int(limit_s)), int(limit_s)),
            )

    def known_onairs(self) -> list[str]:
        """On-air texts of accepted broadcast alerts still in history, oldest first (their
        authors decide who may end them after a restart)."""
        rows = self._query("SELECT onair FROM history WHERE kind != 'report' ORDER BY received_at")
        return [str(r[0]) for r in rows]

    # -- queue ------------------------------------------------------------------------

    def queued(self) -> list[QueuedRow]:
        rows = self._query(
            "SELECT alert_id, onair, severity_rank, issued_at, expires_at, release_at, packet_id FROM queue"
        )
        return [
            QueuedRow(
                bytes(r[0]),
                str(r[1]),
                int(r[2]),
                int(r[3]),
                int(r[4]),
                float(r[5]),
                None if r[6] is None else int(r[6]),
            )
            for r in rows
        ]

    def record_requeue(self, row: QueuedRow) -> None:
        """Put an item back in the queue (the radio refused it after all)."""
        with self.transaction("requeue") as db:
            db.execute(
                "INSERT OR REPLACE INTO queue VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    row.alert_id,
                    row.onair,
                    row.severity_rank,
                    row.issued_at_s,
                    row.expires_at_s,
                    row.release_at_s,
                    None,
                ),
            )
            db.execute("UPDATE history SET outcome = 'accepted' WHERE alert_id = ?", (row.alert_id,))

    def mark_transmitting(self, alert_id: bytes, packet_id: int) -> None:
        """Write-ahead: the packet id chosen before the radio write. After a crash the frame
        is re-sent with this same id, so the mesh's (from, id) dedup drops it if it did go out.
        (A first attempt needs none: its id is derived from the alert, relayd/core/packetid.py.)"""
        with self.transaction("write_ahead") as db:
            db.execute("UPDATE queue SET packet_id = ? WHERE alert_id = ?", (packet_id, alert_id))

    def dequeue(self, alert_id: bytes, outcome: str) -> None:
        """The item left the queue: transmitted, suppressed, expired, cancelled, refused.

        Its outcome is known, so a delivery of it held unacknowledged may be acknowledged
        now, whether or not this write succeeds. Which outcomes need an fsync: CRASH_SAFE_OUTCOMES."""
        self.unsafe.settle(alert_id)
        promise = Promise.CRASH if outcome in CRASH_SAFE_OUTCOMES else Promise.POWER_CUT
        with self.transaction("dequeue", promise) as db:
            db.execute("DELETE FROM queue WHERE alert_id = ?", (alert_id,))
            db.execute("UPDATE history SET outcome = ? WHERE alert_id = ?", (outcome, alert_id))

    # -- active alerts ----------------------------------------------------------------

    def active_alerts(self) -> list[tuple[bytes, int]]:
        return [(bytes(r[0]), int(r[1])) for r in self._query("SELECT alert_id, expires_at FROM active")]

    def deactivate(self, alert_id: bytes) -> None:
        # Lost in a power cut, the next expiry sweep deactivates it again.
        with self.transaction("active", Promise.CRASH) as db:
            db.execute("DELETE FROM active WHERE alert_id = ?", (alert_id,))

    # -- MQTT store and forward ---------------------------------------------------------

    def add_pending(self, topic: str, payload: bytes, retain: bool) -> int:
        with self.transaction("pending_add") as db:
            cur = db.execute(
                "INSERT INTO mqtt_pending (topic, payload, retain) VALUES (?, ?, ?)",
                (topic, payload, int(retain)),
            )
            return int(cur.lastrowid or 0)

    def pending(self, limit: int = 500) -> list[PendingPublish]:
        rows = self._query(
            "SELECT id, topic, payload, retain FROM mqtt_pending ORDER BY id LIMIT ?", (limit,)
        )
        return [PendingPublish(int(r[0]), str(r[1]), bytes(r[2]), bool(r[3])) for r in rows]

    def remove_pending(self, row_id: int) -> None:
        """The broker acknowledged it. Lost in a power cut, it is published again after the
        restart: subscribers drop an alert they have by its id."""
        with self.transaction("pending_remove", Promise.CRASH) as db:
            db.execute("DELETE FROM mqtt_pending WHERE id = ?", (row_id,))

    # -- retention ----------------------------------------------------------------------

    def purge(self, now_s: float, retention_s: float, dedup_horizon_s: float) -> int:
        """Delete history older than the retention and dedup ids older than the horizon, then
        checkpoint the WAL into the database and truncate it: until then the purged text
        would still sit in the -wal file (in the pages written when it was inserted)."""
        with self.transaction("purge", Promise.CRASH) as db:
            n = db.execute("DELETE FROM history WHERE received_at < ?", (now_s - retention_s,)).rowcount
            db.execute("DELETE FROM seen WHERE seen_at < ?", (now_s - dedup_horizon_s,))
            db.execute("DELETE FROM active WHERE expires_at < ?", (now_s - 86400,))
        self.checkpoint()
        return int(n)

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and truncate the WAL to zero bytes."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"state database checkpoint failed: {exc}") from exc

    def history_count(self) -> int:
        return int(self._query("SELECT count(*) FROM history")[0][0])
