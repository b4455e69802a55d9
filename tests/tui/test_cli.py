"""`relayd-tui` startup: bad keys and URLs are explained refusals with exit code 2."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from relayd.testing.keys import TestNetwork
from tui.__main__ import EXAMPLES, broker_config, build_parser, main
from tui.config import ConfigError, MqttConfig
from tui.mqtt_worker import tls_context
from tui.outbox import StateInUse, lock_state


def test_loose_key_permissions_exit_2(network: TestNetwork, capsys: pytest.CaptureFixture[str]) -> None:
    key = network.key_path("dispatcher")
    key.chmod(0o640)
    assert main(["--broker", "mqtt://127.0.0.1:1", "--key", str(key)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("relayd-tui: error:")
    assert f"chmod 600 {key}" in err
    assert "Traceback" not in err


def test_reporter_key_exit_2(network: TestNetwork, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--broker", "mqtt://127.0.0.1:1", "--key", str(network.key_path("reporter"))]) == 2
    assert "composing alerts needs a dispatcher or verifier key" in capsys.readouterr().err


def test_missing_trust_bundle_exit_2(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--broker", "mqtt://127.0.0.1:1", "--trust", "/nonexistent/trust.json"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_broker_url_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--broker", "http://example.org"]) == 2
    assert "mqtt://HOST:PORT" in capsys.readouterr().err


def test_broker_url_parsing() -> None:
    cfg = MqttConfig.from_url("mqtt://user:pw@10.0.0.2:1884", root="city/north")
    assert (cfg.host, cfg.port, cfg.username, cfg.password, cfg.root) == (
        "10.0.0.2",
        1884,
        "user",
        "pw",
        "city/north",
    )
    assert MqttConfig.from_url("localhost").port == 1883
    with pytest.raises(ConfigError):
        MqttConfig.from_url("mqtt://host", root="a/+/b")


def test_console_script_entry_point_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tui", "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0
    assert "--broker" in out.stdout


def test_mqtts_and_password_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = MqttConfig.from_url("mqtts://broker.example.org")
    assert (cfg.tls, cfg.port) == (True, 8883)
    assert cfg.display.startswith("mqtts://broker.example.org:8883")
    assert tls_context(cfg) is not None
    assert tls_context(MqttConfig.from_url("mqtt://h")) is None
    secret = tmp_path / "mqtt.pw"
    secret.write_text("s3cret\n")
    args = build_parser().parse_args(
        ["--broker", "mqtts://broker.example.org:8884", "--username", "ops", "--password-file", str(secret)]
    )
    cfg = broker_config(args)
    assert (cfg.username, cfg.password, cfg.port, cfg.tls) == ("ops", "s3cret", 8884, True)
    assert capsys.readouterr().err == ""
    # A password in the URL still works, with a warning that ps shows it.
    broker_config(build_parser().parse_args(["--broker", "mqtt://ops:pw@h"]))
    assert "visible to other users in ps" in capsys.readouterr().err


def test_bad_password_or_ca_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--broker", "mqtt://127.0.0.1:1", "--password-file", str(tmp_path / "missing")]) == 2
    assert "--password-file" in capsys.readouterr().err
    assert main(["--broker", "mqtt://127.0.0.1:1", "--ca-file", str(tmp_path / "ca.pem")]) == 2
    assert "--ca-file is for mqtts://" in capsys.readouterr().err


def test_two_consoles_on_one_state_folder_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    held = lock_state(state)
    try:
        with pytest.raises(StateInUse):
            lock_state(state)
        assert main(["--broker", "mqtt://127.0.0.1:1", "--state", str(state)]) == 2
        assert "another relayd-tui is using" in capsys.readouterr().err
    finally:
        held.close()
    lock_state(state).close()  # free again once the first console is gone


def test_help_has_examples_that_parse_and_every_option_has_help() -> None:
    parser = build_parser()
    assert all(a.help for a in parser._actions)
    examples = re.sub(r"\\\n\s*", " ", EXAMPLES).splitlines()[1:]
    parsed = 0
    for line in examples:
        command = line.strip().split("   ")[0]
        if command.startswith("relayd-tui "):
            args = parser.parse_args(shlex.split(command)[1:])
            assert args.broker.startswith("mqtt")
            parsed += 1
    assert parsed == 2
