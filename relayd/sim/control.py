"""Control port: JSON lines over loopback TCP, so out-of-process tests can drive the simulator.

One JSON object per line in, one per line out. Commands (see docs/simulator.md):

    {"cmd": "endpoints"}
    {"cmd": "node_num", "node": "relay-north"}
    {"cmd": "send", "node": "hh-alice", "text": "hi", "channel": 0, "to": "relay-north"}
    {"cmd": "unplug", "node": "relay-north", "for_s": 5}
    {"cmd": "reboot", "node": "relay-north", "down_s": 2}
    {"cmd": "displays", "node": "hh-alice"}
    {"cmd": "stats"}
    {"cmd": "time"}

Replies are ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import asdict
from typing import Any

from relayd.sim.neighborhood import Neighborhood


class ControlError(ValueError):
    """A control command was malformed or named something that does not exist."""


def _decode(line: bytes) -> dict[str, Any]:
    request = json.loads(line)
    if not isinstance(request, dict):
        raise ControlError("request must be a JSON object")
    return request


class ControlServer:
    def __init__(self, hood: Neighborhood, host: str = "127.0.0.1", port: int = 0) -> None:
        self.hood = hood
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = await self.execute(_decode(line))
                except (ControlError, json.JSONDecodeError, KeyError, ValueError, RuntimeError) as exc:
                    reply = {"ok": False, "error": str(exc)}
                writer.write((json.dumps(reply) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _node(self, req: dict[str, Any]) -> str:
        node = req.get("node")
        if not isinstance(node, str) or node not in self.hood.radios:
            raise ControlError(f"unknown node {node!r}")
        return node

    async def execute(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        hood = self.hood
        if cmd == "endpoints":
            return {
                "ok": True,
                "endpoints": {n: {**asdict(e), "role": e.role.value} for n, e in hood.endpoints.items()},
            }
        if cmd == "node_num":
            num = hood.node_num(self._node(req))
            return {"ok": True, "num": num, "node_id": f"!{num:08x}"}
        if cmd == "send":
            node = self._node(req)
            text = req.get("text")
            if not isinstance(text, str):
                raise ControlError("send needs a string 'text'")
            channel = req.get("channel", 0)
            if isinstance(channel, str):
                channel = hood.scenario.channel_index(channel)
            to = req.get("to")
            if to is not None and not isinstance(to, str | int):
                raise ControlError("'to' must be a node name or number")
            packet_id = hood.handheld_send(node, text, channel_index=int(channel), to=to)
            return {"ok": True, "packet_id": packet_id}
        if cmd == "unplug":
            await hood.unplug(self._node(req), float(req.get("for_s", 5.0)))
            return {"ok": True}
        if cmd == "reboot":
            await hood.reboot(self._node(req), float(req.get("down_s", 2.0)))
            return {"ok": True}
        if cmd == "displays":
            return {"ok": True, "displays": [asdict(d) for d in hood.displays(self._node(req))]}
        if cmd == "stats":
            st = hood.stats()
            return {
                "ok": True,
                "stats": {
                    **{k: v for k, v in asdict(st).items() if k != "nodes"},
                    "nodes": {
                        n: {**asdict(ns), "channel_utilization": st.channel_utilization(n)}
                        for n, ns in st.nodes.items()
                    },
                    "displayed": {n: len(r.displays) for n, r in hood.radios.items()},
                },
            }
        if cmd == "time":
            return {"ok": True, "sim_time_s": hood.sim_now_s()}
        raise ControlError(f"unknown cmd {cmd!r}")
