"""Brokers keep what they acknowledge: a kill -9 of the broker while a relay is offline, then
a restart, and the relay still gets its whole queued backlog.

Run with the shipped config/mosquitto/local.conf, and with the persistence settings it had
before (`autosave_interval 300`, no autosave_on_changes) to show what those lost. Also the
test rig's own broker (relayd/testing/mosquitto.py): it persists as the shipped config does,
and a broker that cannot save fails the test setup instead of silently running without.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import aiomqtt
import pytest

from relayd.testing.mosquitto import MosquittoBroker, MosquittoPersistenceError
from tests.deploy.deploy_support import (
    MQTT_TIMEOUT_S,
    Broker,
    payload_bytes,
    render_local_broker,
    require_tool,
    rewrite_directives,
    run_broker,
)

pytestmark = pytest.mark.mosquitto

BACKLOG = 20
OLD_PERSISTENCE = {"autosave_on_changes": "", "autosave_interval": "autosave_interval 300"}


def _relay_session(port: int, user: str, password: str | None, client_id: str) -> aiomqtt.Client:
    """The relay's MQTT session as relayd opens it: a fixed client id, clean_session false."""
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        username=user,
        password=password,
        identifier=client_id,
        clean_session=False,
        protocol=aiomqtt.ProtocolVersion.V311,
    )


async def _drain(client: aiomqtt.Client, want: int, quiet_s: float = 1.0) -> list[bytes]:
    """What the session delivers until `want` messages arrived or it stays quiet."""
    got: list[bytes] = []
    with_deadline = asyncio.timeout(MQTT_TIMEOUT_S)
    async with with_deadline:
        while len(got) < want:
            try:
                message = await asyncio.wait_for(anext(client.messages), quiet_s)
            except TimeoutError:
                break
            got.append(payload_bytes(message))
    return got


async def _backlog_after_kill(config: Path, port: int, passwords: dict[str, str], workdir: Path) -> int:
    """Queue BACKLOG alerts for an offline relay, kill -9 the broker, restart it, count what
    the relay's session delivers."""
    relay_id = f"relayd-relay-example1-{uuid.uuid4().hex[:6]}"
    sent = [f"alert-{i}-{uuid.uuid4().hex}".encode() for i in range(BACKLOG)]
    with run_broker(config, port, passwords, workdir / "mosquitto-1.log") as broker:
        async with _relay_session(port, "relay-example1", passwords["relay-example1"], relay_id) as relay:
            await relay.subscribe("relayd/outbox", qos=1)
        # The relay is offline now; a dispatcher's alerts are acknowledged and queued for it.
        async with broker.client("dispatcher-example") as dispatcher:
            for payload in sent:
                await dispatcher.publish("relayd/outbox", payload, qos=1)
        await asyncio.sleep(0.2)  # the broker's next loop (where an autosave happens)
        broker.process.kill()  # a crash or a power cut: no chance to save on the way out
        broker.process.wait(timeout=5)
    with run_broker(config, port, passwords, workdir / "mosquitto-2.log") as broker:
        _check_log(broker)
        async with _relay_session(port, "relay-example1", passwords["relay-example1"], relay_id) as relay:
            got = await _drain(relay, BACKLOG)
    assert set(got) <= set(sent)
    return len(set(got))


def _check_log(broker: Broker) -> None:
    text = broker.log_path.read_text(errors="replace")
    assert "Error" not in text, text


async def test_kill_9_of_the_local_broker_keeps_the_offline_relays_backlog(tmp_path: Path) -> None:
    require_tool("mosquitto", "mosquitto")
    config, port, passwords = render_local_broker(tmp_path)
    assert await _backlog_after_kill(config, port, passwords, tmp_path) == BACKLOG


async def test_the_old_autosave_interval_lost_the_backlog_on_kill_9(tmp_path: Path) -> None:
    """The control: local.conf as shipped before (save every 300 s) loses every queued alert,
    so the test above measures the config, not luck."""
    require_tool("mosquitto", "mosquitto")
    config, port, passwords = render_local_broker(tmp_path)
    text = config.read_text()
    config.write_text(rewrite_directives(text, OLD_PERSISTENCE, source=config))
    assert await _backlog_after_kill(config, port, passwords, tmp_path) == 0


async def _rig_backlog(broker: MosquittoBroker) -> int:
    client_id = f"relayd-rig-{uuid.uuid4().hex[:6]}"
    sent = [f"rig-{i}".encode() for i in range(BACKLOG)]
    async with _relay_session(broker.port, "", None, client_id) as relay:
        await relay.subscribe("relayd/outbox", qos=1)
    async with aiomqtt.Client("127.0.0.1", broker.port) as dispatcher:
        for payload in sent:
            await dispatcher.publish("relayd/outbox", payload, qos=1)
    await asyncio.sleep(0.2)
    broker.kill()
    broker.start()
    async with _relay_session(broker.port, "", None, client_id) as relay:
        return len(set(await _drain(relay, BACKLOG)))


async def test_the_rig_broker_persists_across_kill_9(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        assert await _rig_backlog(broker) == BACKLOG
        broker.check_persistence()
    finally:
        broker.stop()


def test_a_rig_broker_that_cannot_save_fails_the_setup(tmp_path: Path) -> None:
    """Mosquitto writes `mosquitto.db.new` and renames it; a directory in its way makes every
    save fail (even as root), as the root-owned temp folder did for the `mosquitto` user."""
    broker = MosquittoBroker(tmp_path / "mosquitto")
    (tmp_path / "mosquitto").mkdir()
    (tmp_path / "mosquitto" / "mosquitto.db.new").mkdir()
    with pytest.raises(MosquittoPersistenceError):
        broker.start()
    assert not broker.running


def test_the_rig_broker_runs_as_the_current_user(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        assert broker._proc is not None
        owner = subprocess.run(
            ["ps", "-o", "user=", "-p", str(broker._proc.pid)], capture_output=True, text=True, check=True
        ).stdout.strip()
        import getpass  # noqa: PLC0415

        assert owner == getpass.getuser()
        assert broker.db_path.exists()
    finally:
        broker.stop()
