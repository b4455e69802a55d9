"""hardware/apply-profile.sh, run against a stand-in `meshtastic` CLI that records its calls."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.deploy_support import APPLY_PROFILE, PROFILES_DIR, find_tool

PROFILE = PROFILES_DIR / "relay-node.yaml"

# Records argv as one JSON line per call; exits 1 when an argument equals $FAKE_FAIL_ON.
_FAKE_CLI = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit(1 if os.environ.get("FAKE_FAIL_ON") in sys.argv[1:] else 0)
"""


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[list[str]]


@pytest.fixture
def fake_radio(tmp_path: Path) -> Path:
    """A file standing in for the serial device, so the script's existence check passes."""
    device = tmp_path / "meshradio"
    device.touch()
    return device


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    cli = tmp_path / "meshtastic"
    cli.write_text(_FAKE_CLI)
    cli.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MESHTASTIC": str(cli),
        "FAKE_LOG": str(log),
        "RELAYD_APPLY_REBOOT_WAIT_S": "0",
        "RELAYD_APPLY_RETRY_DELAY_S": "0",
        **(env or {}),
    }
    result = subprocess.run(
        ["bash", str(APPLY_PROFILE), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=30,
        check=False,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return Run(result.returncode, result.stdout, result.stderr, calls)


def test_without_arguments_prints_usage_and_exits_2(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert run.returncode == 2
    assert "no PROFILE given" in run.stderr
    assert run.calls == []


def test_help_describes_the_channels_and_key_variables(tmp_path: Path) -> None:
    run = _run(tmp_path, "--help")
    assert run.returncode == 0
    for expected in ("Usage:", "RELAYD_ALERTS_PSK", "RELAYD_REPORTS_PSK", "--generate-psk", "/dev/meshradio"):
        assert expected in run.stdout


def test_refuses_to_run_without_channel_keys(tmp_path: Path, fake_radio: Path) -> None:
    run = _run(tmp_path, "--port", str(fake_radio), str(PROFILE))
    assert run.returncode == 1
    assert "RELAYD_ALERTS_PSK is not set" in run.stderr
    assert run.calls == []


@pytest.mark.parametrize("bad_key", ["CHANGE-ME", "AQ==", base64.b64encode(b"x" * 31).decode()])
def test_rejects_a_placeholder_or_wrong_length_key(tmp_path: Path, fake_radio: Path, bad_key: str) -> None:
    env = {"RELAYD_ALERTS_PSK": bad_key, "RELAYD_REPORTS_PSK": _key()}
    run = _run(tmp_path, "--port", str(fake_radio), str(PROFILE), env=env)
    assert run.returncode == 1
    assert "not a base64-encoded 16- or 32-byte key" in run.stderr
    assert run.calls == []


def test_missing_device_gets_a_clear_error(tmp_path: Path) -> None:
    env = {"RELAYD_ALERTS_PSK": _key(), "RELAYD_REPORTS_PSK": _key()}
    run = _run(tmp_path, "--port", str(tmp_path / "nope"), str(PROFILE), env=env)
    assert run.returncode == 1
    assert "no such device" in run.stderr
    assert run.calls == []


def test_configures_then_sets_both_channels(tmp_path: Path, fake_radio: Path) -> None:
    alerts, reports = _key(), _key()
    env = {"RELAYD_ALERTS_PSK": alerts, "RELAYD_REPORTS_PSK": reports}
    run = _run(tmp_path, "--port", str(fake_radio), str(PROFILE), env=env)
    assert run.returncode == 0, run.stderr
    port = ["--port", str(fake_radio)]
    assert run.calls == [
        [*port, "--configure", str(PROFILE)],
        [*port, "--ch-index", "0", "--ch-set", "name", "alerts", "--ch-set", "psk", f"base64:{alerts}",
         "--ch-set", "module_settings.position_precision", "0"],
        [*port, "--ch-index", "1", "--ch-set", "name", "reports", "--ch-set", "psk", f"base64:{reports}",
         "--ch-set", "module_settings.position_precision", "0"],
    ]  # fmt: skip
    # The keys are never echoed back.
    assert alerts not in run.stdout + run.stderr
    assert reports not in run.stdout + run.stderr


def test_tcp_radio_is_addressed_by_host(tmp_path: Path) -> None:
    env = {"RELAYD_ALERTS_PSK": _key(), "RELAYD_REPORTS_PSK": _key()}
    run = _run(tmp_path, "--host", "192.0.2.10", str(PROFILE), env=env)
    assert run.returncode == 0, run.stderr
    assert all(call[:2] == ["--host", "192.0.2.10"] for call in run.calls)


def test_generates_fresh_32_byte_keys_only_when_asked(tmp_path: Path, fake_radio: Path) -> None:
    if find_tool("openssl") is None:
        pytest.skip("openssl is not installed")
    run = _run(tmp_path, "--generate-psk", "--port", str(fake_radio), str(PROFILE))
    assert run.returncode == 0, run.stderr
    keys = [call[call.index("psk") + 1].removeprefix("base64:") for call in run.calls if "psk" in call]
    assert len(keys) == 2
    assert keys[0] != keys[1]
    assert all(len(base64.b64decode(key, validate=True)) == 32 for key in keys)
    # Shown once so the operator can give them to the network's other radios.
    assert all("export RELAYD_" in run.stderr and key in run.stderr for key in keys)


def test_stops_when_configure_fails(tmp_path: Path, fake_radio: Path) -> None:
    env = {"RELAYD_ALERTS_PSK": _key(), "RELAYD_REPORTS_PSK": _key(), "FAKE_FAIL_ON": "--configure"}
    run = _run(tmp_path, "--port", str(fake_radio), str(PROFILE), env=env)
    assert run.returncode == 1
    assert "--configure" in run.stderr
    assert len(run.calls) == 1


def test_retries_channel_setup_while_the_radio_reboots_then_gives_up(
    tmp_path: Path, fake_radio: Path
) -> None:
    env = {"RELAYD_ALERTS_PSK": _key(), "RELAYD_REPORTS_PSK": _key(), "FAKE_FAIL_ON": "--ch-index"}
    run = _run(tmp_path, "--port", str(fake_radio), str(PROFILE), env=env)
    assert run.returncode == 1
    assert 'could not set channel 0 "alerts"' in run.stderr
    assert sum("--ch-index" in call for call in run.calls) == 6


def test_dry_run_prints_commands_with_keys_masked(tmp_path: Path) -> None:
    alerts = _key()
    env = {"RELAYD_ALERTS_PSK": alerts, "RELAYD_REPORTS_PSK": _key()}
    run = _run(tmp_path, "--dry-run", str(PROFILE), env=env)
    assert run.returncode == 0, run.stderr
    assert run.calls == []
    assert "--configure" in run.stdout
    assert "base64:<secret>" in run.stdout
    assert alerts not in run.stdout + run.stderr


def test_script_passes_shellcheck() -> None:
    shellcheck = find_tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(
        [shellcheck, str(APPLY_PROFILE)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout
