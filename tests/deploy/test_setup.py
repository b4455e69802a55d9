"""`relayd setup`: installs config, relay key, trust files and the systemd unit (into a temp dir
here, via the path options), refuses to clobber, and installs a unit systemd accepts."""

from __future__ import annotations

import os
import pwd
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from relayd.core.model import Role
from relayd.daemon.config import load_config
from relayd.install import UNIT_TEMPLATE, render_unit
from relayd.keystore import load_private_key
from relayd.testing.keys import TestNetwork, make_network
from tests.deploy.deploy_support import SYSTEMD_UNIT, find_tool

RELAY = "relay-north"
VENV_RELAYD = Path(sys.executable).parent / "relayd"


@dataclass
class Installed:
    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def unit(self) -> Path:
        return self.root / "units" / "relayd.service"

    @property
    def config(self) -> Path:
        return self.etc / "relayd.toml"

    @property
    def key(self) -> Path:
        return self.state / f"{RELAY}.key"


def setup(network: TestNetwork, target: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`relayd setup` with every path under `target`, as the current user (no system changes)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "relayd",
            "setup",
            "--relay-id",
            RELAY,
            "--root-pub",
            str(network.pub_path("root")),
            "--bundle",
            str(network.bundle_path),
            "--device",
            "tcp://127.0.0.1:4403",
            "--etc",
            str(target / "etc"),
            "--state",
            str(target / "state"),
            "--unit-dir",
            str(target / "units"),
            "--relayd-bin",
            str(VENV_RELAYD),
            "--user",
            pwd.getpwuid(os.geteuid()).pw_name,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def installed(tmp_path: Path, network: TestNetwork) -> Installed:
    result = setup(network, tmp_path / "root")
    assert result.returncode == 0, result.stderr
    return Installed(tmp_path / "root")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_unit_template_is_the_shipped_unit() -> None:
    assert SYSTEMD_UNIT.read_text() == UNIT_TEMPLATE


def test_unit_differs_from_the_shipped_one_only_in_exec_start() -> None:
    rendered = render_unit(Path("/usr/local/bin/relayd"), Path("/srv/relayd.toml")).splitlines()
    shipped = SYSTEMD_UNIT.read_text().splitlines()
    changed = [(a, b) for a, b in zip(shipped, rendered, strict=True) if a != b]
    assert changed == [
        (
            "ExecStart=/opt/relayd/venv/bin/relayd run -c /etc/relayd/relayd.toml",
            "ExecStart=/usr/local/bin/relayd run -c /srv/relayd.toml",
        )
    ]
    default = render_unit(Path("/opt/relayd/venv/bin/relayd"), Path("/etc/relayd/relayd.toml"))
    assert default == SYSTEMD_UNIT.read_text()


def test_setup_installs_a_working_relay_layout(tmp_path: Path, network: TestNetwork) -> None:
    result = setup(network, tmp_path / "root")
    assert result.returncode == 0, result.stderr
    inst = Installed(tmp_path / "root")
    config = load_config(inst.config)
    assert config.relay_id == RELAY
    assert config.key_path == inst.key
    assert config.radios[0].label == "tcp:127.0.0.1:4403"
    assert config.mqtt.username == RELAY
    assert config.mqtt.password  # a fresh random password
    assert (inst.etc / "root.pub").read_bytes() == network.pub_path("root").read_bytes()
    assert (inst.etc / "trust.json").read_bytes() == network.bundle_path.read_bytes()
    # Secrets: the key 0600 in a 0700 state dir, config and password not world-readable.
    assert mode(inst.key) == 0o600
    assert mode(inst.state) == 0o700
    assert mode(inst.config) == 0o640
    assert mode(inst.etc / "mqtt.password") == 0o640
    identity = load_private_key(inst.key)
    assert identity.role is Role.RELAY
    # The admin gets the key id and the .pub path to `relayd trust add`.
    assert f"relay key id: {identity.key_id.hex()}" in result.stdout
    assert f"relay public key: {inst.state / (RELAY + '.pub')}" in result.stdout
    assert "relayd trust add" in result.stdout
    # `relayd check` accepts what setup wrote.
    check = subprocess.run(
        [sys.executable, "-m", "relayd", "check", "-c", str(inst.config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert inst.unit.read_text() == render_unit(VENV_RELAYD, inst.config)


def test_setup_refuses_to_overwrite_and_force_keeps_the_key(
    installed: Installed, network: TestNetwork
) -> None:
    key_before = installed.key.read_bytes()
    config_before = installed.config.read_text()
    again = setup(network, installed.root)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert "--force" in again.stderr
    assert installed.config.read_text() == config_before

    forced = setup(network, installed.root, "--force", "--broker", "mqtt://127.0.0.1:1884")
    assert forced.returncode == 0, forced.stderr
    assert installed.key.read_bytes() == key_before
    assert load_config(installed.config).mqtt.port == 1884
    assert "keep existing relay key" in forced.stdout


def test_dry_run_writes_nothing(tmp_path: Path, network: TestNetwork) -> None:
    result = setup(network, tmp_path / "root", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "root").exists()
    assert re.search(r"would create relay key \S+relay-north\.key \(0600", result.stdout)
    assert "would write" in result.stdout


def test_setup_refuses_a_bundle_from_another_root(tmp_path: Path, network: TestNetwork) -> None:
    other = make_network(tmp_path / "other", {"x": Role.DISPATCHER})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "relayd",
            "setup",
            "--relay-id",
            RELAY,
            "--root-pub",
            str(network.pub_path("root")),
            "--bundle",
            str(other.bundle_path),
            "--etc",
            str(tmp_path / "etc"),
            "--state",
            str(tmp_path / "state"),
            "--unit-dir",
            str(tmp_path / "units"),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "--bundle" in result.stderr
    assert "not by this network's root" in result.stderr


def test_installed_unit_passes_systemd_analyze_verify(installed: Installed) -> None:
    tool = find_tool("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    result = subprocess.run(
        [tool, "verify", str(installed.unit)], capture_output=True, text=True, timeout=30, check=False
    )
    # As in test_systemd_unit.py: verify exits 0 even for ignored lines, so any complaint counts.
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "relayd.service" in line]
    assert result.returncode == 0, result.stderr
    assert ours == []
