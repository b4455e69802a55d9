"""A real, small filesystem that tests can fill: a tmpfs of a few hundred KiB mounted on
a directory (needs root, or CAP_SYS_ADMIN; tests skip with the reason otherwise).

SQLite on it fails the way it does on a full SD card: `database or disk is full` from
the write that needs a page the filesystem cannot give.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

FILLER = ".filler"


class MountUnavailableError(RuntimeError):
    """This process may not mount a tmpfs (not root, or no mount binary)."""


@contextlib.contextmanager
def small_filesystem(path: Path, size_kib: int = 512) -> Iterator[Path]:
    """Mount a tmpfs of `size_kib` on `path` (created if missing) and unmount it after."""
    mount = shutil.which("mount")
    umount = shutil.which("umount")
    if mount is None or umount is None or os.geteuid() != 0:
        raise MountUnavailableError("mounting a small tmpfs needs root and mount(8)")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(  # noqa: S603 - fixed arguments, our own temporary path
        [mount, "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise MountUnavailableError(f"mount failed: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run([umount, "-l", str(path)], check=False)  # noqa: S603


def fill(path: Path) -> int:
    """Fill the filesystem holding `path` to the last byte; the bytes written."""
    written = 0
    chunk = b"\0" * 65536
    fd = os.open(path / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        size = len(chunk)
        while size:
            try:
                written += os.write(fd, chunk[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2  # down to the last byte the filesystem has
    finally:
        os.close(fd)
    return written


def free(path: Path) -> None:
    """Give the space back."""
    (path / FILLER).unlink(missing_ok=True)
