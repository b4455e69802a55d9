"""`relayd sim` as a process: endpoints printed, control port, clean exit with a summary."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

CONFIG = Path(__file__).resolve().parents[2] / "config" / "sim"


async def _request(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, req: dict[str, Any]) -> Any:
    writer.write((json.dumps(req) + "\n").encode())
    await writer.drain()
    return json.loads(await asyncio.wait_for(reader.readline(), 5))


async def test_cli_runs_scenario_with_control_port_and_prints_summary(tmp_path: Path) -> None:
    log = tmp_path / "hh.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relayd.sim.cli",
        str(CONFIG / "neighborhood.toml"),
        "--time-scale",
        "50",
        "--handheld-log",
        str(log),
        "--summary",
        "--control-port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        lines = []
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
            assert line, "simulator exited early"
            lines.append(line)
            if line.strip() == "ready":
                break
        banner = "".join(lines)
        for relay in ("relay-north", "relay-center", "relay-south"):
            assert relay in banner
        assert "tcp 127.0.0.1:" in banner
        control_port = int(next(ln for ln in lines if "control port" in ln).rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", control_port)
        try:
            eps = await _request(writer, reader, {"cmd": "endpoints"})
            assert eps["ok"]
            assert eps["endpoints"]["relay-north"]["tcp_port"] > 0
            sent = await _request(
                writer, reader, {"cmd": "send", "node": "hh-alice", "text": "\x07fire on 3rd"}
            )
            assert sent["ok"]
            assert sent["packet_id"] > 0
            bad = await _request(writer, reader, {"cmd": "send", "node": "nobody", "text": "x"})
            assert not bad["ok"]
            assert "nobody" in bad["error"]
            for _ in range(100):
                shown = await _request(writer, reader, {"cmd": "displays", "node": "hh-bob"})
                if shown["displays"]:
                    break
                await asyncio.sleep(0.05)
            assert shown["displays"][0]["text"] == "\x07fire on 3rd"
            assert shown["displays"][0]["bell"] is True
            stats = await _request(writer, reader, {"cmd": "stats"})
            assert stats["stats"]["frames_sent"] >= 1
            assert (await _request(writer, reader, {"cmd": "unplug", "node": "relay-north", "for_s": 0.2}))[
                "ok"
            ]
        finally:
            writer.close()
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0, err.decode()
        summary = out.decode()
        assert "frames sent" in summary
        assert "collisions" in summary
        assert "hh-bob" in summary
        assert any(json.loads(x)["handheld"] == "hh-bob" for x in log.read_text().splitlines())
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_rejects_malformed_scenario(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[nodes]]\nname = "a"\nrole = "router"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relayd.sim.cli", str(bad), stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 2
    assert "nodes[0].role" in err.decode()
