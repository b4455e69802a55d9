"""A RabbitMQ cluster on loopback (Debian's rabbitmq-server package) for tests and benchmarks.

Each node is its own `rabbitmq-server` process with its own node name, data folder, AMQP,
MQTT and Erlang distribution ports, all bound to 127.0.0.1, and one epmd (the Erlang port
mapper) on a free loopback port for the cluster alone. Nodes 2..N join node 1. `stop_node` and
`start_node` restart one node, which is how the benchmark tests a node restart. Every process
started here is stopped by its PID.

RabbitMQ's MQTT plugin (3.10) speaks MQTT 3.1.1 only. Its retained messages are kept per node
and are not delivered through wildcard subscriptions; a persistent session's queue lives on
the node the client first connected to (docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from relayd.testing.mosquitto import free_port, wait_for_port

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT_S = 120.0


class RabbitUnavailable(RuntimeError):  # noqa: N818 - names the condition a run skips on
    """rabbitmq-server (and its MQTT plugin) is not installed."""


def rabbit_installed() -> bool:
    return (RABBIT_BIN / "rabbitmq-server").exists() and shutil.which("erl") is not None


@dataclass
class RabbitNode:
    name: str  # e.g. "relayd-1@localhost"
    base: Path
    amqp_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None


class RabbitCluster:
    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        if not rabbit_installed():
            raise RabbitUnavailable("rabbitmq-server is not installed: apt-get install rabbitmq-server")
        self.workdir = workdir
        self.home = workdir / "home"
        self.epmd_port = free_port()
        self.epmd: subprocess.Popen[bytes] | None = None
        self.nodes = [RabbitNode(f"relayd-{i + 1}@localhost", workdir / f"node{i + 1}") for i in range(nodes)]

    # -- environment -------------------------------------------------------------------

    def _env(self, node: RabbitNode | None = None) -> dict[str, str]:
        env = {
            **os.environ,
            "HOME": str(self.home),  # the shared Erlang cookie
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_ERLANG_COOKIE": "",
        }
        env.pop("RABBITMQ_ERLANG_COOKIE")
        if node is not None:
            env.update(
                {
                    "RABBITMQ_NODENAME": node.name,
                    "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                    "RABBITMQ_NODE_PORT": str(node.amqp_port),
                    "RABBITMQ_DIST_PORT": str(node.dist_port),
                    "RABBITMQ_BASE": str(node.base),
                    "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
                    "RABBITMQ_LOG_BASE": str(node.base / "log"),
                    "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq.conf"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.base / "enabled_plugins"),
                    "RABBITMQ_PID_FILE": str(node.base / "rabbit.pid"),
                    # The distribution listener on loopback only.
                    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
                    "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
                }
            )
        return env

    def _write_node_files(self, node: RabbitNode) -> None:
        node.base.mkdir(parents=True, exist_ok=True)
        (node.base / "log").mkdir(exist_ok=True)
        (node.base / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (node.base / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}",
                    f"mqtt.listeners.tcp.default = 127.0.0.1:{node.mqtt_port}",
                    "mqtt.allow_anonymous = true",
                    "mqtt.default_user = guest",
                    "mqtt.default_pass = guest",
                    "loopback_users.guest = true",
                    "log.console = false",
                    "log.file.level = warning",
                    # A small test machine: do not refuse publishers for lack of disk or RAM.
                    "disk_free_limit.absolute = 50MB",
                    "vm_memory_high_watermark.relative = 0.8",
                ]
            )
            + "\n"
        )

    def ctl(self, node: RabbitNode, *args: str, timeout_s: float = 60.0) -> str:
        proc = subprocess.run(  # noqa: S603 - fixed tool, our own arguments
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", node.name, *args],
            env=self._env(node),
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {node.name}: {proc.stderr.decode()[-500:]}")
        return proc.stdout.decode()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text("RELAYDTESTCLUSTERCOOKIE")
        cookie.chmod(0o400)
        self.epmd = subprocess.Popen(  # noqa: S603 - fixed tool
            [shutil.which("epmd") or "epmd", "-address", "127.0.0.1", "-port", str(self.epmd_port)],
            env=self._env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port("127.0.0.1", self.epmd_port)
        for node in self.nodes:
            self._write_node_files(node)
            self.start_node(node)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.name)
            self.ctl(node, "start_app")
            wait_for_port("127.0.0.1", node.mqtt_port, START_TIMEOUT_S)

    def start_node(self, node: RabbitNode) -> None:
        log = (node.base / "server.out").open("ab")
        node.proc = subprocess.Popen(  # noqa: S603 - fixed tool
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=self._env(node),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for_port("127.0.0.1", node.mqtt_port, START_TIMEOUT_S)

    def stop_node(self, node: RabbitNode) -> None:
        """Stop one node's processes (the script, and the Erlang VM it started) by PID."""
        proc, node.proc = node.proc, None
        if proc is None:
            return
        pids: list[int] = []
        with contextlib.suppress(OSError, ValueError):
            pids.append(int((node.base / "rabbit.pid").read_text().strip()))
        pids.append(proc.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            self.stop_node(node)
        if self.epmd is not None:
            self.epmd.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.epmd.wait(timeout=5)
            self.epmd = None

    def __enter__(self) -> RabbitCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True
