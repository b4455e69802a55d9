"""A small asyncio client of the Meshtastic device API (TCP), for probes and the firmware backend.

It speaks the stream framing and the ToRadio/FromRadio protobufs directly (relayd.meshapi), with
no state machine of its own: what the radio sends is queued in arrival order and the caller
decides what to wait for. The differential suite uses it to ask relayd's firmware model and a
real meshtasticd node the same questions; the real-firmware neighborhood uses it to carry each
node's SIMULATOR_APP transmissions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from relayd.meshapi.framing import StreamDecoder, encode_frame
from relayd.meshapi.packets import (
    FromRadio,
    MalformedMessageError,
    MeshPacket,
    from_radio_variant,
    parse_from_radio,
    to_radio_heartbeat,
    to_radio_packet,
    to_radio_want_config,
)

_READ_CHUNK = 4096


class ApiClosedError(ConnectionError):
    """The radio closed the connection (or it was closed locally)."""


class DeviceApiClient:
    """One TCP client connection to a radio's device API.

    ``async with await DeviceApiClient.connect(port) as c: await c.handshake(69420)``
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = StreamDecoder()
        self._inbox: asyncio.Queue[FromRadio | None] = asyncio.Queue()
        self._closed = False
        self.malformed = 0
        self._reader_task = asyncio.create_task(self._read_loop(), name="device-api-reader")

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1", timeout_s: float = 5.0) -> DeviceApiClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        return cls(reader, writer)

    async def __aenter__(self) -> DeviceApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(_READ_CHUNK)
                if not data:
                    break
                for payload in self._decoder.feed(data):
                    try:
                        self._inbox.put_nowait(parse_from_radio(payload))
                    except MalformedMessageError:
                        self.malformed += 1
        except (ConnectionError, OSError):
            pass
        finally:
            self._closed = True
            self._inbox.put_nowait(None)

    # -- sending -----------------------------------------------------------------------------------

    async def send_raw(self, data: bytes) -> None:
        if self._closed:
            raise ApiClosedError("device API connection is closed")
        self._writer.write(data)
        await self._writer.drain()

    async def send(self, to_radio: bytes) -> None:
        """Send one serialized ToRadio."""
        await self.send_raw(encode_frame(to_radio))

    async def send_packet(self, packet: MeshPacket) -> None:
        await self.send(to_radio_packet(packet))

    async def heartbeat(self) -> None:
        await self.send(to_radio_heartbeat())

    # -- receiving ---------------------------------------------------------------------------------

    async def next(self, timeout_s: float = 5.0) -> FromRadio:
        """The next FromRadio; TimeoutError if none within `timeout_s`, ApiClosedError at EOF."""
        msg = await asyncio.wait_for(self._inbox.get(), timeout_s)
        if msg is None:
            self._inbox.put_nowait(None)  # every later call sees the close too
            raise ApiClosedError("device API connection closed by the radio")
        return msg

    async def until(self, match: str | Callable[[FromRadio], bool], timeout_s: float = 5.0) -> FromRadio:
        """Skip messages until one matches (a FromRadio variant name, or a predicate)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        pred: Callable[[FromRadio], bool] = match if callable(match) else _variant_is(match)
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no matching FromRadio within {timeout_s} s")
            msg = await self.next(remaining)
            if pred(msg):
                return msg

    async def collect(self, duration_s: float) -> list[FromRadio]:
        """Everything that arrives within `duration_s` (stops early if the radio closes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration_s
        out: list[FromRadio] = []
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return out
            try:
                out.append(await self.next(remaining))
            except (TimeoutError, ApiClosedError):
                return out

    def drain_nowait(self) -> list[FromRadio]:
        """What has arrived already, without waiting."""
        out: list[FromRadio] = []
        while not self._inbox.empty():
            msg = self._inbox.get_nowait()
            if msg is None:
                self._inbox.put_nowait(None)
                break
            out.append(msg)
        return out

    async def handshake(self, nonce: int, timeout_s: float = 10.0) -> list[FromRadio]:
        """Send want_config_id and return everything up to its config_complete_id."""
        await self.send(to_radio_want_config(nonce))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        got: list[FromRadio] = []
        while True:
            msg = await self.next(max(0.01, deadline - loop.time()))
            got.append(msg)
            if from_radio_variant(msg) == "config_complete_id" and msg.config_complete_id == nonce:
                return got

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader_task
        self._closed = True


def _variant_is(variant: str) -> Callable[[FromRadio], bool]:
    def pred(m: FromRadio) -> bool:
        return from_radio_variant(m) == variant

    return pred


def variants(msgs: list[Any]) -> list[str]:
    """The FromRadio variant names of `msgs`, in order."""
    return [from_radio_variant(m) for m in msgs]
