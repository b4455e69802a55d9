"""`relayd sim --firmware PATH`: a scenario on real meshtasticd nodes from the command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from relayd.testing.meshtasticd import _listening
from tests.firmware.conftest import require_meshtasticd


def test_cli_runs_a_scenario_on_real_firmware_and_stops_every_node(tmp_path: Path) -> None:
    binary = require_meshtasticd()
    scenario = tmp_path / "two.toml"
    scenario.write_text(
        'name = "two"\n[[nodes]]\nname = "relay"\nrole = "relay"\n'
        '[[nodes]]\nname = "hh"\n[[links]]\na = "relay"\nb = "hh"\n'
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "relayd.sim.cli", str(scenario), "--firmware", str(binary), "--summary"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    out: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if line.strip() == "ready":
                break
        text = "".join(out)
        assert "ready" in text, text
        ports = [int(w.split(":")[1]) for w in text.split() if w.startswith("127.0.0.1:")]
        assert len(ports) == 1
        assert _listening(ports[0])
        node_pids = _meshtasticd_children(proc.pid)
        assert len(node_pids) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest
    assert "frames sent" in rest
    for pid in node_pids:
        assert not Path(f"/proc/{pid}").exists()


def _meshtasticd_children(ppid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError):
            continue
        if parent == ppid and comm.startswith("meshtasticd"):
            out.append(int(entry.name))
    return out
