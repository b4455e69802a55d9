"""`relayd demo --headless --json` as a user runs it: a real process, a real scenario, a clean exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


def _session_members(sid: int) -> list[int]:
    """Live processes whose session id is `sid` (from /proc; no psutil)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_headless_demo_delivers_every_alert_once_rejects_forgeries_and_exits_cleanly() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "relayd", "demo", "--headless", "--duration", "20", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # its own session: afterwards, nothing may remain in it
    )
    timeline: list[str] = []
    ready_after: list[float] = []
    children_seen: list[list[int]] = []

    def read_timeline() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            timeline.append(line)
            if "ready in" in line and not ready_after:
                ready_after.append(time.monotonic() - started)
                # Everything runs in one process: the session holds the demo and nothing else.
                children_seen.append([p for p in _session_members(proc.pid) if p != proc.pid])

    out: list[bytes] = []

    def read_summary() -> None:
        assert proc.stdout is not None
        out.append(proc.stdout.read())

    # Not communicate(): it would read stderr too, racing the timeline reader.
    readers = [threading.Thread(target=f, daemon=True) for f in (read_timeline, read_summary)]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    for reader in readers:
        reader.join(timeout=5)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    stdout = b"".join(out)
    log = "\n".join(timeline)
    assert proc.returncode == 0, log
    summary = json.loads(stdout)

    # Every confirmed alert (and update, all-clear) reached every handheld exactly once.
    assert summary["issued_by_kind"].get("alert", 0) >= 2, summary
    assert summary["alerts_issued"] >= 4, summary
    assert summary["reports_received"] == summary["reports_sent"] > 0, summary
    for name, tally in summary["handhelds"].items():
        assert tally["expected"] == summary["alerts_issued"], (name, tally)
        assert tally["exactly_once"] == tally["expected"], (name, tally, log)
        assert tally["duplicates"] == 0, (name, tally)
        assert tally["missing"] == 0, (name, tally)
    assert summary["all_delivered_exactly_once"] is True

    # Every injected forgery was rejected, over MQTT and over the air.
    assert summary["forgeries_injected"] > 0
    assert summary["forgeries_rejected"] == summary["forgeries_injected"], (summary, log)
    assert summary["forgeries_leaked"] == []
    drops = {reason for relay in summary["relays"].values() for reason in relay["drops"]}
    assert {"bad_signature", "unknown_key"} <= drops, summary["relays"]

    # Suppression: about one relay transmits each alert.
    assert summary["on_air_transmissions"] == summary["alerts_issued"], summary
    assert summary["suppressed_transmissions"] > 0
    assert summary["airtime_used_s"] > 0

    # The timeline is narrated from real events.
    assert any("report     from" in line for line in timeline), log
    assert any("transmitted by relay-" in line for line in timeline), log
    assert any("every handheld" in line for line in timeline), log
    assert any("REJECTED" in line for line in timeline), log

    # Startup to ready: in-process figure and from process spawn (interpreter + imports).
    assert summary["startup_to_ready_s"] < 5.0, summary
    assert ready_after, log
    assert ready_after[0] < 5.0, ready_after
    in_process = summary["startup_to_ready_s"]
    print(f"startup to ready: {in_process:.2f} s in-process, {ready_after[0]:.2f} s from spawn")

    # Clean exit: no child ever, and nothing left in its session.
    assert children_seen == [[]], children_seen
    assert _session_members(proc.pid) == []
