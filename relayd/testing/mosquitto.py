"""Start a real Mosquitto broker on a free loopback port for tests and benchmarks.

The broker runs as the user running the tests (`user` set to that user: started as root,
Mosquitto would otherwise drop to its own `mosquitto` user and fail to write its save file
in a root-owned temp folder), logs to a file in its work folder, and a persistence error in
that log fails the test: a restart test that silently runs without persistence tests
nothing.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from relayd.core.brokersave import PERSISTENCE_ERRORS


class MosquittoUnavailable(RuntimeError):  # noqa: N818 - names the condition a test skips on
    """The mosquitto binary is not installed."""


class MosquittoPersistenceError(RuntimeError):
    """The broker could not save (or load) its persistence file; its log line says why."""


_PERSISTENCE_ERRORS = PERSISTENCE_ERRORS  # relayd/core/brokersave.py


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def mosquitto_binary() -> str:
    for candidate in ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        found = shutil.which(candidate)
        if found:
            return found
    raise MosquittoUnavailable("mosquitto is not installed: apt-get install mosquitto")


def wait_for_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s} s")


# MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s, client id "relayd-probe"; and DISCONNECT.
_PROBE_CONNECT = b"\x10\x18\x00\x04MQTT\x04\x02\x00\x3c\x00\x0crelayd-probe"
_DISCONNECT = b"\xe0\x00"


def wait_for_mqtt(host: str, port: int, timeout_s: float = 10.0) -> None:
    """Until the broker answers an MQTT CONNECT (any CONNACK).

    The kernel accepts TCP connections on a listening socket before the broker's main loop
    runs, and Mosquitto installs its signal handlers between opening its listeners and that
    loop: a SIGUSR1 in between kills it (the default action). A CONNACK comes from the loop.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(_PROBE_CONNECT)
            answer = sock.recv(4)
            if answer[:1] == b"\x20":
                with contextlib.suppress(OSError):
                    sock.sendall(_DISCONNECT)
                return
        time.sleep(0.02)
    raise TimeoutError(f"no MQTT answer on {host}:{port} after {timeout_s} s")


@dataclass
class MosquittoBroker:
    """A Mosquitto process bound to 127.0.0.1 on `port`, with persistence in `workdir`.

    `stop()` / `start()` restart it on the same port (persistent sessions survive when
    `persistence` is on), which is how tests simulate a broker outage.
    """

    workdir: Path
    port: int = field(default_factory=free_port)
    persistence: bool = True
    extra_config: str = ""
    # Save after every change (a queued message, a retained message, a subscription), as the
    # shipped config/mosquitto/local.conf does: a kill -9 then loses nothing acknowledged.
    autosave: str = "autosave_on_changes true\nautosave_interval 1"
    # Where the save file goes (default: `workdir`); a test of a broker that cannot save
    # points it at a folder it may not write, and turns off the proof at start.
    persistence_location: Path | None = None
    prove_saves: bool = True
    _proc: subprocess.Popen[bytes] | None = None
    _log_offset: int = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def db_path(self) -> Path:
        return self.workdir / "mosquitto.db"

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            # Stay the user we are (root stays root; anyone else cannot switch anyway).
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.persistence_location or self.workdir}/",
            self.autosave,
            "max_queued_messages 100000",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_timestamp false",
            self.extra_config,
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def check_persistence(self) -> None:
        """Raise if the broker logged a persistence error since it was last started."""
        text = self.log_text()[self._log_offset :]
        errors = [line for line in text.splitlines() if _PERSISTENCE_ERRORS.search(line)]
        if errors:
            raise MosquittoPersistenceError(
                f"mosquitto on port {self.port} cannot persist: {errors[0].strip()} (log: {self.log_path})"
            )

    def save_now(self, timeout_s: float = 10.0) -> None:
        """Ask the broker to write its database (SIGUSR1) and wait until it has.

        The signal is sent again each second until the file changes: Mosquitto only sets a
        flag in its handler and saves on its loop's next pass, and on a loaded machine one
        signal was seen to go unanswered for 5 s.
        """
        if self._proc is None or self._proc.poll() is not None or not self.persistence:
            return
        before = self.db_path.stat().st_mtime_ns if self.db_path.exists() else 0
        deadline = time.monotonic() + timeout_s
        next_signal = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_signal and self._proc.poll() is None:
                self._proc.send_signal(signal.SIGUSR1)
                next_signal = time.monotonic() + 1.0
            self.check_persistence()
            if self.db_path.exists() and self.db_path.stat().st_mtime_ns != before:
                return
            time.sleep(0.02)
        self.check_persistence()
        raise MosquittoPersistenceError(
            f"mosquitto on port {self.port} wrote no {self.db_path} after SIGUSR1"
            f" ({'running' if self._proc.poll() is None else f'exited {self._proc.returncode}'})"
        )

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._write_config()
        self._log_offset = len(self.log_text())
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own config file
            [mosquitto_binary(), "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_mqtt("127.0.0.1", self.port)
            if self.persistence and self.prove_saves:
                # Prove now that it can write its save file, rather than find out after a
                # restart that every queued message was lost.
                self.save_now()
        except (TimeoutError, MosquittoPersistenceError):
            self.stop()
            raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash or power cut would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_broker(workdir: Path, **kwargs: object) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(workdir, **kwargs)  # type: ignore[arg-type]
    with broker:
        yield broker
