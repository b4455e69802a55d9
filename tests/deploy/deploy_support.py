"""Helpers for the deployment tests: find tools, render the shipped configs into a temp dir, run
a real Mosquitto on a free loopback port, and tell whether an MQTT publish was delivered.

The shipped files (config/mosquitto/*.conf, acl.example) are used as they are; only paths, the
port and secrets are rewritten, and a rewrite fails loudly if the directive it expects is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MOSQUITTO_DIR = REPO_ROOT / "config" / "mosquitto"
LOCAL_CONF = MOSQUITTO_DIR / "local.conf"
BRIDGE_CONF = MOSQUITTO_DIR / "bridge.conf"
ACL_EXAMPLE = MOSQUITTO_DIR / "acl.example"
SYSTEMD_UNIT = REPO_ROOT / "config" / "systemd" / "relayd.service"
UDEV_RULE = REPO_ROOT / "hardware" / "udev" / "99-meshradio.rules"
PROFILES_DIR = REPO_ROOT / "hardware" / "profiles"
APPLY_PROFILE = REPO_ROOT / "hardware" / "apply-profile.sh"

# Users that acl.example defines; the tests give each a fresh random password.
ACL_USERS = ("admin", "dispatcher-example", "relay-example1", "relay-example2", "relayd-north-bridge")

BROKER_START_TIMEOUT_S = 5.0
MQTT_TIMEOUT_S = 5.0

# Debian puts mosquitto in /usr/sbin, which is not on a normal user's PATH.
_EXTRA_TOOL_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def find_tool(name: str) -> str | None:
    """Path of an executable on PATH or in the sbin directories, or None."""
    found = shutil.which(name)
    if found:
        return found
    return shutil.which(name, path=os.pathsep.join(_EXTRA_TOOL_DIRS))


def require_tool(name: str, package: str) -> str:
    """Path of a tool, or skip the test with the reason and the fix."""
    path = find_tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rewrite_directives(text: str, replacements: dict[str, str], *, source: Path) -> str:
    """Replace whole config lines by their first word; every key must occur exactly once."""
    seen: dict[str, int] = dict.fromkeys(replacements, 0)
    out: list[str] = []
    for line in text.splitlines():
        words = line.split(maxsplit=1)
        key = words[0] if words and not line.lstrip().startswith("#") else None
        if key in replacements:
            seen[key] += 1
            out.append(replacements[key])
        else:
            out.append(line)
    wrong = {key: count for key, count in seen.items() if count != 1}
    if wrong:
        pytest.fail(f"{source.name}: expected each of these directives exactly once, found {wrong}")
    return "\n".join(out) + "\n"


def run_as_current_user_directive() -> str:
    # Started as root, mosquitto drops to the `mosquitto` user and could not read the test's
    # 0700 temp dir; `user root` keeps it as is. As any other user it cannot switch anyway.
    return "user root\n" if os.geteuid() == 0 else ""


def write_password_file(path: Path, passwords: dict[str, str]) -> None:
    tool = require_tool("mosquitto_passwd", "mosquitto")
    create = ["-c"]
    for user, password in passwords.items():
        subprocess.run(
            [tool, *create, "-b", str(path), user, password],
            check=True,
            capture_output=True,
            timeout=10,
        )
        create = []
    path.chmod(0o600)


@dataclass
class Broker:
    """A running mosquitto and what a test needs to talk to it."""

    port: int
    passwords: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def client(self, user: str | None, *, password: str | None = None) -> aiomqtt.Client:
        """An MQTT 3.1.1 client for `user` (None = anonymous) with a unique client id."""
        if user is not None and password is None:
            password = self.passwords[user]
        return aiomqtt.Client(
            "127.0.0.1",
            self.port,
            username=user,
            password=password,
            identifier=f"test-{user or 'anon'}-{uuid.uuid4().hex[:8]}",
            protocol=aiomqtt.ProtocolVersion.V311,
            timeout=MQTT_TIMEOUT_S,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_listening(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + BROKER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"mosquitto exited with {process.returncode} at startup:\n"
                f"{log_path.read_text(errors='replace')}"
            )
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"mosquitto did not listen on 127.0.0.1:{port}:\n{log_path.read_text(errors='replace')}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def run_broker(config: Path, port: int, passwords: dict[str, str], log_path: Path) -> Iterator[Broker]:
    """Start `mosquitto -c config`, wait until it listens, stop it (and only it) afterwards."""
    mosquitto = require_tool("mosquitto", "mosquitto")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [mosquitto, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        _wait_listening(process, port, log_path)
        yield Broker(port=port, passwords=passwords, log_path=log_path, process=process)
    finally:
        _stop(process)


def render_local_broker(workdir: Path, *, acl: Path = ACL_EXAMPLE) -> tuple[Path, int, dict[str, str]]:
    """local.conf with its listener, paths and include_dir moved into `workdir`."""
    port = free_port()
    data = workdir / "data"
    conf_d = workdir / "conf.d"
    data.mkdir()
    conf_d.mkdir()
    passwords = {user: secrets.token_urlsafe(12) for user in ACL_USERS}
    password_file = workdir / "passwd"
    write_password_file(password_file, passwords)
    text = rewrite_directives(
        LOCAL_CONF.read_text(),
        {
            "listener": f"listener {port} 127.0.0.1",
            "persistence_location": f"persistence_location {data}/",
            "password_file": f"password_file {password_file}",
            "acl_file": f"acl_file {acl}",
            "include_dir": f"include_dir {conf_d}",
        },
        source=LOCAL_CONF,
    )
    config = workdir / "mosquitto.conf"
    config.write_text(text + run_as_current_user_directive())
    return config, port, passwords


def payload_bytes(message: aiomqtt.Message) -> bytes:
    # aiomqtt types the payload as bytes today; older 2.x releases in pyproject's range did not.
    payload: object = message.payload
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload).encode()


def marker(label: str) -> bytes:
    return f"{label}-{uuid.uuid4().hex}".encode()


async def collect_until(client: aiomqtt.Client, sentinel: bytes) -> list[bytes]:
    """Payloads received before `sentinel` arrives (fails the test if it never does)."""
    received: list[bytes] = []
    try:
        async with asyncio.timeout(MQTT_TIMEOUT_S):
            async for message in client.messages:
                payload = payload_bytes(message)
                if payload == sentinel:
                    return received
                received.append(payload)
    except TimeoutError:
        pytest.fail(f"sentinel {sentinel!r} never arrived; got {received!r}")
    pytest.fail("message stream ended before the sentinel arrived")


async def wait_for_payload(client: aiomqtt.Client, wanted: bytes) -> aiomqtt.Message:
    """The first message whose payload is `wanted`."""
    try:
        async with asyncio.timeout(MQTT_TIMEOUT_S):
            async for message in client.messages:
                if payload_bytes(message) == wanted:
                    return message
    except TimeoutError:
        pytest.fail(f"{wanted!r} never arrived")
    pytest.fail("message stream ended before the payload arrived")


async def publish_reaches(broker: Broker, publisher: str, topic: str, *, retain: bool = False) -> bool:
    """Whether a QoS 1 publish by `publisher` on `topic` reaches an admin subscriber.

    Mosquitto silently drops an unauthorised publish from an MQTT 3.1.1 client (it still sends
    the PUBACK), so absence is proven with a sentinel: once the publisher's PUBACK is back the
    broker has routed or dropped its message, so if the admin's later sentinel arrives first,
    the message was dropped. No sleeping for a timeout.
    """
    async with broker.client("admin") as watcher, broker.client(publisher) as client:
        await watcher.subscribe(topic, qos=1)
        probe = marker("probe")
        await client.publish(topic, probe, qos=1, retain=retain)
        sentinel = marker("sentinel")
        await watcher.publish(topic, sentinel, qos=1)
        return probe in await collect_until(watcher, sentinel)
