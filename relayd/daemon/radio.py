"""The radio link: an asyncio-native client of the Meshtastic device API (serial or TCP).

Why not the official threaded interface (design brief §6): it has no reconnect after a USB
unplug, half-reconnects over TCP and can register duplicate listeners. This link speaks the
framing and protobufs directly and, across reconnects:

* reconnects by itself with jittered exponential backoff (unplug, reboot, TCP reset, a radio
  that stops answering);
* skips the backlog the radio replays on connect (packets received before we connected);
* never delivers the same (from, id) packet twice;
* gives every send attempt a fresh packet id unless the caller pins one (an in-doubt resend
  reuses the id so the mesh drops it if it went out).

What the real firmware (meshtasticd 2.8, ``PhoneAPI`` / ``Router``) requires of a client, and
why each rule is here:

* ``hop_limit`` must be set by the client: the firmware fills in its configured hop limit
  only for ``want_ack`` packets (``Router::sendLocal``), so a 0 goes on air as 0 and nobody
  repeats it. We use the radio's own ``lora.hop_limit`` from the handshake.
* ``from`` must be the radio's own node number: the firmware addresses its Routing errors
  (the text rate limit, TOO_LARGE) to the packet's ``from``; with 0 they go on air instead
  of back to us. The firmware zeroes ``from`` itself before transmitting.
* A ``QueueStatus`` with ``res = 0`` only means "not refused yet": the rate limit answers
  ``res = 0`` and then a Routing error. Broadcasts ask for ``want_ack`` so the firmware says
  when the frame was really on air (the implicit ACK of hearing a neighbour repeat it, or
  MAX_RETRANSMIT after its three tries); that answer reaches the caller through ``on_answer``.
* No ``QueueStatus`` at all means the radio did not take the packet (or is hung): never
  "sent". Liveness is checked with heartbeats, which the firmware answers with a
  ``QueueStatus``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable

from google.protobuf.message import DecodeError
from meshtastic.protobuf import mesh_pb2

from relayd.core.earshot import transmitter_byte
from relayd.core.linkhints import errno_of, radio_failure, retry_line
from relayd.core.repeat import ClientIds
from relayd.core.status import LinkState
from relayd.daemon.config import RadioConfig
from relayd.daemon.linkstate import LinkStateTracker
from relayd.daemon.radiotransport import WAKE_BURST, SerialTransport, TcpTransport, Transport
from relayd.daemon.radiovalues import (
    PacketIgnoredError,
    RadioUnavailableError,
    ReceivedText,
    SendRejectedError,
)
from relayd.meshapi import routing
from relayd.meshapi.framing import StreamDecoder, encode_frame
from relayd.meshapi.packets import (
    BROADCAST_NUM,
    NODEINFO_PING_NONCE,
    ROUTING_APP,
    TEXT_MESSAGE_APP,
    FromRadio,
    MalformedMessageError,
    MeshPacket,
    admin_set_time_packet,
    from_radio_variant,
    heard_on_rf,
    is_node_announcement,
    parse_from_radio,
    text_packet,
    to_radio_disconnect,
    to_radio_heartbeat,
    to_radio_packet,
    to_radio_want_config,
)
from relayd.meshapi.routing import Answer

log = logging.getLogger("relayd.radio")

HANDSHAKE_TIMEOUT_S = 15.0
# A radio that reboots while we ask for its config says "rebooted"; ask again, a few times.
HANDSHAKE_ATTEMPTS = 3
# The firmware answers a packet with a QueueStatus as soon as its router has looked at it;
# over serial its API loop may poll every ~250 ms. No answer in this long: not taken.
SEND_CONFIRM_TIMEOUT_S = 5.0
# The firmware drops an API client that stays silent for 15 minutes; the official client
# sends a heartbeat every 5 minutes. We send one every 30 s and expect its QueueStatus
# reply, so a radio that hangs with its socket open is found within about 35 s.
HEARTBEAT_INTERVAL_S = 30.0
HEARTBEAT_REPLY_TIMEOUT_S = 5.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
# A packet whose rx_time is older than our connection by more than this is backlog.
BACKLOG_GRACE_S = 2.0
SEEN_PACKETS_MAX = 4096
# Packet ids we sent, kept so the radio's later answers (ACK, MAX_RETRANSMIT, a refusal)
# can be matched to them; answers about other ids are not ours.
SENT_IDS_MAX = 1024
# The radio's hop limit when it does not tell us (firmware default, Default::getConfiguredOrDefaultHopLimit).
DEFAULT_HOP_LIMIT = 3
# Before this (2024-01-01) a clock is not worth giving to the radio.
PLAUSIBLE_EPOCH_S = 1_704_067_200


class RadioLink(LinkStateTracker):
    """One radio. `run()` keeps it connected forever; `send_text()` hands it a frame.

    ``on_answer(packet_id, answer)`` reports what the radio later says about a packet we sent:
    on air (implicit ACK or MAX_RETRANSMIT for a broadcast), or refused after all. Only our
    own radio's answers count: a Routing packet from another node is never taken as one.
    """

    def __init__(
        self,
        config: RadioConfig,
        on_text: Callable[[ReceivedText], None],
        on_state: Callable[[LinkStateTracker], None] | None = None,
        *,
        rng: random.Random | None = None,
        on_answer: Callable[[int, Answer], None] | None = None,
        clock: Callable[[], float] = time.time,
        clock_trusted: Callable[[], bool] | None = None,
        on_node: Callable[[int, int], None] | None = None,
        on_heard: Callable[[int, int | None, float | None], None] | None = None,
        should_announce: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(on_state)
        self._on_answer = on_answer
        # (node, portnum) of a node announcing itself live (is_node_announcement): a handheld
        # back on the air.
        self._on_node = on_node
        # (node, transmitter, when) of every packet our radio heard on RF, and of every node
        # its own node DB says it heard: who shares our air. `transmitter`, the low byte of the
        # node that put the copy on air (relayd/core/earshot.py), is None when not known or old;
        # `when` is None for now, else the node DB's last_heard.
        self._on_heard = on_heard
        # Asked once a session has started: should the radio announce itself to the mesh now
        # (a nodeinfo ping), so that relays sharing its air learn of it before an alert?
        self._should_announce = should_announce
        self._nodedb_heard: list[tuple[int, int | None, float | None]] = []  # heard_on_rf
        self.config = config
        self.name = config.name
        self._on_text = on_text
        self._rng = rng or random.Random()
        self._clock = clock
        self._clock_trusted = clock_trusted
        self._transport: Transport | None = None
        self._send_lock = asyncio.Lock()
        self._confirmations: dict[int, asyncio.Future[int]] = {}
        self._sent: OrderedDict[int, bool] = OrderedDict()  # packet id -> was a broadcast
        self.client_ids = ClientIds()  # what the radio's PhoneAPI remembers of our ids
        # Packets heard on RF or sent: each is a record in nearby handhelds' PacketHistory.
        self.traffic = 0
        self._seen: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._handshake_backlog: list[MeshPacket] = []
        self._last_rx_monotonic = 0.0
        self._rx_event = asyncio.Event()
        self.my_node: int | None = None
        self.hop_limit = DEFAULT_HOP_LIMIT
        self.firmware_version = ""
        self.connected_at_s: float = 0.0
        # True once we set the radio's clock in this session: packets it received before
        # then carry rx_time 0, so they are backlog.
        self.clock_set = False
        self.connects = 0
        self.skipped_backlog = 0
        self.duplicate_packets = 0
        self.malformed_frames = 0
        self.own_echoes = 0
        self.foreign_routing = 0
        self.unresponsive = 0
        self.notifications = 0
        self.last_notification: str | None = None
        self.last_error: str | None = None
        # Free slots in the radio's transmit queue, from its last QueueStatus (None: unknown).
        self.tx_queue_free: int | None = None

    async def _open(self) -> Transport:
        if self.config.kind == "tcp":
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.config.host, self.config.port), HANDSHAKE_TIMEOUT_S
            )
            return TcpTransport(reader, writer)
        transport = SerialTransport(self.config.device)
        await transport.write(WAKE_BURST)
        return transport

    async def run(self) -> None:
        backoff = BACKOFF_INITIAL_S
        attempt = 0  # failures since the radio last stayed up
        while True:
            self._set_state(LinkState.CONNECTING)
            diagnosis = None
            try:
                transport = await self._open()
            except (OSError, TimeoutError) as exc:
                message = f"cannot connect to {self.config.label}: {exc or 'timed out'}"
                diagnosis = radio_failure(str(exc), errno_of(exc), timeout=isinstance(exc, TimeoutError))
            else:
                try:
                    await self._session(transport)
                    backoff = BACKOFF_INITIAL_S
                except (OSError, TimeoutError, ConnectionError, RadioUnavailableError) as exc:
                    message = f"link lost: {exc or 'timed out'}"
                    diagnosis = radio_failure(str(exc), errno_of(exc), timeout=isinstance(exc, TimeoutError))
                    if self.connected_at_s and time.time() - self.connected_at_s > 10:
                        backoff, attempt = BACKOFF_INITIAL_S, 0
                finally:
                    await self._teardown(transport)
            # Jittered exponential backoff: relays that lost power together must not
            # hammer a shared TCP radio in lockstep.
            delay = backoff * self._rng.uniform(0.5, 1.5)
            if diagnosis is not None:
                attempt += 1
                self._fail_retry(
                    message, retry_line(f"radio {self.name}", message, diagnosis, attempt, delay)
                )
            else:
                log.info("radio %s: reconnecting in %.1f s", self.name, delay)
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _fail_retry(self, message: str, line: str) -> None:
        """Every retry is logged with its backoff and a hint; a new failure is a warning."""
        text = f"radio {self.name} {message}"
        log.log(logging.INFO if text == self.last_error else logging.WARNING, "%s", line)
        self.last_error = text
        self._set_state(LinkState.DISCONNECTED)

    def _fail(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message
        self._set_state(LinkState.DISCONNECTED)

    async def _teardown(self, transport: Transport) -> None:
        was_current = self._transport is transport
        self._transport = None
        for fut in self._confirmations.values():
            if not fut.done():
                fut.set_exception(RadioUnavailableError("radio link dropped"))
        self._confirmations.clear()
        try:
            if was_current:
                # Tell the firmware we are going (the official client does): it then stops
                # queueing packets for a client that is gone.
                with contextlib.suppress(OSError, ConnectionError, TimeoutError):
                    await asyncio.wait_for(transport.write(encode_frame(to_radio_disconnect())), 1.0)
        finally:
            await transport.close()
            self._set_state(LinkState.DISCONNECTED)

    async def _handshake(self, transport: Transport, decoder: StreamDecoder) -> list[FromRadio]:
        """Ask for the radio's config; returns what it sent after the handshake's end."""
        for _attempt in range(HANDSHAKE_ATTEMPTS):
            nonce = self._rng.randrange(1, 2**32)
            # 69420 and 69421 select the firmware's config-only and nodes-only handshakes.
            while nonce in (69420, 69421):
                nonce = self._rng.randrange(1, 2**32)
            await transport.write(encode_frame(to_radio_want_config(nonce)))
            after = await self._await_config(transport, decoder, nonce)
            if after is not None:
                return after
        raise ConnectionResetError(f"radio rebooted {HANDSHAKE_ATTEMPTS} times during the handshake")

    async def _await_config(
        self, transport: Transport, decoder: StreamDecoder, nonce: int
    ) -> list[FromRadio] | None:
        """Read the handshake to its end; None if the radio rebooted meanwhile, else the
        messages that came after the end in the same read (they are live traffic)."""
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("radio did not finish the config handshake")
            try:
                data = await asyncio.wait_for(transport.read(), remaining)
            except TimeoutError:
                raise TimeoutError("radio did not finish the config handshake") from None
            complete = False
            after: list[FromRadio] = []
            for frame in decoder.feed(data):
                msg = self._parse(frame)
                if msg is None:
                    continue
                variant = from_radio_variant(msg)
                if complete:
                    after.append(msg)
                elif variant == "my_info":
                    self.my_node = int(msg.my_info.my_node_num)
                elif variant == "node_info" and (seen := heard_on_rf(msg.node_info, self.my_node)):
                    self._nodedb_heard.append(seen)
                elif variant == "config" and msg.config.WhichOneof("payload_variant") == "lora":
                    hop_limit = int(msg.config.lora.hop_limit)
                    self.hop_limit = hop_limit if 1 <= hop_limit <= 7 else DEFAULT_HOP_LIMIT
                elif variant == "metadata":
                    self.firmware_version = str(msg.metadata.firmware_version)
                elif variant == "rebooted":
                    log.info("radio %s rebooted during the handshake; asking again", self.name)
                    return None
                elif variant == "config_complete_id" and int(msg.config_complete_id) == nonce:
                    complete = True
                elif variant == "packet":
                    # Backlog delivered during the handshake: handled once connected.
                    self._handshake_backlog.append(msg.packet)
            if complete:
                return after

    async def _session(self, transport: Transport) -> None:
        decoder = StreamDecoder()
        self.clock_set = False
        self._nodedb_heard = []
        after_handshake = await self._handshake(transport, decoder)
        if self.my_node is None:
            raise ConnectionResetError("radio sent no my_info in its handshake")
        self._transport = transport
        self.connected_at_s = time.time()
        self._last_rx_monotonic = time.monotonic()
        self.connects += 1
        self.last_error = None
        await self._set_radio_clock(transport)
        log.info(
            "radio %s connected (%s, firmware %s, hop limit %d)",
            self.name,
            self.config.label,
            self.firmware_version or "unknown",
            self.hop_limit,
        )
        self._set_state(LinkState.CONNECTED)  # after the line above: the relay's "ready" follows it
        on_heard = self._on_heard or (lambda _node, _transmitter, _when: None)
        for node, byte, when in self._nodedb_heard:
            on_heard(node, byte, when)
        if self._should_announce is not None and self._should_announce():
            await transport.write(encode_frame(to_radio_heartbeat(NODEINFO_PING_NONCE)))
            log.info("asked radio %s to announce itself to the mesh (a NodeInfo broadcast)", self.name)
        backlog, self._handshake_backlog = self._handshake_backlog, []
        for msg in after_handshake:
            if from_radio_variant(msg) == "packet":
                # Read together with the handshake's end: queued for a client before we
                # connected (the firmware drains that queue right after the handshake).
                backlog.append(msg.packet)
            else:
                self._dispatch(msg)
        for packet in backlog:
            self._on_packet(packet, backlog=True)
        reader = asyncio.create_task(self._read_loop(transport, decoder), name=f"radio-{self.name}-read")
        heartbeat = asyncio.create_task(self._heartbeat(transport), name=f"radio-{self.name}-heartbeat")
        try:
            done, _ = await asyncio.wait({reader, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises why the session ended
        finally:
            for task in (reader, heartbeat):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _read_loop(self, transport: Transport, decoder: StreamDecoder) -> None:
        while True:
            data = await transport.read()
            self._last_rx_monotonic = time.monotonic()
            self._rx_event.set()
            for frame in decoder.feed(data):
                msg = self._parse(frame)
                if msg is not None:
                    self._dispatch(msg)

    async def _set_radio_clock(self, transport: Transport) -> None:
        """Give the radio our time when ours is trustworthy, so rx_time means something."""
        if self._clock_trusted is None or not self._clock_trusted() or self.my_node is None:
            return
        now_s = int(self._clock())
        if now_s < PLAUSIBLE_EPOCH_S:
            return
        pkt = admin_set_time_packet(self.my_node, now_s)
        pkt.id = self.fresh_packet_id()
        self.client_ids.wrote(pkt.id)
        with contextlib.suppress(OSError, ConnectionError):
            await transport.write(encode_frame(to_radio_packet(pkt)))
            self.clock_set = True

    async def _heartbeat(self, transport: Transport) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)
            if not await self._probe(transport):
                self.unresponsive += 1
                raise RadioUnavailableError(
                    f"radio did not answer a heartbeat within {HEARTBEAT_REPLY_TIMEOUT_S:.0f} s"
                )

    async def _probe(self, transport: Transport) -> bool:
        """Send a heartbeat; True if the radio says anything within the deadline (the
        firmware answers a heartbeat with a QueueStatus)."""
        sent_at = time.monotonic()
        self._rx_event.clear()
        try:
            await transport.write(encode_frame(to_radio_heartbeat()))
        except (OSError, ConnectionError):
            return False
        deadline = sent_at + HEARTBEAT_REPLY_TIMEOUT_S
        while self._last_rx_monotonic < sent_at:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rx_event.wait(), remaining)
            self._rx_event.clear()
        return True

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
        elif variant == "clientNotification":
            note = msg.clientNotification
            self.notifications += 1
            self.last_notification = str(note.message)[:200]
            log.warning("radio %s says: %s", self.name, self.last_notification)
        elif variant == "packet":
            self._on_packet(msg.packet)

    def _on_packet(self, p: MeshPacket, *, backlog: bool = False) -> None:
        if not p.HasField("decoded"):
            return  # encrypted for a channel we do not have: nothing to read
        portnum = int(p.decoded.portnum)
        if portnum == ROUTING_APP:
            self._on_routing(p)
            return
        from_node = int(getattr(p, "from"))
        if from_node == self.my_node:
            # The firmware shows a client its own broadcasts: not something we heard.
            self.own_echoes += 1
            return
        live = not backlog and not self._is_backlog(float(p.rx_time))
        self.traffic += not p.via_mqtt
        if self._on_heard is not None and not p.via_mqtt:
            hops = (int(p.hop_start), int(p.hop_limit))
            heard_by = transmitter_byte(from_node, int(p.relay_node), *hops) if live else None
            self._on_heard(from_node, heard_by, None)
        if portnum != TEXT_MESSAGE_APP:
            fresh = live
            if self._on_node is not None and fresh and is_node_announcement(p):
                self._on_node(from_node, portnum)
            return
        key = (from_node, int(p.id))
        if key in self._seen:
            self.duplicate_packets += 1
            return
        self._seen[key] = None
        if len(self._seen) > SEEN_PACKETS_MAX:
            self._seen.popitem(last=False)
        rx_time = float(p.rx_time)
        # A packet without a receive time after we set the radio's clock was received
        # before we set it, so before we connected.
        backlog = backlog or self._is_backlog(rx_time)
        if rx_time == 0.0 and not backlog:
            rx_time = time.time()  # backlog keeps 0: when it was heard is not known
        if backlog:
            self.skipped_backlog += 1
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
                backlog=backlog,
                reply_id=int(p.decoded.reply_id),
                emoji=bool(p.decoded.emoji),
            )
        )

    def _is_backlog(self, rx_time: float) -> bool:
        if rx_time == 0.0:
            return self.clock_set
        return rx_time < self.connected_at_s - BACKLOG_GRACE_S

    def _on_routing(self, p: MeshPacket) -> None:
        """Our radio's answer about one of our packets (an ACK, MAX_RETRANSMIT, a refusal).

        Only our own radio's answers count: the firmware sends them from its own node number,
        while one heard on air from another node could be anyone's."""
        request_id = int(p.decoded.request_id)
        if not request_id:
            return
        if self.my_node is None or int(getattr(p, "from")) != self.my_node or request_id not in self._sent:
            self.foreign_routing += 1
            return
        msg = mesh_pb2.Routing()
        try:
            msg.ParseFromString(bytes(p.decoded.payload))
        except DecodeError:
            self.malformed_frames += 1
            return
        broadcast = self._sent[request_id]
        answer = routing.classify_routing(int(msg.error_reason), broadcast=broadcast)
        fut = self._confirmations.get(request_id)
        if fut is not None and not fut.done() and not answer.sent:
            # A refusal before (or instead of) the queue status.
            self._confirmations.pop(request_id, None)
            fut.set_result(answer.code)
            return
        if self._on_answer is not None:
            self._on_answer(request_id, answer)

    def fresh_packet_id(self) -> int:
        return self._rng.randrange(1, 2**32)

    def _remember_sent(self, packet_id: int, broadcast: bool) -> None:
        self._sent[packet_id] = broadcast
        self._sent.move_to_end(packet_id)
        if len(self._sent) > SENT_IDS_MAX:
            self._sent.popitem(last=False)

    async def send_text(
        self,
        text: str,
        *,
        to: int = BROADCAST_NUM,
        channel: int = 0,
        packet_id: int | None = None,
        want_ack: bool | None = None,
    ) -> int:
        """Hand one text frame to the radio and wait for its queue status.

        Returns the packet id once the radio has taken it. That is not yet "on air": the
        radio's answer for a ``want_ack`` packet comes later through ``on_answer``.
        Raises RadioUnavailableError if the link is down, drops, or the radio stopped
        answering; PacketIgnoredError if the radio is alive but ignored a recently used id;
        SendRejectedError if the radio refused the packet.
        """
        broadcast = to == BROADCAST_NUM
        ack = broadcast if want_ack is None else want_ack
        async with self._send_lock:
            transport = self._transport
            if transport is None or not self.connected or self.my_node is None:
                raise RadioUnavailableError(f"radio {self.name} is not connected")
            pid = packet_id if packet_id is not None else self.fresh_packet_id()
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._confirmations[pid] = fut
            self._remember_sent(pid, broadcast)
            self.traffic += self.client_ids.wrote(pid)
            pkt = text_packet(
                text,
                to=to,
                channel_index=channel,
                packet_id=pid,
                from_node=self.my_node,
                hop_limit=self.hop_limit,
                want_ack=ack,
            )
            try:
                await transport.write(encode_frame(to_radio_packet(pkt)))
            except (OSError, ConnectionError) as exc:
                self._confirmations.pop(pid, None)
                raise RadioUnavailableError(f"radio {self.name} write failed: {exc}") from exc
            try:
                code = await asyncio.wait_for(fut, SEND_CONFIRM_TIMEOUT_S)
            except TimeoutError:
                self._confirmations.pop(pid, None)
                if await self._probe(transport):
                    raise PacketIgnoredError(pid) from None
                self.unresponsive += 1
                # A hung radio: drop the link so run() reconnects.
                self._fail(
                    f"radio {self.name} stopped answering (no queue status for a packet, no reply "
                    "to a heartbeat); reconnecting"
                )
                await self._teardown(transport)
                raise RadioUnavailableError(f"radio {self.name} did not answer a packet") from None
            answer = routing.classify_queue_result(code, broadcast=broadcast)
            if answer is not None:
                raise SendRejectedError(pid, answer)
            return pid


# Callers import these from here: the link's values and errors live in radiovalues.
__all__ = ["PacketIgnoredError", "RadioLink", "RadioUnavailableError", "ReceivedText", "SendRejectedError"]
