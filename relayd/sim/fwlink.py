"""The backend's connection to one meshtasticd node, and a relay radio's pass-through API.

A SimRadio node hands every frame it transmits to its one API client as a SIMULATOR_APP packet
(see relayd.sim.fwbackend). `NodeLink` is that client: it reads those frames for the medium,
writes the frames the node hears, and sends the node admin messages. `PassThrough` lets a relay
daemon share a node's link: the daemon sees what a real radio would send it, never the
SIMULATOR_APP copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError
from meshtastic.protobuf import mesh_pb2, portnums_pb2

from relayd.meshapi.framing import StreamDecoder, encode_frame
from relayd.meshapi.packets import (
    ADMIN_APP,
    ROUTING_APP,
    MalformedMessageError,
    from_radio_variant,
    parse_from_radio,
    to_radio_heartbeat,
    to_radio_packet,
    to_radio_want_config,
)
from relayd.sim.firmware import MAX_RX_TOPHONE, NONCE_ONLY_CONFIG
from relayd.sim.medium import AirPacket
from relayd.testing.meshtasticd import LOOPBACK

log = logging.getLogger(__name__)

SIMULATOR_APP: int = portnums_pb2.PortNum.SIMULATOR_APP
# The firmware drops an API client it has not heard from for 15 minutes; the backend's own links
# send a heartbeat well inside that.
LINK_HEARTBEAT_S = 120.0
ADMIN_REPLY_TIMEOUT_S = 5.0
_READ_CHUNK = 4096
# A link SNR of exactly 0 would make an injected frame look locally generated to the firmware.
_MIN_ABS_SNR = 0.25


class NodeLink:
    """The backend's client connection to one node: reads its frames, writes injected ones.

    FromRadio frames other than SIMULATOR_APP go to `on_frame` (a relay's pass-through client, or
    a handheld's screen)."""

    def __init__(self, name: str, port: int, on_air: Callable[[str, Any], None]) -> None:
        self.name = name
        self.port = port
        self.num = 0
        self._on_air = on_air
        self.on_frame: Callable[[bytes, Any], None] = lambda raw, msg: None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0x1000
        self._held_status: tuple[bytes, Any] | None = None
        self._held_timer: asyncio.TimerHandle | None = None

    async def open(self) -> list[Any]:
        """Connect, run the handshake (config only) and start reading. Returns the handshake."""
        self._reader, self._writer = await asyncio.open_connection(LOOPBACK, self.port)
        self._writer.write(encode_frame(to_radio_want_config(NONCE_ONLY_CONFIG)))
        await self._writer.drain()
        decoder = StreamDecoder()
        got: list[Any] = []
        after: list[tuple[bytes, Any]] = []  # frames that came in the same read after the handshake
        deadline = time.monotonic() + 10.0
        while True:
            data = await asyncio.wait_for(
                self._reader.read(_READ_CHUNK), max(0.1, deadline - time.monotonic())
            )
            if not data:
                raise ConnectionError(f"{self.name}: firmware closed the API during the handshake")
            for payload in decoder.feed(data):
                with contextlib.suppress(MalformedMessageError):
                    msg = parse_from_radio(payload)
                    if got and from_radio_variant(got[-1]) == "config_complete_id":
                        after.append((payload, msg))
                    else:
                        got.append(msg)
            if got and from_radio_variant(got[-1]) == "config_complete_id":
                break
        self.num = int(next(m.my_info.my_node_num for m in got if m.HasField("my_info")))
        self._task = asyncio.create_task(self._read_loop(self._reader, decoder), name=f"fw-link-{self.name}")
        self._heartbeat = asyncio.create_task(self._keepalive(), name=f"fw-heartbeat-{self.name}")
        for payload, msg in after:
            self._dispatch(payload, msg)
        return got

    async def wait_closed(self, timeout_s: float) -> bool:
        """Wait for the firmware to close the link (a reboot); True if it did."""
        if self._task is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        for t in (self._task, self._heartbeat):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 2.0)

    def write(self, data: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    def inject(self, air: AirPacket, snr_db: float, rssi_dbm: int) -> None:
        """A frame this node hears, handed to its firmware as if its LoRa chip had received it."""
        p = mesh_pb2.MeshPacket()
        setattr(p, "from", air.from_num)
        p.to = air.to_num
        p.id = air.packet_id
        p.channel = air.channel_index
        p.hop_limit = air.hop_limit
        p.hop_start = air.hop_start
        p.want_ack = air.want_ack
        p.relay_node = air.relay_node
        p.rx_snr = snr_db if abs(snr_db) >= _MIN_ABS_SNR else _MIN_ABS_SNR
        p.rx_rssi = rssi_dbm or -100
        p.decoded.portnum = SIMULATOR_APP
        p.decoded.payload = air.data
        self.write(encode_frame(to_radio_packet(p)))

    async def admin(self, msg: Any, *, want_response: bool = False) -> Any:
        """One admin message to the node itself; waits for its ACK (or response)."""
        self._next_id += 1
        p = mesh_pb2.MeshPacket()
        p.to = self.num
        setattr(p, "from", self.num)
        p.id = self._next_id
        p.want_ack = True
        p.decoded.portnum = ADMIN_APP
        p.decoded.payload = msg.SerializeToString()
        p.decoded.want_response = want_response
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[p.id] = fut
        self.write(encode_frame(to_radio_packet(p)))
        try:
            return await asyncio.wait_for(fut, ADMIN_REPLY_TIMEOUT_S)
        finally:
            self._replies.pop(p.id, None)

    def _release_status(self) -> None:
        held, self._held_status = self._held_status, None
        self._held_timer = None
        if held is not None:
            self.on_frame(encode_frame(held[0]), held[1])

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(LINK_HEARTBEAT_S)
            self.write(encode_frame(to_radio_heartbeat()))

    async def _read_loop(self, reader: asyncio.StreamReader, decoder: StreamDecoder) -> None:
        try:
            while True:
                data = await reader.read(_READ_CHUNK)
                if not data:
                    log.info("%s: firmware closed the API link", self.name)
                    return
                for payload in decoder.feed(data):
                    try:
                        msg = parse_from_radio(payload)
                    except MalformedMessageError:
                        continue
                    self._dispatch(payload, msg)
        except (ConnectionError, OSError):
            log.warning("%s: API link lost", self.name)

    def _dispatch(self, payload: bytes, msg: Any) -> None:
        # SimRadio::startSend reports a queueStatus right before each frame it hands over as
        # SIMULATOR_APP; a LoRa chip does not, so that report is held back until the next frame
        # shows whether it was one (then it is dropped) and clients see what real radios send.
        held, self._held_status = self._held_status, None
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        is_frame = from_radio_variant(msg) == "packet" and msg.packet.decoded.portnum == SIMULATOR_APP
        if held is not None and not (is_frame and held[1].queueStatus.mesh_packet_id == msg.packet.id):
            self.on_frame(encode_frame(held[0]), held[1])
        if from_radio_variant(msg) == "queueStatus" and msg.queueStatus.mesh_packet_id:
            self._held_status = (payload, msg)
            self._held_timer = asyncio.get_running_loop().call_later(0.05, self._release_status)
            return
        if from_radio_variant(msg) == "packet":
            p = msg.packet
            if p.decoded.portnum == SIMULATOR_APP:
                self._on_air(self.name, p)
                return
            req = p.decoded.request_id
            if req in self._replies and p.decoded.portnum in (ROUTING_APP, ADMIN_APP):
                fut = self._replies.pop(req)
                if not fut.done():
                    fut.set_result(msg)
                return
        self.on_frame(encode_frame(payload), msg)


class PassThrough:
    """A relay radio's API for its client: a loopback TCP server multiplexed onto the node's link.

    One client at a time, as on a real radio: a new connection closes the previous one, and so
    does the client's ToRadio.disconnect (which is not passed on: the node's one API connection is
    the backend's link). Bytes outside a frame (a serial wake burst) are not passed on either. While no
    client is connected, packets the radio delivers wait (up to MAX_RX_TOPHONE) and are handed to
    the next client after its handshake, as a real radio replays its to-phone queue."""

    def __init__(self, link: NodeLink, port: int = 0) -> None:
        self.link = link
        self.port = port
        self._server: asyncio.Server | None = None
        self._client: asyncio.StreamWriter | None = None
        self._backlog: deque[bytes] = deque(maxlen=MAX_RX_TOPHONE)
        self._replaying = False
        self._tasks: set[asyncio.Task[None]] = set()
        link.on_frame = self._from_radio

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, LOOPBACK, self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._client is not None:
            self._client.close()
        for t in list(self._tasks):
            t.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def _from_radio(self, frame: bytes, msg: Any) -> None:
        client = self._client
        if client is None or client.is_closing():
            if from_radio_variant(msg) == "packet":
                self._backlog.append(frame)
            return
        client.write(frame)
        if from_radio_variant(msg) == "config_complete_id" and self._backlog:
            while self._backlog:
                client.write(self._backlog.popleft())

    def _to_radio(self, payload: bytes) -> bool:
        """Forward one client frame to the node; False for the client's disconnect."""
        with contextlib.suppress(DecodeError):
            if mesh_pb2.ToRadio.FromString(payload).WhichOneof("payload_variant") == "disconnect":
                return False
        self.link.write(encode_frame(payload))
        return True

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        if self._client is not None:
            self._client.close()
        self._client = writer
        decoder = StreamDecoder()
        try:
            while True:
                data = await reader.read(_READ_CHUNK)
                if not data:
                    break
                # Frame by frame, so that the client's goodbye ends only its own session: the
                # firmware answers ToRadio.disconnect by closing its API socket, which is the
                # backend's link (the medium's too), not the client's.
                if any(not self._to_radio(payload) for payload in decoder.feed(data)):
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if self._client is writer:
                self._client = None
            writer.close()
            if task is not None:
                self._tasks.discard(task)


def is_simulator_frame(msg: Any) -> bool:
    return from_radio_variant(msg) == "packet" and msg.packet.decoded.portnum == SIMULATOR_APP


__all__ = ["SIMULATOR_APP", "NodeLink", "PassThrough", "is_simulator_frame"]
