"""Logs an operator can follow: one ready line, every retry with its backoff and a hint for the
failure class, and each drop with the alert id (never its text)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import Coroutine
from pathlib import Path

import pytest

from relayd.core.linkhints import Failure, broker_failure, radio_failure
from relayd.core.model import DropReason
from relayd.core.status import LinkState
from relayd.core.verify import Verdict
from relayd.daemon.config import MqttConfig, RadioConfig, load_config
from relayd.daemon.mqtt import MqttLink
from relayd.daemon.radio import RadioLink
from relayd.daemon.relay import Relay
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork
from relayd.testing.mosquitto import MosquittoBroker, free_port


def test_broker_failures_are_classed_from_what_the_client_says() -> None:
    assert broker_failure("[Errno 111] Connection refused").failure is Failure.BROKER_REFUSED
    assert broker_failure("timed out").failure is Failure.BROKER_UNREACHABLE
    assert broker_failure("[Errno -2] Name or service not known").failure is Failure.BROKER_UNREACHABLE
    assert broker_failure("[code:135] Not authorized").failure is Failure.BROKER_AUTH
    assert broker_failure("[code:134] Bad user name or password").failure is Failure.BROKER_AUTH
    assert (
        broker_failure("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed").failure
        is Failure.BROKER_TLS
    )


def test_radio_failures_are_classed_from_errno_or_text() -> None:
    assert radio_failure("could not open port /dev/ttyACM0: No such file or directory").failure is (
        Failure.RADIO_MISSING
    )
    assert radio_failure("x", 13).failure is Failure.RADIO_PERMISSION
    assert radio_failure("Could not exclusively lock port /dev/ttyACM0").failure is Failure.RADIO_BUSY
    assert radio_failure("[Errno 111] Connect call failed").failure is Failure.OTHER
    assert radio_failure("x", 111).failure is Failure.RADIO_REFUSED
    assert radio_failure("", timeout=True).failure is Failure.RADIO_SILENT
    assert radio_failure("radio closed the TCP connection").failure is Failure.RADIO_CLOSED
    assert radio_failure("serial radio went away (unplugged?)").failure is Failure.RADIO_CLOSED
    # Every class has a hint that says what to do.
    assert all(d.hint for d in (radio_failure("x", 13), broker_failure("timed out")))


def retries(caplog: pytest.LogCaptureFixture, what: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(what) and "retrying in" in r.getMessage()]


async def run_for(coro: Coroutine[object, object, None], seconds: float) -> None:
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def mqtt_link(config: MqttConfig) -> MqttLink:
    async def ignore(_: object) -> None:
        return None

    return MqttLink(config, subscriptions=[], handler=ignore, will_topic="t", will_payload=lambda: b"")


async def test_every_broker_retry_is_logged_with_backoff_and_a_hint(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()  # nothing listens
    await run_for(mqtt_link(MqttConfig(host="127.0.0.1", port=port, client_id="relay-test")).run(), 2.5)
    lines = retries(caplog, f"broker 127.0.0.1:{port}")
    assert len(lines) >= 2, "not just the first failure: every retry"
    assert lines[0].levelno == logging.WARNING
    assert all(r.levelno == logging.INFO for r in lines[1:])
    first = lines[0].getMessage()
    assert "[refused]" in first
    assert "attempt 1, retrying in " in first
    assert "is mosquitto running" in first
    assert "attempt 2," in lines[1].getMessage()


async def test_a_refused_login_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "relay", "right"], check=True)  # noqa: ASYNC221 - setup, before any task runs
    broker = MosquittoBroker(
        tmp_path / "broker", extra_config=f"allow_anonymous false\npassword_file {passwords}"
    )
    broker.start()
    try:
        caplog.set_level(logging.INFO)
        config = MqttConfig(
            host="127.0.0.1", port=broker.port, username="relay", password="wrong", client_id="relay-test"
        )
        await run_for(mqtt_link(config).run(), 1.5)
    finally:
        broker.stop()
    lines = retries(caplog, f"broker 127.0.0.1:{broker.port}")
    assert lines
    assert "[auth]" in lines[0].getMessage()
    assert "password_file" in lines[0].getMessage()
    assert "wrong" not in caplog.text  # never the password


@pytest.mark.parametrize(
    ("config", "failure", "hint"),
    [
        (RadioConfig("main", "serial", device="/dev/relayd-no-such-radio"), "[missing]", "plugged in"),
        (RadioConfig("main", "tcp", host="127.0.0.1", port=free_port()), "[tcp refused]", "meshtasticd"),
    ],
)
async def test_every_radio_retry_is_logged_with_backoff_and_a_hint(
    config: RadioConfig, failure: str, hint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await run_for(RadioLink(config, lambda _: None).run(), 2.0)
    lines = retries(caplog, "radio main")
    assert len(lines) >= 2
    assert failure in lines[0].getMessage()
    assert hint in lines[0].getMessage()
    assert "attempt 2," in lines[1].getMessage()


async def test_one_ready_line_when_every_link_is_up_and_again_after_an_outage(
    tmp_path: Path, network: TestNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_relay_config(tmp_path / "relay", "relay-north", network, radio_port=4403, broker_port=1883)
    relay = Relay(load_config(path))
    caplog.set_level(logging.INFO, logger="relayd")
    radio = relay.radios[0]
    radio._set_state(LinkState.CONNECTED)  # the broker is not yet: not ready
    assert not [r for r in caplog.records if "ready" in r.getMessage()]
    relay.mqtt._set_state(LinkState.CONNECTED)
    relay.mqtt._set_state(LinkState.CONNECTED)  # no change, no second line
    ready = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ready")]
    assert ready == [
        "ready: relay relay-north; radio main (tcp:127.0.0.1:4403, firmware unknown); "
        "broker mqtt://127.0.0.1:1883; trust bundle v1; 0 frame(s) queued for air"
    ]
    radio._set_state(LinkState.DISCONNECTED)
    radio._set_state(LinkState.CONNECTED)
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("ready again")]
    relay.storage.close()


def test_each_drop_is_logged_at_info_with_the_alert_id_never_the_text(
    tmp_path: Path, network: TestNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_relay_config(tmp_path / "relay", "relay-north", network, radio_port=9, broker_port=9)
    relay = Relay(load_config(path))
    caplog.set_level(logging.INFO, logger="relayd")
    expired = network.sign("dispatcher", "Raid at 5th and Pine", now_s=1_000_000_000)
    relay._drop(Verdict(DropReason.EXPIRED, "expired long ago", expired), "mqtt")
    lines = [r for r in caplog.records if r.levelno == logging.INFO and "dropped" in r.getMessage()]
    assert next(r.getMessage() for r in lines) == f"dropped {expired.id_hex} from mqtt: expired"
    assert "Raid" not in caplog.text
    relay.storage.close()
