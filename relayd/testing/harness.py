"""Run real relay daemons against a simulated neighborhood and a real broker.

Used by the end-to-end tests, the fault suite and the benchmarks: it writes a relay config
for a simulated radio endpoint and starts `relayd run` as a child process (so tests can
`kill -9` it), or in-process for latency measurements.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from relayd.testing.keys import TestNetwork


def write_relay_config(
    directory: Path,
    relay_id: str,
    network: TestNetwork,
    *,
    radio_port: int | None = None,
    radio_pty: str | None = None,
    broker_port: int,
    time_scale: float = 1.0,
    suppression: bool = True,
    metrics_port: int | None = None,
    topic_root: str = "relayd",
    extra: str = "",
    catchup_after: str = "30m",
) -> Path:
    """A relay config whose key, trust and state live under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    state = directory / f"{relay_id}-state"
    device = f"tcp://127.0.0.1:{radio_port}" if radio_port is not None else f"serial://{radio_pty}"
    metrics = f"127.0.0.1:{metrics_port}" if metrics_port is not None else ""
    text = f"""\
[relay]
id = "{relay_id}"
key = "{network.key_path(relay_id)}"
state_dir = "{state}"
status_interval = "5s"
catchup_after = "{catchup_after}"

[trust]
root = "{network.pub_path("root")}"
bundle = "{network.bundle_path}"

[[radio]]
name = "main"
device = "{device}"
time_scale = {time_scale}

[mqtt]
url = "mqtt://127.0.0.1:{broker_port}"
topic_root = "{topic_root}"

[suppression]
enabled = {"true" if suppression else "false"}

[metrics]
listen = "{metrics}"
{extra}
"""
    path = directory / f"{relay_id}.toml"
    path.write_text(text)
    return path


@dataclass
class RelayProcess:
    """`relayd run -c CONFIG` as a child process; stdout/stderr go to a log file."""

    config: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "relayd", "-v", "run", "-c", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL, as a power cut or OOM kill would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def wait_until(predicate: Callable[[], object], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll `predicate()` until true or `timeout_s` passes (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
