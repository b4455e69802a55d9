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

Writes run, in order, on one writer thread (relayd/daemon/writer.py), so no fsync stalls
the event loop; reads first wait for the writes before them, except `pending()`, which the
publisher reads again whenever a commit queued something (`on_commit`).

Health is kept per kind of write: a failed write of one kind is an error until a write of
that same kind succeeds. A full disk often still takes a small write (SQLite reuses WAL
pages) while the larger acceptance fails; a delete must not clear that.
"""

from __future__ import annotations

import enum
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from relayd.core.outbound import QueuedAlert
from relayd.core.replay import WindowState
from relayd.daemon.ackgate import UnsafeAlerts
from relayd.daemon.writer import OneWriter
from relayd.errors import RelaydError

T = TypeVar("T")
Publishes = list[tuple[str, bytes, bool]]  # (topic, payload, retain)

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
class PendingPublish:
    row_id: int
    topic: str
    payload: bytes
    retain: bool


class Storage:
    def __init__(self, path: Path) -> None:
        self.path = path
        # Alerts accepted but not yet stored, or whose storing failed (relayd/daemon/ackgate.py).
        self.unsafe = UnsafeAlerts()
        # Called in the event loop: after a commit that queued MQTT messages (publish them);
        # with the MQTT messages of an acceptance that could not be stored (publish them from
        # memory); after a write that failed without anyone waiting for it.
        self.on_commit: Callable[[], None] | None = None
        self.on_lost_publishes: Callable[[Publishes], None] | None = None
        self.on_error: Callable[[str], None] | None = None
        # Published rows whose removal is queued: not handed to the publisher again meanwhile.
        self._removing: set[int] = set()
        self._failures: dict[str, str] = {}
        self._failures_lock = threading.Lock()
        self._sync = Promise.POWER_CUT
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The writer's connection: used by the writer thread only, once set up here.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
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
            # Reads, on the caller's thread (WAL: readers never wait for the writer).
            self._read = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._read.execute("PRAGMA busy_timeout=2000")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open state database {path}: {exc}") from exc
        self._writer = OneWriter("relayd-storage")

    def close(self) -> None:
        """Finish every queued write, then close."""
        self._writer.close()
        self._read.close()
        self._db.close()

    def flush(self) -> None:
        """Wait until every write queued so far has committed (or failed)."""
        self._writer.flush()

    @property
    def error(self) -> str | None:
        """The newest failure of a kind of write that has not succeeded since, or None."""
        with self._failures_lock:
            return next(reversed(self._failures.values()), None)

    def _health(self, kind: str, message: str | None) -> None:
        with self._failures_lock:
            self._failures.pop(kind, None)
            if message is not None:
                self._failures[kind] = message

    @contextmanager
    def transaction(
        self, kind: str = "write", promise: Promise = Promise.POWER_CUT
    ) -> Iterator[sqlite3.Connection]:
        """One write of `kind` (its health is tracked by kind), committed with `promise`.
        On the writer thread only (see `_write`)."""
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
            self._health(kind, message)
            raise StorageError(message) from exc
        self._health(kind, None)

    def _write(
        self,
        kind: str,
        work: Callable[[sqlite3.Connection], T],
        promise: Promise = Promise.POWER_CUT,
        *,
        wait: bool = False,
        done: Callable[[bool], None] | None = None,
    ) -> T | None:
        """Queue one write for the writer thread. With `wait` (or outside an event loop),
        return its result or raise StorageError, as a plain call would. Otherwise return at
        once: `done(ok)` runs in the event loop afterwards, and a failure is reported to
        `on_error` (and in `error`)."""
        loop = None if wait else OneWriter.loop()

        def job() -> T | None:
            try:
                with self.transaction(kind, promise) as db:
                    result = work(db)
            except StorageError as exc:
                if loop is None:
                    raise
                message = str(exc)
                OneWriter.call_in_loop(loop, lambda: self._after(done, False, message))
                return None
            if loop is not None:
                OneWriter.call_in_loop(loop, lambda: self._after(done, True, None))
            return result

        if loop is None:
            try:
                result = self._writer.run(job)
            except StorageError:
                if done is not None:
                    done(False)
                raise
            if done is not None:
                done(True)
            return result
        self._writer.submit(job)
        return None

    def _after(self, done: Callable[[bool], None] | None, ok: bool, error: str | None) -> None:
        if done is not None:
            done(ok)
        if error is not None and self.on_error is not None:
            self.on_error(error)

    def _committed_publishes(self, ok: bool) -> None:
        if ok and self.on_commit is not None:
            self.on_commit()

    def _query(self, sql: str, args: tuple[object, ...] = (), *, flush: bool = True) -> list[tuple[Any, ...]]:
        # sqlite3 rows are untyped; each caller converts its columns explicitly.
        if flush:
            self._writer.flush()
        try:
            return list(self._read.execute(sql, args))
        except sqlite3.Error as exc:
            raise StorageError(f"state database read failed: {exc}") from exc

    # -- meta -------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        # Rare, and read back by other processes (relayd doctor): waited for.
        self._write(
            "meta",
            lambda db: db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)),
            wait=True,
        )

    def next_relay_seq(self) -> int:
        """Reserve the relay key's next sequence number (persisted before use)."""

        def work(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT value FROM meta WHERE key = 'relay_seq'").fetchone()
            seq = (int(row[0]) if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('relay_seq', ?)", (str(seq),))
            return seq

        seq = self._write("sequence", work, wait=True)
        assert seq is not None  # noqa: S101 - a waited write returns or raises
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
        queue: QueuedAlert | None,
        active: bool,
        newest_issued_s: int | None,
        publishes: Publishes | None = None,
    ) -> None:
        """Everything that accepting one alert changes, in one transaction, including the
        MQTT messages it causes (drained by the publisher, so a crash cannot lose them).
        `newest_issued_s` is None for alerts that may not move the clock floor.

        The alert is in `unsafe` (its broker delivery not to be acknowledged) until this
        commits; if it fails, a queued alert stays there until its outcome is known, and the
        MQTT messages go to `on_lost_publishes`."""
        self.unsafe.hold(alert_id)

        def work(db: sqlite3.Connection) -> None:
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
                db.execute("INSERT OR REPLACE INTO queue VALUES (?, ?, ?, ?, ?, ?, ?)", _queue_values(queue))
            if active:
                db.execute("INSERT OR REPLACE INTO active VALUES (?, ?)", (alert_id, expires_at_s))
            if newest_issued_s is not None:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('newest_issued', ?) "
                    "ON CONFLICT(key) DO UPDATE SET"
                    " value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                    (str(newest_issued_s),),
                )

        def done(ok: bool) -> None:
            if ok or queue is None:
                # Stored, or nothing of it waits for an outcome here.
                self.unsafe.settle(alert_id)
            if ok:
                self._committed_publishes(bool(publishes))
            elif publishes and self.on_lost_publishes is not None:
                self.on_lost_publishes(list(publishes))

        self._write("acceptance", work, done=done)

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
        self._write(
            "meta",
            lambda db: db.execute(
                "UPDATE meta SET value = ? WHERE key = 'newest_issued' AND CAST(value AS INTEGER) > ?",
                (str(int(limit_s)), int(limit_s)),
            ),
            wait=True,
        )

    def known_onairs(self) -> list[str]:
        """On-air texts of accepted broadcast alerts still in history, oldest first (their
        authors decide who may end them after a restart)."""
        rows = self._query("SELECT onair FROM history WHERE kind != 'report' ORDER BY received_at")
        return [str(r[0]) for r in rows]

    # -- queue ------------------------------------------------------------------------

    def queued(self) -> list[QueuedAlert]:
        rows = self._query(
            "SELECT alert_id, onair, severity_rank, issued_at, expires_at, release_at, packet_id FROM queue"
        )
        return [
            QueuedAlert(
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

    def record_requeue(self, row: QueuedAlert) -> None:
        """Put an item back in the queue (the radio refused it after all)."""

        def work(db: sqlite3.Connection) -> None:
            values = (*_queue_values(row)[:-1], None)
            db.execute("INSERT OR REPLACE INTO queue VALUES (?, ?, ?, ?, ?, ?, ?)", values)
            db.execute("UPDATE history SET outcome = 'accepted' WHERE alert_id = ?", (row.alert_id,))

        self._write("requeue", work)

    def mark_transmitting(self, alert_id: bytes, packet_id: int) -> None:
        """Write-ahead: the packet id chosen before the radio write. After a crash the frame
        is re-sent with this same id, so the mesh's (from, id) dedup drops it if it did go out.
        (A first attempt needs none: its id is derived from the alert, relayd/core/packetid.py.)"""
        self._write(
            "write_ahead",
            lambda db: db.execute("UPDATE queue SET packet_id = ? WHERE alert_id = ?", (packet_id, alert_id)),
        )

    def dequeue(self, alert_id: bytes, outcome: str) -> None:
        """The item left the queue: transmitted, suppressed, expired, cancelled, refused.

        Its outcome is known, so a delivery of it held unacknowledged may be acknowledged
        now, whether or not this write succeeds. Which outcomes need an fsync: CRASH_SAFE_OUTCOMES."""
        self.unsafe.settle(alert_id)
        promise = Promise.CRASH if outcome in CRASH_SAFE_OUTCOMES else Promise.POWER_CUT

        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM queue WHERE alert_id = ?", (alert_id,))
            db.execute("UPDATE history SET outcome = ? WHERE alert_id = ?", (outcome, alert_id))

        self._write("dequeue", work, promise)

    # -- active alerts ----------------------------------------------------------------

    def active_alerts(self) -> list[tuple[bytes, int]]:
        return [(bytes(r[0]), int(r[1])) for r in self._query("SELECT alert_id, expires_at FROM active")]

    def deactivate(self, alert_id: bytes) -> None:
        # Lost in a power cut, the next expiry sweep deactivates it again.
        self._write(
            "active",
            lambda db: db.execute("DELETE FROM active WHERE alert_id = ?", (alert_id,)),
            Promise.CRASH,
        )

    # -- MQTT store and forward ---------------------------------------------------------

    def add_pending(self, topic: str, payload: bytes, retain: bool) -> None:
        """Queue one MQTT message for the publisher; if it cannot be stored it goes to
        `on_lost_publishes` (published from memory)."""

        def done(ok: bool) -> None:
            if ok:
                self._committed_publishes(True)
            elif self.on_lost_publishes is not None:
                self.on_lost_publishes([(topic, payload, retain)])

        self._write(
            "pending_add",
            lambda db: db.execute(
                "INSERT INTO mqtt_pending (topic, payload, retain) VALUES (?, ?, ?)",
                (topic, payload, int(retain)),
            ),
            done=done,
        )

    def pending(self, limit: int = 500) -> list[PendingPublish]:
        """What waits for the broker, as committed so far (no wait for queued writes: the
        publisher is told when more has committed)."""
        rows = self._query(
            "SELECT id, topic, payload, retain FROM mqtt_pending ORDER BY id LIMIT ?",
            (limit + len(self._removing),),
            flush=False,
        )
        out = [PendingPublish(int(r[0]), str(r[1]), bytes(r[2]), bool(r[3])) for r in rows]
        return [p for p in out if p.row_id not in self._removing][:limit]

    def remove_pending(self, row_id: int) -> None:
        """The broker acknowledged it. Lost in a power cut, it is published again after the
        restart: subscribers drop an alert they have by its id."""
        self._removing.add(row_id)
        self._write(
            "pending_remove",
            lambda db: db.execute("DELETE FROM mqtt_pending WHERE id = ?", (row_id,)),
            Promise.CRASH,
            done=lambda _ok: self._removing.discard(row_id),
        )

    # -- retention ----------------------------------------------------------------------

    def purge(self, now_s: float, retention_s: float, dedup_horizon_s: float) -> None:
        """Delete history older than the retention and dedup ids older than the horizon, then
        checkpoint the WAL into the database and truncate it: until then the purged text
        would still sit in the -wal file (in the pages written when it was inserted)."""

        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM history WHERE received_at < ?", (now_s - retention_s,))
            db.execute("DELETE FROM seen WHERE seen_at < ?", (now_s - dedup_horizon_s,))
            db.execute("DELETE FROM active WHERE expires_at < ?", (now_s - 86400,))

        self._write("purge", work, Promise.CRASH)
        self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and truncate it to zero bytes (after every
        write queued before)."""

        def job() -> None:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"state database checkpoint failed: {exc}") from exc

        if OneWriter.loop() is None:
            self._writer.run(job)
        else:
            # Nobody waits for it; a failure shows at the next purge.
            self._writer.submit(job)

    def history_count(self) -> int:
        return int(self._query("SELECT count(*) FROM history")[0][0])


def _queue_values(row: QueuedAlert) -> tuple[object, ...]:
    return (
        row.alert_id,
        row.onair,
        row.severity_rank,
        row.issued_at_s,
        row.expires_at_s,
        row.release_at_s,
        row.packet_id,
    )
