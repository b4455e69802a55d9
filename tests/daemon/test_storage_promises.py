"""What the state database promises when the disk fails, and which writes pay an fsync.

The full disk is real: a small tmpfs filled to the last byte (relayd.testing.fulldisk),
so SQLite fails where and how it would on a full SD card.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relayd.core.outbound import QueuedAlert
from relayd.core.packetid import first_packet_id
from relayd.daemon.ackgate import UnsafeAlerts
from relayd.daemon.storage import CRASH_SAFE_OUTCOMES, Storage, StorageError
from relayd.testing.fulldisk import MountUnavailableError, fill, free, small_filesystem

# Big enough that an acceptance needs fresh pages on a full disk, as a long alert does.
ONAIR = "A1 " + "x" * 3000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    try:
        with small_filesystem(tmp_path / "state", size_kib=384) as path:
            yield path
    except MountUnavailableError as exc:
        pytest.skip(str(exc))


def _accept(storage: Storage, alert_id: bytes, onair: str = ONAIR) -> None:
    row = QueuedAlert(alert_id, onair, 0, 1000, 4000, 0.0, None)
    storage.record_accepted(
        alert_id=alert_id,
        key_id=b"k" * 8,
        window=None,
        kind="alert",
        severity="urgent",
        via="mqtt",
        now_s=1000.0,
        expires_at_s=4000,
        onair=onair,
        queue=row,
        active=True,
        newest_issued_s=None,
        publishes=[("relayd/active/x", onair.encode(), True)],
    )


def _fill_until_acceptance_fails(storage: Storage, disk: Path) -> int:
    """Fill the disk, then accept alerts until SQLite has used up its spare pages too."""
    fill(disk)
    for i in range(1000):
        try:
            _accept(storage, bytes([i % 256, i // 256]) * 8)
        except StorageError:
            return i
    raise AssertionError("a full disk kept taking acceptances")


def _error(storage: Storage) -> str | None:
    # A call, not the property, so each read is a fresh question (for mypy too).
    return storage.error


def test_a_failed_acceptance_stays_an_error_until_an_acceptance_succeeds(small_disk: Path) -> None:
    storage = Storage(small_disk / "state.db")
    _accept(storage, b"a" * 16)
    assert _error(storage) is None
    _fill_until_acceptance_fails(storage, small_disk)
    assert _error(storage) is not None
    assert "full" in str(_error(storage))
    # Small writes of other kinds may still find room (deletes reuse WAL pages); whether
    # or not they do, the disk is still full for acceptances.
    dequeue_failed = False
    for _ in range(3):
        try:
            storage.dequeue(b"a" * 16, "transmitted")
        except StorageError:
            dequeue_failed = True
        assert _error(storage) is not None
    free(small_disk)
    assert _error(storage) is not None  # nothing has shown yet that it works again
    _accept(storage, b"b" * 16)
    # Each kind that failed must have worked again.
    assert (_error(storage) is None) == (not dequeue_failed)
    storage.dequeue(b"b" * 16, "transmitted")
    assert _error(storage) is None
    storage.close()


def test_an_alert_not_stored_is_held_unacknowledged_until_its_outcome(small_disk: Path) -> None:
    storage = Storage(small_disk / "state.db")
    n = _fill_until_acceptance_fails(storage, small_disk)
    failed = bytes([n % 256, n // 256]) * 8
    assert failed in storage.unsafe
    # The outcome is known even though the disk cannot record it.
    with contextlib.suppress(StorageError):
        storage.dequeue(failed, "suppressed")
    assert failed not in storage.unsafe
    free(small_disk)
    storage.close()


def test_an_alert_that_was_stored_is_not_held(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "state.db")
    _accept(storage, b"c" * 16)
    assert len(storage.unsafe) == 0
    storage.close()


def _synchronous(storage: Storage) -> int:
    return int(storage._db.execute("PRAGMA synchronous").fetchone()[0])


FULL, NORMAL = 2, 1


@pytest.mark.parametrize("outcome", ["transmitted", "expired", "cancelled", "suppressed", "refused_by_radio"])
def test_only_the_acceptance_and_outcomes_that_could_double_an_alert_pay_an_fsync(
    tmp_path: Path, outcome: str
) -> None:
    storage = Storage(tmp_path / "state.db")
    _accept(storage, b"d" * 16)
    assert _synchronous(storage) == FULL  # the broker forgets it once we ack
    storage.dequeue(b"d" * 16, outcome)
    assert _synchronous(storage) == (NORMAL if outcome in CRASH_SAFE_OUTCOMES else FULL)
    storage.add_pending("relayd/alerts", b"{}", False)
    assert _synchronous(storage) == FULL
    storage.remove_pending(storage.pending()[0].row_id)
    assert _synchronous(storage) == NORMAL
    storage.close()


def test_a_commit_without_fsync_is_still_there_after_the_process_is_gone(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "state.db")
    _accept(storage, b"e" * 16)
    storage.dequeue(b"e" * 16, "transmitted")
    # No close: the next process opens the file as a crash would leave it.
    again = Storage(tmp_path / "state.db")
    assert again.queued() == []
    again.close()
    storage.close()


def test_the_first_packet_id_is_the_alert_s_own_and_never_zero() -> None:
    assert first_packet_id(b"f" * 16) == first_packet_id(b"f" * 16)
    assert first_packet_id(b"f" * 16) != first_packet_id(b"g" * 16)
    assert all(0 < first_packet_id(bytes([i]) * 16) < 2**32 for i in range(256))


@given(st.lists(st.tuples(st.sampled_from(["hold", "settle", "wait"]), st.integers(0, 3)), max_size=40))
def test_every_wait_ends_exactly_when_its_alert_is_settled(ops: list[tuple[str, int]]) -> None:
    async def go() -> None:
        gate = UnsafeAlerts()
        held: set[int] = set()
        # Each wait, and whether its alert has been settled since it began.
        waits: list[tuple[int, asyncio.Future[None]]] = []
        settled: set[int] = set()  # indexes into waits
        for op, n in ops:
            alert_id = bytes([n]) * 16
            if op == "hold":
                gate.hold(alert_id)
                held.add(n)
            elif op == "settle":
                gate.settle(alert_id)
                held.discard(n)
                settled |= {i for i, (m, _) in enumerate(waits) if m == n}
            else:
                future = gate.after(alert_id)
                assert (future is not None) == (n in held)  # acknowledge now iff not held
                if future is not None:
                    waits.append((n, future))
            assert [f.done() for _, f in waits] == [i in settled for i in range(len(waits))]
        assert len(gate) == len(held)

    asyncio.run(go())


async def test_in_the_event_loop_writes_commit_in_order_off_the_loop_and_say_when(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "state.db")
    commits: list[int] = []
    storage.on_commit = lambda: commits.append(1)
    for i in range(20):
        _accept(storage, bytes([i]) * 16)
        storage.dequeue(bytes([i]) * 16, "transmitted")
    # Each acceptance is held unacknowledged until its commit has been reported back.
    assert len(commits) == 0
    assert storage.queued() == []  # a read waits for the writes queued before it
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(commits) == 20
    assert len(storage.unsafe) == 0
    storage.close()


async def test_messages_of_an_acceptance_that_cannot_be_stored_go_out_from_memory(small_disk: Path) -> None:
    storage = Storage(small_disk / "state.db")
    lost: list[tuple[str, bytes, bool]] = []
    errors: list[str] = []
    storage.on_lost_publishes = lost.extend
    storage.on_error = errors.append
    fill(small_disk)
    for i in range(200):
        _accept(storage, bytes([i]) * 16)
        storage.flush()
        for _ in range(3):
            await asyncio.sleep(0)
        if lost:
            break
    assert lost == [("relayd/active/x", ONAIR.encode(), True)]
    assert errors
    assert "full" in errors[0]
    assert bytes([i]) * 16 in storage.unsafe  # queued: waits for its outcome
    free(small_disk)
    storage.close()


async def test_a_published_row_is_not_handed_out_again_while_its_removal_is_queued(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "state.db")
    storage.add_pending("relayd/alerts", b"{}", False)
    storage.flush()
    [row] = storage.pending()
    storage.remove_pending(row.row_id)  # queued on the writer thread, not yet committed
    assert storage.pending() == []  # the publisher loop reads again at once
    storage.flush()
    for _ in range(3):
        await asyncio.sleep(0)
    assert storage.pending() == []
    storage.close()
