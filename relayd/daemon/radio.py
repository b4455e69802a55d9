"""The radio link: an asyncio-native client of the Meshtastic device API (serial or TCP).

Why not the official threaded interface (design brief §6): it has no reconnect after a USB
unplug, half-reconnects over TCP and can register duplicate listeners. This link speaks the
framing and protobufs directly and, across reconnects:

* reconnects by itself with jittered exponential backoff (unplug, reboot, TCP reset);
* skips the backlog the radio replays on connect (packets received before we connected);
* never delivers the same (from, id) packet twice;
* gives every send attempt a fresh packet id unless the caller pins one (the in-doubt
  resend after a crash reuses the write-ahead id so the mesh drops it if it went out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from meshtastic.protobuf import mesh_pb2

from relayd.core.status import LinkState
from relayd.daemon.config import RadioConfig
from relayd.daemon.linkstate import LinkStateTracker
from relayd.meshapi.framing import StreamDecoder, encode_frame
from relayd.meshapi.packets import (
    BROADCAST_NUM,
    ROUTING_APP,
    TEXT_MESSAGE_APP,
    FromRadio,
    MalformedMessageError,
    MeshPacket,
    from_radio_variant,
    node_id,
    parse_from_radio,
    text_packet,
    to_radio_heartbeat,
    to_radio_packet,
    to_radio_want_config,
)

log = logging.getLogger("relayd.radio")

HANDSHAKE_TIMEOUT_S = 15.0
SEND_CONFIRM_TIMEOUT_S = 5.0
# The firmware drops an API client that stays silent for 15 minutes; the official client
# sends a heartbeat every 5 minutes. We send one a minute so a dead TCP link shows sooner.
HEARTBEAT_INTERVAL_S = 60.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
# A packet whose rx_time is older than our connection by more than this is backlog.
BACKLOG_GRACE_S = 2.0
SEEN_PACKETS_MAX = 4096


class RadioUnavailableError(Exception):
    """The radio is not connected (or dropped while sending)."""


class SendRejectedError(Exception):
    """The radio refused a packet (queue full, too large, rate limited)."""

    def __init__(self, packet_id: int, code: int) -> None:
        super().__init__(f"radio rejected packet {packet_id:#x} (code {code})")
        self.packet_id = packet_id
        self.code = code


@dataclass(frozen=True, slots=True)
class ReceivedText:
    radio: str
    from_node: int
    to_node: int
    packet_id: int
    channel: int
    payload: bytes
    rx_time_s: float
    hop_start: int
    hop_limit: int

    @property
    def is_direct(self) -> bool:
        return self.to_node != BROADCAST_NUM

    @property
    def from_id(self) -> str:
        return node_id(self.from_node)


class _Transport:
    async def read(self) -> bytes:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _TcpTransport(_Transport):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self) -> bytes:
        data = await self.reader.read(4096)
        if not data:
            raise ConnectionResetError("radio closed the TCP connection")
        return data

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()


class _SerialTransport(_Transport):
    """A tty (USB serial radio, or the simulator's pty) driven by the event loop's reader."""

    def __init__(self, device: str) -> None:
        import serial  # noqa: PLC0415 - pyserial only when a serial radio is configured

        try:
            self._serial = serial.Serial(device, baudrate=115200, timeout=0, write_timeout=0, exclusive=True)
        except serial.SerialException as exc:
            raise ConnectionError(f"cannot open {device}: {exc}") from exc
        self._fd: int = self._serial.fileno()
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._queue.put_nowait(None)
        else:
            self._queue.put_nowait(data)

    async def read(self) -> bytes:
        data = await self._queue.get()
        if data is None:
            raise ConnectionResetError("serial radio went away (unplugged?)")
        return data

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + 2.0
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                raise ConnectionResetError(f"serial write failed: {exc.strerror}") from exc
            view = view[n:]
            if view:
                if time.monotonic() > deadline:
                    raise ConnectionResetError("serial write stalled")
                await asyncio.sleep(0.005)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._fd)
        with contextlib.suppress(OSError):
            self._serial.close()


class RadioLink(LinkStateTracker):
    """One radio. `run()` keeps it connected forever; `send_text()` transmits."""

    def __init__(
        self,
        config: RadioConfig,
        on_text: Callable[[ReceivedText], None],
        on_state: Callable[[LinkStateTracker], None] | None = None,
        *,
        rng: random.Random | None = None,
        on_send_error: Callable[[int, int], None] | None = None,
    ) -> None:
        super().__init__(on_state)
        self._on_send_error = on_send_error
        self.config = config
        self.name = config.name
        self._on_text = on_text
        self._rng = rng or random.Random()
        self._transport: _Transport | None = None
        self._send_lock = asyncio.Lock()
        self._confirmations: dict[int, asyncio.Future[int]] = {}
        self._seen: OrderedDict[tuple[int, int], None] = OrderedDict()
        self.my_node: int | None = None
        self.connected_at_s: float = 0.0
        self.connects = 0
        self.skipped_backlog = 0
        self.duplicate_packets = 0
        self.malformed_frames = 0
        self.last_error: str | None = None
        # Free slots in the radio's transmit queue, from its last QueueStatus (None: unknown).
        self.tx_queue_free: int | None = None

    async def _open(self) -> _Transport:
        if self.config.kind == "tcp":
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.config.host, self.config.port), HANDSHAKE_TIMEOUT_S
            )
            return _TcpTransport(reader, writer)
        return _SerialTransport(self.config.device)

    async def run(self) -> None:
        backoff = BACKOFF_INITIAL_S
        while True:
            self._set_state(LinkState.CONNECTING)
            try:
                transport = await self._open()
            except (OSError, TimeoutError) as exc:
                self._fail(f"cannot connect to {self.config.label}: {exc}")
            else:
                try:
                    await self._session(transport)
                    backoff = BACKOFF_INITIAL_S
                except (OSError, TimeoutError, ConnectionError) as exc:
                    self._fail(f"radio {self.name} link lost: {exc}")
                    if self.connected_at_s and time.time() - self.connected_at_s > 10:
                        backoff = BACKOFF_INITIAL_S
                finally:
                    await self._teardown(transport)
            # Jittered exponential backoff: relays that lost power together must not
            # hammer a shared TCP radio in lockstep.
            await asyncio.sleep(backoff * self._rng.uniform(0.5, 1.5))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _fail(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message
        self._set_state(LinkState.DISCONNECTED)

    async def _teardown(self, transport: _Transport) -> None:
        self._transport = None
        for fut in self._confirmations.values():
            if not fut.done():
                fut.set_exception(RadioUnavailableError("radio link dropped"))
        self._confirmations.clear()
        await transport.close()
        self._set_state(LinkState.DISCONNECTED)

    async def _session(self, transport: _Transport) -> None:
        decoder = StreamDecoder()
        nonce = self._rng.randrange(1, 2**32)
        await transport.write(encode_frame(to_radio_want_config(nonce)))
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
        complete = False
        while not complete:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("radio did not finish the config handshake")
            data = await asyncio.wait_for(transport.read(), remaining)
            for frame in decoder.feed(data):
                msg = self._parse(frame)
                if msg is None:
                    continue
                variant = from_radio_variant(msg)
                if variant == "my_info":
                    self.my_node = int(msg.my_info.my_node_num)
                elif variant == "config_complete_id" and int(msg.config_complete_id) == nonce:
                    complete = True
                elif variant == "packet":
                    # Backlog delivered during the handshake: never ours to relay.
                    self.skipped_backlog += 1
        self._transport = transport
        self.connected_at_s = time.time()
        self.connects += 1
        self.last_error = None
        self._set_state(LinkState.CONNECTED)
        log.info("radio %s connected (%s, node %s)", self.name, self.config.label, node_id(self.my_node or 0))
        heartbeat = asyncio.create_task(self._heartbeat(transport), name=f"radio-{self.name}-heartbeat")
        try:
            while True:
                data = await transport.read()
                for frame in decoder.feed(data):
                    msg = self._parse(frame)
                    if msg is not None:
                        self._dispatch(msg)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, transport: _Transport) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)
            with contextlib.suppress(OSError, ConnectionError):
                await transport.write(encode_frame(to_radio_heartbeat()))

    def _parse(self, frame: bytes) -> FromRadio | None:
        try:
            return parse_from_radio(frame)
        except MalformedMessageError:
            self.malformed_frames += 1
            return None

    def _dispatch(self, msg: FromRadio) -> None:
        variant = from_radio_variant(msg)
        if variant == "queueStatus":
            qs = msg.queueStatus
            self.tx_queue_free = int(qs.free)
            fut = self._confirmations.pop(int(qs.mesh_packet_id), None)
            if fut is not None and not fut.done():
                fut.set_result(int(qs.res))
        elif variant == "rebooted":
            raise ConnectionResetError("radio rebooted")
        elif variant == "packet":
            self._on_packet(msg.packet)

    def _on_packet(self, p: MeshPacket) -> None:
        if not p.HasField("decoded"):
            return  # encrypted for a channel we do not have: nothing to read
        portnum = int(p.decoded.portnum)
        if portnum == ROUTING_APP:
            self._on_routing(p)
            return
        if portnum != TEXT_MESSAGE_APP:
            return
        key = (int(getattr(p, "from")), int(p.id))
        if key in self._seen:
            self.duplicate_packets += 1
            return
        self._seen[key] = None
        if len(self._seen) > SEEN_PACKETS_MAX:
            self._seen.popitem(last=False)
        rx_time = float(p.rx_time) or time.time()
        if rx_time < self.connected_at_s - BACKLOG_GRACE_S:
            self.skipped_backlog += 1
            return
        self._on_text(
            ReceivedText(
                radio=self.name,
                from_node=key[0],
                to_node=int(p.to),
                packet_id=key[1],
                channel=int(p.channel),
                payload=bytes(p.decoded.payload),
                rx_time_s=rx_time,
                hop_start=int(p.hop_start),
                hop_limit=int(p.hop_limit),
            )
        )

    def _on_routing(self, p: MeshPacket) -> None:
        """A Routing error about one of our packets: it was NOT sent, whatever the queue
        status said. The firmware answers a text sent within 2 s of the previous one with
        QueueStatus res 0 *and* Routing RATE_LIMIT_EXCEEDED (PhoneAPI::handleToRadioPacket)."""
        request_id = int(p.decoded.request_id)
        if not request_id or self._on_send_error is None:
            return
        routing = mesh_pb2.Routing()
        try:
            routing.ParseFromString(bytes(p.decoded.payload))
        except DecodeError:
            self.malformed_frames += 1
            return
        error = int(routing.error_reason)
        if error != 0:
            self._on_send_error(request_id, error)

    def fresh_packet_id(self) -> int:
        return self._rng.randrange(1, 2**32)

    async def send_text(
        self, text: str, *, to: int = BROADCAST_NUM, channel: int = 0, packet_id: int | None = None
    ) -> int:
        """Hand one text frame to the radio and wait for its queue confirmation.

        Returns the packet id. Raises RadioUnavailableError if the link is down or drops,
        SendRejectedError if the radio refuses the packet.
        """
        async with self._send_lock:
            transport = self._transport
            if transport is None or not self.connected:
                raise RadioUnavailableError(f"radio {self.name} is not connected")
            pid = packet_id if packet_id is not None else self.fresh_packet_id()
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._confirmations[pid] = fut
            pkt = text_packet(text, to=to, channel_index=channel, packet_id=pid)
            try:
                await transport.write(encode_frame(to_radio_packet(pkt)))
            except (OSError, ConnectionError) as exc:
                self._confirmations.pop(pid, None)
                raise RadioUnavailableError(f"radio {self.name} write failed: {exc}") from exc
            try:
                code = await asyncio.wait_for(fut, SEND_CONFIRM_TIMEOUT_S)
            except TimeoutError:
                # Older firmware sends no queue status: assume it went out rather than
                # risk a duplicate on every handheld.
                self._confirmations.pop(pid, None)
                return pid
            if code != 0:
                raise SendRejectedError(pid, code)
            return pid
