"""`relayd doctor`: every check passes on a healthy relay, and each provoked failure is named with
its fix. A simulated radio (the device API on a pty and TCP) and real Mosquittos on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from relayd.core.brokersave import STATUS_LEFT_META
from relayd.daemon.storage import Storage
from relayd.doctor import DISK_FAIL_BYTES, DISK_WARN_BYTES, Level, assess_disk
from relayd.sim.firmware import FIRMWARE_VERSION
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import load_scenario
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork
from relayd.testing.mosquitto import MosquittoBroker, free_port
from tests.deploy.deploy_support import REPO_ROOT, Broker

ONE_RELAY = REPO_ROOT / "config" / "sim" / "one-relay.toml"
DOCTOR_TIMEOUT_S = 60.0
RELAY = "relay-north"


@dataclass
class Doctored:
    returncode: int
    lines: dict[str, str]
    output: str

    def level(self, check: str) -> str:
        return self.lines[check].split()[0]


@pytest.fixture
async def radio() -> AsyncIterator[Neighborhood]:
    """one-relay.toml: the relay radio answers the device API on a pty and on TCP."""
    async with Neighborhood(load_scenario(ONE_RELAY)) as hood:
        yield hood


def relay_config(
    tmp_path: Path, network: TestNetwork, hood: Neighborhood, broker_port: int, *, tcp: bool = False
) -> Path:
    endpoint = hood.endpoints["relay"]
    if tcp:
        config = write_relay_config(
            tmp_path / "relay", RELAY, network, broker_port=broker_port, radio_port=endpoint.tcp_port
        )
    else:
        config = write_relay_config(
            tmp_path / "relay", RELAY, network, broker_port=broker_port, radio_pty=endpoint.pty_path
        )
    (tmp_path / "relay" / f"{RELAY}-state").mkdir(exist_ok=True)
    return config


async def doctor(config: Path, *extra: str) -> Doctored:
    """`relayd doctor -c CONFIG --json` as a child process (the simulator keeps running here)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relayd",
        "doctor",
        "-c",
        str(config),
        "--json",
        "--timeout",
        "2",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(DOCTOR_TIMEOUT_S):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    doc = json.loads(out)
    lines = {c["check"]: f"{c['level']} {c['detail']} — {c['fix']}" for c in doc["checks"]}
    assert doc["ok"] == (proc.returncode == 0), out
    return Doctored(proc.returncode, lines, out.decode() + err.decode())


def assert_only_failure(result: Doctored, check: str) -> None:
    assert result.returncode == 1, result.output
    failing = {name for name, line in result.lines.items() if line.startswith("fail")}
    assert failing == {check}, result.output


async def test_healthy_relay_passes_every_check(
    tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker, radio: Neighborhood
) -> None:
    result = await doctor(relay_config(tmp_path, network, radio, mosquitto.port))
    assert result.returncode == 0, result.output
    assert set(result.lines) == {"device", "radio", "broker", "persist", "key", "trust", "clock", "disk"}
    assert all(line.startswith("ok") for line in result.lines.values()), result.output
    node = radio.endpoints["relay"].node_id
    assert f"handshake complete (node {node}, firmware {FIRMWARE_VERSION}" in result.lines["radio"]
    assert "role relay" in result.lines["key"]


async def test_text_output_is_one_line_per_check(
    tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker, radio: Neighborhood
) -> None:
    config = relay_config(tmp_path, network, radio, mosquitto.port, tcp=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relayd", "doctor", "-c", str(config), stdout=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(DOCTOR_TIMEOUT_S):
        out, _ = await proc.communicate()
    lines = out.decode().splitlines()
    assert proc.returncode == 0, out
    assert [line.split()[:2] for line in lines] == [
        ["ok", name] for name in ("device", "radio", "broker", "persist", "key", "trust", "clock", "disk")
    ]
    port = radio.endpoints["relay"].tcp_port
    assert lines[1].startswith(f"ok    radio      tcp:127.0.0.1:{port} handshake complete (node !")


async def test_serial_radio_held_by_a_running_relay_is_a_warning(
    tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker, radio: Neighborhood
) -> None:
    import serial  # noqa: PLC0415 - pyserial, as the daemon opens the port

    config = relay_config(tmp_path, network, radio, mosquitto.port)
    # The daemon opens its serial radio with pyserial's exclusive lock, as done here.
    held = serial.Serial(radio.endpoints["relay"].pty_path, baudrate=115200, timeout=0, exclusive=True)
    try:
        result = await doctor(config)
    finally:
        held.close()
    assert result.returncode == 0, result.output
    assert result.level("radio") == "warn"
    assert "in use by another process" in result.lines["radio"]


async def test_wrong_broker_port_fails_as_connection_refused(
    tmp_path: Path, network: TestNetwork, radio: Neighborhood
) -> None:
    result = await doctor(relay_config(tmp_path, network, radio, free_port()))
    assert_only_failure(result, "broker")
    assert "connection refused" in result.lines["broker"]
    assert "systemctl status mosquitto" in result.lines["broker"]


async def test_bad_broker_credentials_fail_as_not_authorized(
    tmp_path: Path, network: TestNetwork, radio: Neighborhood, local_broker: Broker
) -> None:
    # The shipped local.conf + acl.example broker, with a wrong password for a real user.
    config = relay_config(tmp_path, network, radio, local_broker.port)
    password_file = tmp_path / "mqtt.password"
    password_file.write_text("not-the-password\n")
    text = config.read_text().replace(
        "[mqtt]\n", f'[mqtt]\nusername = "relay-example1"\npassword_file = "{password_file}"\n'
    )
    config.write_text(text)
    result = await doctor(config)
    assert_only_failure(result, "broker")
    assert "refused user relay-example1" in result.lines["broker"]
    assert "mosquitto_passwd" in result.lines["broker"]
    # ...and with the right password the same broker passes.
    password_file.write_text(local_broker.passwords["relay-example1"] + "\n")
    result = await doctor(config)
    assert result.returncode == 0, result.output
    assert "connected as relay-example1" in result.lines["broker"]


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (not an MQTT broker)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


async def test_silent_broker_fails_as_no_connack(
    tmp_path: Path, network: TestNetwork, radio: Neighborhood
) -> None:
    with silent_listener() as port:
        result = await doctor(relay_config(tmp_path, network, radio, port))
    assert_only_failure(result, "broker")
    assert "no MQTT CONNACK" in result.lines["broker"]


async def test_world_readable_key_fails_with_chmod_fix(
    tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker, radio: Neighborhood
) -> None:
    network.key_path(RELAY).chmod(0o644)
    result = await doctor(relay_config(tmp_path, network, radio, mosquitto.port))
    assert_only_failure(result, "key")
    assert "0644" in result.lines["key"]
    assert f"chmod 600 {network.key_path(RELAY)}" in result.lines["key"]


async def test_dispatcher_key_on_a_relay_fails(
    tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker, radio: Neighborhood
) -> None:
    config = relay_config(tmp_path, network, radio, mosquitto.port)
    config.write_text(
        config.read_text().replace(str(network.key_path(RELAY)), str(network.key_path("dispatcher")))
    )
    result = await doctor(config)
    assert_only_failure(result, "key")
    assert "is a dispatcher key" in result.lines["key"]


async def test_expired_bundle_fails_and_expiring_bundle_warns(
    tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker, radio: Neighborhood
) -> None:
    config = relay_config(tmp_path, network, radio, mosquitto.port)
    now = int(time.time())
    network.resign(
        dataclasses.replace(network.bundle, version=2, issued_at_s=now - 30 * 86400, expires_at_s=now - 3600)
    )
    result = await doctor(config)
    assert_only_failure(result, "trust")
    assert "expired" in result.lines["trust"]
    network.resign(dataclasses.replace(network.bundle, version=3, expires_at_s=now + 3 * 86400))
    result = await doctor(config)
    assert result.returncode == 0, result.output
    assert result.level("trust") == "warn"
    assert "expires" in result.lines["trust"]


async def test_newer_bundle_kept_in_the_state_dir_is_the_one_checked(
    tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker, radio: Neighborhood
) -> None:
    config = relay_config(tmp_path, network, radio, mosquitto.port)
    state = tmp_path / "relay" / f"{RELAY}-state"
    now = int(time.time())
    original = network.bundle
    # The relay received version 2 over MQTT and keeps it in its state directory (as the daemon
    # does); the configured file is an old version 1 that has since expired.
    network.resign(dataclasses.replace(original, version=2))
    (state / "trust.json").write_bytes(network.bundle_path.read_bytes())
    network.resign(dataclasses.replace(original, issued_at_s=now - 30 * 86400, expires_at_s=now - 3600))
    result = await doctor(config)
    assert result.returncode == 0, result.output
    assert result.level("trust") == "ok"
    assert f"{state / 'trust.json'} version 2" in result.lines["trust"]


async def test_bundle_from_another_root_fails(
    tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker, radio: Neighborhood
) -> None:
    config = relay_config(tmp_path, network, radio, mosquitto.port)
    # Pin another key as the root: the bundle's signature no longer counts.
    config.write_text(
        config.read_text().replace(str(network.pub_path("root")), str(network.pub_path("dispatcher")))
    )
    result = await doctor(config)
    assert result.returncode == 1, result.output
    assert result.level("trust") == "fail"
    assert "not by this network's root" in result.lines["trust"]


async def test_implausible_clock_fails(
    tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker, radio: Neighborhood
) -> None:
    # A Pi after a power cut without NTP: the clock reads 1970.
    result = await doctor(
        relay_config(tmp_path, network, radio, mosquitto.port), "--now", "1970-01-01T00:00:10Z"
    )
    assert result.returncode == 1, result.output
    assert result.level("clock") == "fail"
    assert "timesyncd" in result.lines["clock"]


async def test_missing_radio_and_state_dir_fail(
    tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker
) -> None:
    config = write_relay_config(
        tmp_path / "relay",
        RELAY,
        network,
        radio_pty=str(tmp_path / "no-such-tty"),
        broker_port=mosquitto.port,
    )
    result = await doctor(config)
    assert result.returncode == 1
    assert result.level("device") == "fail"
    assert "does not exist" in result.lines["device"]
    assert "99-meshradio.rules" in result.lines["device"]
    assert result.level("disk") == "fail"


async def test_unresponsive_tcp_radio_fails_the_handshake(
    tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker
) -> None:
    with silent_listener() as port:
        config = write_relay_config(
            tmp_path / "relay", RELAY, network, radio_port=port, broker_port=mosquitto.port
        )
        (tmp_path / "relay" / f"{RELAY}-state").mkdir()
        result = await doctor(config)
    assert_only_failure(result, "radio")
    assert result.level("device") == "ok"
    assert "did not complete the API handshake" in result.lines["radio"]


def test_invalid_config_is_one_failing_check(tmp_path: Path) -> None:
    config = tmp_path / "relayd.toml"
    config.write_text("[relay]\nid = 'x'\n[trust]\n")
    result = subprocess.run(
        [sys.executable, "-m", "relayd", "doctor", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout.startswith("fail  config     ")
    assert "trust.root" in result.stdout


@pytest.mark.parametrize(
    ("free_bytes", "level"),
    [(DISK_FAIL_BYTES - 1, Level.FAIL), (DISK_WARN_BYTES - 1, Level.WARN), (DISK_WARN_BYTES, Level.OK)],
)
def test_disk_thresholds(free_bytes: int, level: Level) -> None:
    assert assess_disk(Path("/var/lib/relayd"), free_bytes).level is level


async def test_a_broker_that_cannot_save_fails_the_persist_check(
    tmp_path: Path, network: TestNetwork, radio: Neighborhood
) -> None:
    """Mosquitto with its save folder missing runs normally and loses everything on a restart:
    doctor says so, from the broker's own config (the save error is in its log too)."""
    broker = MosquittoBroker(
        tmp_path / "unsaved", persistence_location=tmp_path / "no-such-folder", prove_saves=False
    )
    broker.start()
    try:
        config = relay_config(tmp_path, network, radio, broker.port)
        result = await doctor(config, "--broker-config", str(broker.config_path))
        assert_only_failure(result, "persist")
        assert "no-such-folder/ does not exist: nothing can be saved" in result.lines["persist"]
        # The same broker, told to persist in its work folder, passes.
        broker.stop()
        broker.persistence_location = None
        broker.prove_saves = True
        broker.start()
        result = await doctor(config, "--broker-config", str(broker.config_path))
        assert result.level("persist") == "ok", result.output
        assert "saved after every change" in result.lines["persist"]
    finally:
        broker.stop()


async def test_a_broker_that_lost_the_relays_retained_status_is_a_warning(
    tmp_path: Path, network: TestNetwork, radio: Neighborhood
) -> None:
    """A relay that left its status on a broker, and a broker (without persistence) restarted
    since: over MQTT alone, that loss is what can be seen."""
    broker = MosquittoBroker(tmp_path / "volatile", persistence=False)
    broker.start()
    try:
        config = relay_config(tmp_path, network, radio, broker.port)
        state = tmp_path / "relay" / f"{RELAY}-state"
        Storage(state / "relayd.sqlite3").set_meta(STATUS_LEFT_META, "1")
        result = await doctor(config)
        assert result.level("persist") == "warn", result.output
        assert "the broker lost its retained messages" in result.lines["persist"]
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.publish(f"relayd/relays/{RELAY}/status", b"{}", qos=1, retain=True)
        result = await doctor(config)
        assert result.level("persist") == "ok", result.output
    finally:
        broker.stop()
