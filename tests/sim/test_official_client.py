"""Fidelity: the official `meshtastic` library and CLI against simulated radios."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from meshtastic.serial_interface import SerialInterface
from meshtastic.tcp_interface import TCPInterface
from pubsub import pub

from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import LinkSpec, Role, Scenario, chain_scenario, make_node

VENV_BIN = Path(sys.executable).parent


def serial_scenario() -> Scenario:
    nodes = (make_node("usb", Role.RELAY, pty=True), make_node("hh", Role.HANDHELD))
    return Scenario(name="usb", nodes=nodes, links=(LinkSpec("usb", "hh", 5.0),))


async def test_tcp_interface_finishes_config_and_text_crosses_two_hops() -> None:
    received: list[dict[str, Any]] = []
    arrived = threading.Event()

    def on_text(packet: dict[str, Any], interface: Any) -> None:
        if interface is iface_c[0]:
            received.append(packet)
            arrived.set()

    iface_c: list[Any] = [None]

    async with Neighborhood(chain_scenario(3), time_scale=20) as hood:
        port_a = hood.endpoints["n0"].tcp_port
        port_c = hood.endpoints["n2"].tcp_port

        def run() -> None:
            pub.subscribe(on_text, "meshtastic.receive.text")
            a = c = None
            try:
                a = TCPInterface(hostname="127.0.0.1", portNumber=port_a, timeout=10)
                c = TCPInterface(hostname="127.0.0.1", portNumber=port_c, timeout=10)
                iface_c[0] = c
                assert a.myInfo.my_node_num == hood.node_num("n0")
                assert a.localNode.localConfig.lora.hop_limit == 3
                assert a.localNode.channels[0].settings.name == "alerts"
                assert f"!{hood.node_num('n2'):08x}" in a.nodes
                a.sendText("hello from two hops away")
                assert arrived.wait(15), "text did not arrive"
            finally:
                pub.unsubscribe(on_text, "meshtastic.receive.text")
                for i in (a, c):
                    if i is not None:
                        i.close()

        await asyncio.to_thread(run)
    pkt = received[0]
    assert pkt["decoded"]["text"] == "hello from two hops away"
    assert pkt["fromId"] == f"!{hood.node_num('n0'):08x}"
    assert pkt["hopStart"] == 3
    assert pkt["hopLimit"] == 2


async def test_serial_interface_over_pty_finishes_config() -> None:
    async with Neighborhood(serial_scenario(), time_scale=20) as hood:
        path = hood.endpoints["usb"].pty_path
        assert path is not None
        assert Path(path).is_symlink()  # noqa: ASYNC240 -- a local symlink, instant

        def run() -> tuple[int, int]:
            iface = SerialInterface(devPath=path, timeout=10)
            try:
                iface.sendText("over usb")
                return iface.myInfo.my_node_num, len(iface.nodes)
            finally:
                iface.close()

        num, n_nodes = await asyncio.wait_for(asyncio.to_thread(run), 30)
        assert num == hood.node_num("usb")
        assert n_nodes == 2
        assert await hood.wait_for(lambda: bool(hood.displays("hh")), 10)
        assert hood.displays("hh")[0].text == "over usb"


async def _cli(*args: str, timeout_s: float = 40) -> tuple[int, str]:
    env = {
        **os.environ,
        # `--info` asks PyPI for a newer version; keep tests on loopback (fails fast).
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
    }
    proc = await asyncio.create_subprocess_exec(
        str(VENV_BIN / "meshtastic"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


async def test_meshtastic_cli_info_and_sendtext() -> None:
    async with Neighborhood(chain_scenario(2), time_scale=20) as hood:
        host = f"127.0.0.1:{hood.endpoints['n0'].tcp_port}"
        t0 = time.monotonic()
        rc, out = await _cli("--host", host, "--info")
        assert rc == 0, out
        assert f"!{hood.node_num('n0'):08x}" in out
        assert "alerts" in out
        assert time.monotonic() - t0 < 40
        rc, out = await _cli("--host", host, "--sendtext", "hello")
        assert rc == 0, out
        assert "Sending text message hello" in out
        assert await hood.wait_for(
            lambda: any(p.decoded.payload == b"hello" for p in hood.radio("n1").to_phone), 10
        )


async def test_pty_unplug_removes_device_and_replug_accepts_serial_client() -> None:
    async with Neighborhood(serial_scenario(), time_scale=20) as hood:
        path = hood.endpoints["usb"].pty_path
        assert path is not None
        await hood.unplug("usb", 0.3)
        assert not Path(path).exists()  # noqa: ASYNC240 -- a local symlink, instant
        await asyncio.sleep(0.5)
        assert Path(path).exists()  # noqa: ASYNC240

        def run() -> int:
            iface = SerialInterface(devPath=path, timeout=10)
            try:
                return int(iface.myInfo.my_node_num)
            finally:
                iface.close()

        assert await asyncio.wait_for(asyncio.to_thread(run), 30) == hood.node_num("usb")
