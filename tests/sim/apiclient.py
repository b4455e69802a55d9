"""A minimal asyncio device-API client for tests (speaks framing + protobufs directly)."""

from __future__ import annotations

import asyncio
from typing import Any

from relayd.meshapi.framing import StreamDecoder, encode_frame
from relayd.meshapi.packets import parse_from_radio, to_radio_want_config


class ApiClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = StreamDecoder()
        self.inbox: list[Any] = []

    @classmethod
    async def connect(cls, port: int) -> ApiClient:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, to_radio: bytes) -> None:
        await self.send_raw(encode_frame(to_radio))

    async def next(self, timeout_s: float = 5.0) -> Any:
        while not self.inbox:
            data = await asyncio.wait_for(self.reader.read(4096), timeout_s)
            if not data:
                raise ConnectionError("closed")
            self.inbox.extend(parse_from_radio(p) for p in self.decoder.feed(data))
        return self.inbox.pop(0)

    async def until(self, variant: str, timeout_s: float = 5.0) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            msg = await self.next(max(0.01, deadline - loop.time()))
            if msg.WhichOneof("payload_variant") == variant:
                return msg

    async def handshake(self, nonce: int = 42) -> list[Any]:
        await self.send(to_radio_want_config(nonce))
        got = []
        while True:
            msg = await self.next()
            got.append(msg)
            if msg.WhichOneof("payload_variant") == "config_complete_id":
                assert msg.config_complete_id == nonce
                return got

    async def close(self) -> None:
        self.writer.close()
