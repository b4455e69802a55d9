"""One `relayd run` per state folder: an exclusive fcntl lock on `<state_dir>/relayd.lock`.

Two daemons on one state folder would share its database and fight over the same radio. The
second one refuses at once, naming the folder and the PID holding it. The kernel drops the
lock when the holder exits, however it exits (kill -9 included), so a stale lock file never
blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from relayd.errors import RelaydError

LOCK_NAME = "relayd.lock"


class StateFolderBusyError(RelaydError):
    """Another relayd holds the state folder."""


class StateLock:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise RelaydError(f"cannot lock the state folder {self.state_dir}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"PID {holder}" if holder else "another process"
            raise StateFolderBusyError(
                f"the state folder {self.state_dir.resolve()} is in use by another relayd ({who}); "
                "stop that one first, or give this relay its own [relay] state_dir"
            ) from None
        # Ours now: say who holds it, for the next one to name.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
