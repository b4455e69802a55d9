"""One writer thread for the state database: commits, and their fsyncs, off the event loop.

A commit at `synchronous=FULL` waits for the disk (an fsync: 1-10 ms on an SD card, more
in its tail). On the event loop that wait stalls the radio and the broker alike, and set the
relay's latency tail. Writes go instead, in order, to one thread that owns the writing
connection; sqlite3 releases the GIL while it works. Whoever must not go on before a write
is durable waits for that write's own completion (the MQTT acknowledgement waits through
relayd/daemon/ackgate.py), not the event loop.

Without a running event loop (tools, tests driving the relay synchronously) every write
is waited for, so the behaviour is that of plain synchronous calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class OneWriter:
    """Runs jobs one at a time, in the order given, on its own thread."""

    def __init__(self, name: str) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._last: concurrent.futures.Future[object] | None = None

    @staticmethod
    def loop() -> asyncio.AbstractEventLoop | None:
        """The running event loop of the calling thread, if any."""
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def submit(self, job: Callable[[], T]) -> concurrent.futures.Future[T]:
        with self._lock:
            future = self._pool.submit(job)
            self._last = future  # type: ignore[assignment]  # any job's future: waited on, never read
        return future

    def run(self, job: Callable[[], T]) -> T:
        """Run `job` after every earlier one and wait for its result (or exception)."""
        return self.submit(job).result()

    def flush(self) -> None:
        """Wait until every job submitted so far is done (reads see what was written)."""
        with self._lock:
            last = self._last
        if last is not None:
            concurrent.futures.wait([last])

    @staticmethod
    def call_in_loop(loop: asyncio.AbstractEventLoop | None, fn: Callable[[], None]) -> None:
        """Run `fn` in `loop` (from the writer thread), or now if there is no loop."""
        if loop is None:
            fn()
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(fn)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
