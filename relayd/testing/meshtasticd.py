"""Run the real Meshtastic firmware (meshtasticd, SimRadio) on loopback for tests and the simulator.

Each node is one `meshtasticd -s` process with its own state folder and a free loopback API
port, always with ``MESHTASTICD_BIND_ADDR=127.0.0.1`` (without it the API listens on every
interface). Nodes are stopped by PID: SIGTERM, then SIGKILL after a deadline.

The binary is found at ``$RELAYD_MESHTASTICD``, else ``<repo>/../shared/meshtasticd/meshtasticd``
(see that folder's README for how it was built and how SimRadio nodes hear each other).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from relayd.testing.mosquitto import free_port

ENV_BINARY = "RELAYD_MESHTASTICD"
FIRMWARE_VERSION = "2.8.0"
LOOPBACK = "127.0.0.1"
_REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = _REPO_ROOT.parent / "shared" / "meshtasticd" / "meshtasticd"
HOW_TO_GET = (
    "meshtasticd (the Meshtastic firmware built for Linux, PlatformIO env `native`, 2.8.0) is needed "
    f"for the real-firmware tests: put it at {DEFAULT_BINARY} or point ${ENV_BINARY} at it "
    "(build it from meshtastic/firmware with `pio run -e native`, or install the meshtasticd "
    "Debian package from the Meshtastic OBS repository)"
)
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
_TCP_LISTEN = "0A"  # /proc/net/tcp state code of a listening socket


class MeshtasticdUnavailable(RuntimeError):  # noqa: N818 - names the condition a test skips on
    """The meshtasticd binary is not there (or not executable)."""


def meshtasticd_binary() -> Path:
    """The meshtasticd wrapper to run, or MeshtasticdUnavailable saying how to get one."""
    configured = os.environ.get(ENV_BINARY)
    candidate = Path(configured) if configured else DEFAULT_BINARY
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(str(candidate)) if configured else None
    if found:
        return Path(found)
    where = f"${ENV_BINARY}={configured}" if configured else str(candidate)
    raise MeshtasticdUnavailable(f"no meshtasticd at {where}. {HOW_TO_GET}")


def under_ci() -> bool:
    """CI must run the real-firmware tests: there an absent binary is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _listening(port: int) -> bool:
    """Is something listening on loopback `port`? Read from /proc so that the check does not
    open a connection (the firmware serves one client at a time and would log a client)."""
    want = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            next(f, None)
            for line in f:
                parts = line.split()
                if len(parts) > 3 and parts[1].endswith(want) and parts[3] == _TCP_LISTEN:
                    return True
    return False


@dataclass
class MeshtasticdNode:
    """One meshtasticd process (SimRadio) on 127.0.0.1:`port` with state in `state_dir`.

    ``with MeshtasticdNode(state_dir) as node: ... node.port ...``

    The node number is the firmware's own choice (random for a fresh state folder, stable across
    restarts of the same one): read it from `my_info` in the handshake.
    """

    state_dir: Path
    port: int = field(default_factory=free_port)
    hw_id: int = 0  # `-h`: seeds the node's MAC; 0 = derived from the port
    binary: Path = field(default_factory=meshtasticd_binary)
    # Outside the state folder: the firmware lists that folder's files in its handshake.
    log_path: Path | None = None  # default: <state_dir>.log
    _proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_file(self) -> Path:
        return self.log_path or self.state_dir.with_name(self.state_dir.name + ".log")

    def argv(self) -> list[str]:
        hw = self.hw_id or (self.port % 60000 + 16)
        return [str(self.binary), "-s", "-d", str(self.state_dir), "-p", str(self.port), "-h", str(hw)]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        if self.running:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["MESHTASTICD_BIND_ADDR"] = LOOPBACK
        self._log = self.log_file.open("ab")
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own state folder
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.state_dir,
            start_new_session=True,  # a Ctrl-C in the terminal goes to us, we stop it by PID
        )
        deadline = time.monotonic() + timeout_s
        while not _listening(self.port):
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise RuntimeError(f"meshtasticd exited with status {code} at start: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"meshtasticd API not listening on port {self.port} after {timeout_s} s")
            time.sleep(0.02)

    def wait_listening(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait for the API port to come back (after a reboot the process restarts in place)."""
        deadline = time.monotonic() + timeout_s
        while not _listening(self.port):
            if not self.running:
                raise RuntimeError(f"meshtasticd exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"meshtasticd API not back on port {self.port} after {timeout_s} s")
            time.sleep(0.02)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class MeshtasticdCluster:
    """Several nodes, each with a fresh state folder under one temporary directory.

    Stopping the cluster stops every node it started (by PID) and removes the folder.
    """

    def __init__(self, *, binary: Path | None = None, root: Path | None = None) -> None:
        self.binary = binary or meshtasticd_binary()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="relayd-meshtasticd-")
            root = Path(self._tmp.name)
        self.root = root
        self.nodes: dict[str, MeshtasticdNode] = {}

    def add(self, name: str, *, start: bool = True) -> MeshtasticdNode:
        if name in self.nodes:
            raise ValueError(f"node {name!r} already exists")
        node = MeshtasticdNode(self.root / name, hw_id=len(self.nodes) + 16, binary=self.binary)
        self.nodes[name] = node
        if start:
            try:
                node.start()
            except BaseException:
                self.stop()
                raise
        return node

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def running_node(state_dir: Path | None = None) -> Iterator[MeshtasticdNode]:
    """One node for the duration of a with-block (fresh temporary state folder by default)."""
    with contextlib.ExitStack() as stack:
        if state_dir is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="relayd-meshtasticd-")))
            state_dir = tmp / "node"
        node = stack.enter_context(MeshtasticdNode(state_dir))
        yield node
