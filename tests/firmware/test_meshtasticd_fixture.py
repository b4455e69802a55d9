"""The meshtasticd fixture itself: loopback only, fresh state, stopped by PID, CI never skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from relayd.sim.apiclient import DeviceApiClient
from relayd.testing.meshtasticd import ENV_BINARY, MeshtasticdNode, _listening, meshtasticd_binary
from tests.firmware.conftest import require_meshtasticd


def test_node_listens_on_loopback_only_and_stops_by_pid(tmp_path: Path) -> None:
    require_meshtasticd()
    node = MeshtasticdNode(tmp_path / "state")
    with node:
        pid = node.pid
        assert pid is not None
        assert _listening(node.port)
        out = subprocess.run(
            ["ss", "-ltnH", f"sport = :{node.port}"], check=False, capture_output=True, text=True
        )
        if out.returncode == 0:
            assert out.stdout.strip()
            assert all("127.0.0.1:" in line for line in out.stdout.strip().splitlines())
    assert not node.running
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert not _listening(node.port)
    # The log is kept beside the state folder, not in it (the firmware lists that folder's files).
    assert "API server listen on TCP port" in node.log_file.read_text(errors="replace")
    assert node.log_file.parent == tmp_path


async def test_firmware_reports_its_version(fw_node: MeshtasticdNode) -> None:
    async with await DeviceApiClient.connect(fw_node.port) as c:
        msgs = await c.handshake(69420)
    md = next(m.metadata for m in msgs if m.HasField("metadata"))
    assert md.firmware_version == "2.8.0"


def test_absent_binary_skips_locally_and_fails_under_ci(tmp_path: Path) -> None:
    """Runs the check in a child pytest so that both outcomes can be observed."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "from tests.firmware.conftest import require_meshtasticd\n"
        "def test_needs_firmware():\n    require_meshtasticd()\n"
    )
    repo = Path(__file__).resolve().parents[2]
    base = {**os.environ, ENV_BINARY: str(tmp_path / "no-such-meshtasticd"), "PYTHONPATH": str(repo)}
    results = {}
    for ci in ("", "true"):
        env = {**base, "CI": ci}
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(probe)],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            cwd=repo,
            timeout=60,
        )
        results[ci] = r
    assert results[""].returncode == 0, results[""].stdout
    assert "1 skipped" in results[""].stdout
    assert "pio run -e native" in results[""].stdout
    assert results["true"].returncode == 1, results["true"].stdout
    assert "1 failed" in results["true"].stdout
    assert "CI=true" in results["true"].stdout


def test_binary_lookup_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "meshtasticd"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv(ENV_BINARY, str(fake))
    assert meshtasticd_binary() == fake
