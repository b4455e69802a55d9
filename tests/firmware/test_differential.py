"""Differential suite: the same device-API probes to relayd's firmware model and to meshtasticd 2.8.0.

Each probe opens a fresh client connection to both radios at once (the firmware keeps its rate
limits per connection, as the model does), runs the same exchange and reduces what came back to a
comparable observation: what the client received (queueStatus, Routing/admin packets,
notifications) and what went on air (hop limit, hop start, want_ack, addressee, portnum). The
model must match the firmware, except for the differences listed in docs/simulator.md
("Differences from the firmware"), which the tests assert as documented.

How the air is seen: meshtasticd in SimRadio mode hands every frame it transmits to its client as
a SIMULATOR_APP packet wrapping a `Compressed` protobuf; the model's medium reports its frames to
`Neighborhood.on_air`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
import yaml
from meshtastic.protobuf import admin_pb2, mesh_pb2, portnums_pb2

from relayd.meshapi.packets import BROADCAST_NUM, ROUTING_APP, from_radio_variant, text_packet
from relayd.sim import firmware as model_fw
from relayd.sim.apiclient import ApiClosedError, DeviceApiClient
from relayd.sim.medium import Transmitted
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import Role, Scenario, make_node
from relayd.testing.meshtasticd import FIRMWARE_VERSION, MeshtasticdNode

SIMULATOR_APP = portnums_pb2.PortNum.SIMULATOR_APP
ADMIN_APP = portnums_pb2.PortNum.ADMIN_APP
ROUTING_ERROR = mesh_pb2.Routing.Error
# Long enough for a short LONG_FAST frame to leave either radio (contention delay + airtime).
SETTLE_S = 2.5
# Packet ids unique across the module: a radio may still send a frame of an earlier probe (the
# firmware retransmits an unacknowledged want_ack packet), which must not pass for this probe's.
_PACKET_IDS = iter(range(0x10000, 0x7FFFFFFF))
# Frames a radio sends on its own (NodeInfo, telemetry, position, retransmissions of an earlier
# probe's packets) are not answers to a probe; a probe that expects one names its portnum.
_UNSOLICITED = frozenset(("NODEINFO_APP", "TELEMETRY_APP", "POSITION_APP", "TEXT_MESSAGE_APP"))


# --- observations ---------------------------------------------------------------------------------


def _first_field_number(raw: bytes, skip: frozenset[int] = frozenset()) -> int:
    """The number of the first top-level field in `raw` (protobuf wire format) not in `skip`."""
    i = 0
    while i < len(raw):
        key, i = _varint(raw, i)
        num, wire = key >> 3, key & 7
        if num not in skip:
            return num
        if wire == 0:
            _, i = _varint(raw, i)
        elif wire == 2:
            n, i = _varint(raw, i)
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            break
    return 0


def _varint(raw: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = raw[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def handshake_kind(m: Any) -> str:
    """A FromRadio of the handshake as a comparable name (raw field numbers for fields newer than
    the `meshtastic` package's protobufs)."""
    v = from_radio_variant(m)
    if not v:
        return f"field{_first_field_number(m.SerializeToString(), frozenset({1}))}"
    if v == "config":
        return f"config.{m.config.WhichOneof('payload_variant')}"
    if v == "moduleConfig":
        sub = m.moduleConfig.WhichOneof("payload_variant")
        return f"moduleConfig.{sub or 'field' + str(_first_field_number(m.moduleConfig.SerializeToString()))}"
    return v


@dataclass
class Labels:
    """Names for node numbers and packet ids so that two radios' answers compare."""

    me: int
    ids: dict[int, str] = field(default_factory=dict)

    def node(self, num: int) -> str:
        if num == self.me:
            return "me"
        if num == 0:
            return "zero"
        if num == BROADCAST_NUM:
            return "all"
        return "other"

    def pid(self, packet_id: int) -> str:
        if packet_id == 0:
            return "none"
        return self.ids.get(packet_id, "radio-id")


def observe_client(m: Any, lab: Labels) -> tuple[Any, ...] | None:
    v = from_radio_variant(m)
    if v == "queueStatus":
        return ("queueStatus", ROUTING_ERROR.Name(m.queueStatus.res), lab.pid(m.queueStatus.mesh_packet_id))
    if v == "clientNotification":
        return ("notification", mesh_pb2.LogRecord.Level.Name(m.clientNotification.level))
    if v == "packet":
        p = m.packet
        port = p.decoded.portnum
        if port == SIMULATOR_APP:
            return None  # the air, seen through SimRadio: observed separately
        if port == ROUTING_APP:
            err = mesh_pb2.Routing.FromString(p.decoded.payload).error_reason
            return (
                "routing",
                ROUTING_ERROR.Name(err),
                lab.node(getattr(p, "from")),
                lab.node(p.to),
                lab.pid(p.decoded.request_id),
            )
        if port == ADMIN_APP:
            resp = admin_pb2.AdminMessage.FromString(p.decoded.payload)
            return (
                "admin",
                resp.WhichOneof("payload_variant"),
                lab.node(p.to),
                lab.pid(p.decoded.request_id),
            )
        return ("packet", portnums_pb2.PortNum.Name(port), lab.node(p.to))
    return (v,)


def observe_air(
    lab: Labels, *, to: int, pid: int, hop_limit: int, hop_start: int, want_ack: bool, data: Any
) -> tuple[Any, ...]:
    extra: tuple[Any, ...] = ()
    if data.portnum == ROUTING_APP:
        err = mesh_pb2.Routing.FromString(data.payload).error_reason
        extra = (ROUTING_ERROR.Name(err), lab.pid(data.request_id))
    return (
        "air",
        portnums_pb2.PortNum.Name(data.portnum),
        lab.node(to),
        hop_limit,
        hop_start,
        want_ack,
        lab.pid(pid),
        *extra,
    )


@dataclass
class Seen:
    """What one radio answered to one probe."""

    client: list[tuple[Any, ...]]
    air: list[tuple[Any, ...]]
    values: dict[str, Any]

    def comparable(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], dict[str, Any]]:
        # Order within the client stream and the air depends on radio timing; the multiset does not.
        return sorted(self.client, key=repr), sorted(self.air, key=repr), self.values


# --- the two radios -----------------------------------------------------------------------------------


class Session:
    """One probe's connection to one radio."""

    def __init__(
        self, client: DeviceApiClient, me: int, air_source: Callable[[Labels], list[tuple[Any, ...]]]
    ):
        self.client = client
        self.labels = Labels(me)
        self._air_source = air_source
        self._got: list[Any] = []
        self.values: dict[str, Any] = {}
        self.expect_unsolicited: set[str] = set()
        self.arrivals: list[tuple[float, Any]] = []  # (monotonic time, FromRadio) of timed probes
        self.tx_times: Callable[[int], list[float]] = self._frames_heard_at

    def _frames_heard_at(self, pid: int) -> list[float]:
        """When the radio handed over frames of packet `pid` (SimRadio: the moment it sends)."""
        return [
            t
            for t, m in self.arrivals
            if from_radio_variant(m) == "packet"
            and m.packet.decoded.portnum == SIMULATOR_APP
            and m.packet.id == pid
        ]

    @property
    def me(self) -> int:
        return self.labels.me

    def new_id(self, label: str) -> int:
        pid = next(_PACKET_IDS)
        self.labels.ids[pid] = label
        return pid

    async def send(self, packet: Any) -> None:
        await self.client.send_packet(packet)

    async def settle(self, seconds: float = SETTLE_S) -> None:
        self._got.extend(await self.client.collect(seconds))

    @property
    def received(self) -> list[Any]:
        return list(self._got)

    def _hardware_equivalent(self) -> list[Any]:
        """The firmware's stream as a radio on real hardware would send it: SimRadio::startSend
        reports a queueStatus right before each frame it hands to the client as SIMULATOR_APP;
        a LoRa chip does not (MeshService::sendToMesh's report, at queueing, is the only one)."""
        got = list(self._got)
        for i, m in enumerate(got):
            if m is None or from_radio_variant(m) != "packet" or m.packet.decoded.portnum != SIMULATOR_APP:
                continue
            for j in range(i - 1, -1, -1):
                q = got[j]
                if (
                    q is not None
                    and from_radio_variant(q) == "queueStatus"
                    and q.queueStatus.mesh_packet_id == m.packet.id
                ):
                    got[j] = None
                    break
        return [m for m in got if m is not None]

    def seen(self) -> Seen:
        lab = self.labels
        self._got = self._hardware_equivalent()
        frames = list(self._air_source(lab))  # (packet id, portnum name, observation)
        for m in self._got:
            if from_radio_variant(m) == "packet" and m.packet.decoded.portnum == SIMULATOR_APP:
                p = m.packet
                inner = mesh_pb2.Compressed.FromString(p.decoded.payload)
                data = mesh_pb2.Data()
                data.portnum = inner.portnum
                data.payload = inner.data
                data.request_id = p.decoded.request_id
                frames.append(
                    (
                        p.id,
                        portnums_pb2.PortNum.Name(inner.portnum),
                        observe_air(
                            lab,
                            to=p.to,
                            pid=p.id,
                            hop_limit=p.hop_limit,
                            hop_start=p.hop_start,
                            want_ack=p.want_ack,
                            data=data,
                        ),
                    )
                )
        # What the radio did on its own is not an answer to this probe: frames with ids the probe
        # did not send (NodeInfo, telemetry, a retransmission of an earlier probe's packet), and
        # queueStatus reports about packets that neither went on air nor came to the client here.
        own = _UNSOLICITED - self.expect_unsolicited
        unsolicited = {pid for pid, port, _ in frames if pid not in lab.ids and port in own}
        air = [obs for pid, _, obs in frames if pid not in unsolicited]
        # A Routing packet about an earlier probe's packet (the firmware's MAX_RETRANSMIT for an
        # unacknowledged want_ack broadcast reaches whichever client is connected by then).
        stale = {
            m.packet.id
            for m in self._got
            if from_radio_variant(m) == "packet"
            and m.packet.decoded.portnum == ROUTING_APP
            and m.packet.decoded.request_id not in lab.ids
        }
        caused = {pid for pid, _, _ in frames if pid not in unsolicited}
        caused |= {
            m.packet.id
            for m in self._got
            if from_radio_variant(m) == "packet" and m.packet.decoded.portnum != SIMULATOR_APP
        } - stale
        caused |= set(lab.ids) | {0}
        client = []
        for m in self._got:
            if from_radio_variant(m) == "queueStatus" and m.queueStatus.mesh_packet_id not in caused:
                continue
            if from_radio_variant(m) == "packet" and m.packet.id in stale:
                continue
            o = observe_client(m, lab)
            if o is not None:
                client.append(o)
        return Seen(client, air, self.values)


class ModelRadio:
    """relayd's firmware model: one relay radio alone in a scenario (as the firmware node is alone)."""

    name = "model"

    def __init__(self, hood: Neighborhood) -> None:
        self.hood = hood
        self.port = hood.endpoints["radio"].tcp_port or 0
        self._air: list[Transmitted] = []
        self.air_times: list[tuple[float, Transmitted]] = []
        hood.on_air.append(self._air.append)
        hood.on_air.append(lambda ev: self.air_times.append((time.monotonic(), ev)))

    @contextlib.asynccontextmanager
    async def session(self, nonce: int = model_fw.NONCE_ONLY_CONFIG) -> AsyncIterator[Session]:
        client = await DeviceApiClient.connect(self.port)
        try:
            msgs = await client.handshake(nonce)
            await client.collect(0.3)
            start = len(self._air)

            def air(lab: Labels) -> list[tuple[int, str, tuple[Any, ...]]]:
                out = []
                for ev in self._air[start:]:
                    data = mesh_pb2.Data.FromString(ev.packet.data)
                    pk = ev.packet
                    obs = observe_air(
                        lab,
                        to=pk.to_num,
                        pid=pk.packet_id,
                        hop_limit=pk.hop_limit,
                        hop_start=pk.hop_start,
                        want_ack=pk.want_ack,
                        data=data,
                    )
                    out.append((pk.packet_id, portnums_pb2.PortNum.Name(data.portnum), obs))
                return out

            s = Session(client, _my_num(msgs), air)
            mark = len(self.air_times)
            s.tx_times = lambda pid: [t for t, ev in self.air_times[mark:] if ev.packet.packet_id == pid]
            s.values["handshake"] = msgs
            yield s
        finally:
            await client.close()


class FirmwareRadio:
    name = "firmware"

    def __init__(self, node: MeshtasticdNode) -> None:
        self.port = node.port

    @contextlib.asynccontextmanager
    async def session(self, nonce: int = model_fw.NONCE_ONLY_CONFIG) -> AsyncIterator[Session]:
        client, msgs = await self._connect(nonce)
        try:
            s = Session(client, _my_num(msgs), lambda lab: [])
            s.values["handshake"] = msgs
            yield s
        finally:
            await client.close()
            # The firmware notices the closed socket on its next loop; let it before the next probe.
            await asyncio.sleep(0.2)

    async def _connect(self, nonce: int) -> tuple[DeviceApiClient, list[Any]]:
        # The firmware serves one client: while it is still tearing down the previous probe's
        # connection it may drop the new one. Try again; any other failure is the test's.
        for attempt in range(3):
            client = await self._connect_socket()
            try:
                msgs = await client.handshake(nonce)
                await client.collect(0.3)
            except ApiClosedError:
                await client.close()
                if attempt == 2:
                    raise
                await asyncio.sleep(0.5)
            else:
                return client, msgs
        raise AssertionError("unreachable")

    async def _connect_socket(self) -> DeviceApiClient:
        # After a reboot the API port comes back within a few seconds.
        deadline = time.monotonic() + 15.0
        while True:
            try:
                return await DeviceApiClient.connect(self.port)
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


def _my_num(msgs: list[Any]) -> int:
    """Our node number from a handshake (my_info, or the first node_info of a nodes-only one)."""
    for m in msgs:
        if m.HasField("my_info"):
            return int(m.my_info.my_node_num)
    return int(next(m.node_info.num for m in msgs if m.HasField("node_info")))


Radio = ModelRadio | FirmwareRadio


# One model neighborhood and one firmware node for the whole module (both on one event loop).
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def model() -> AsyncIterator[ModelRadio]:
    scenario = Scenario(name="alone", nodes=(make_node("radio", Role.RELAY),), links=())
    async with Neighborhood(scenario, time_scale=1) as hood:
        yield ModelRadio(hood)


@pytest.fixture(scope="module")
def firmware(fw_node: MeshtasticdNode) -> FirmwareRadio:
    return FirmwareRadio(fw_node)


# --- probes ---------------------------------------------------------------------------------------------

Probe = Callable[[Session], Awaitable[None]]


def _text(s: Session, label: str, text: str = "probe", *, from_me: bool = False, **kw: Any) -> Any:
    p = text_packet(text, packet_id=s.new_id(label), **kw)
    if from_me:
        setattr(p, "from", s.me)
    return p


async def probe_text_queue_status(s: Session) -> None:
    """A text: queueStatus res 0 when queued, another when it leaves; on air once."""
    await s.send(_text(s, "t1", hop_limit=3))
    await s.settle()


async def probe_rate_limit_from_zero(s: Session) -> None:
    """A second text within 2 s, `from` left 0: the RATE_LIMIT error goes on air to node 0."""
    await s.send(_text(s, "t1", "one", hop_limit=3))
    await s.send(_text(s, "t2", "two", hop_limit=3))
    await s.settle()


async def probe_rate_limit_from_me(s: Session) -> None:
    """The same with `from` = our node: the error comes back to the client."""
    await s.send(_text(s, "t1", "one", from_me=True, hop_limit=3))
    await s.send(_text(s, "t2", "two", from_me=True, hop_limit=3))
    await s.settle()


async def probe_too_large_from_zero(s: Session) -> None:
    await s.send(_text(s, "big", "x" * 233, hop_limit=3))
    await s.settle(1.0)


async def probe_too_large_from_me(s: Session) -> None:
    await s.send(_text(s, "big", "x" * 233, from_me=True, hop_limit=3))
    await s.settle(1.0)


async def probe_largest_broadcast(s: Session) -> None:
    await s.send(_text(s, "max", "y" * 232, from_me=True, hop_limit=3))
    await s.settle()


async def probe_hop_limit_zero_without_ack(s: Session) -> None:
    await s.send(_text(s, "t", hop_limit=0))
    await s.settle()


async def probe_hop_limit_set(s: Session) -> None:
    await s.send(_text(s, "t", hop_limit=5))
    await s.settle()


async def probe_hop_limit_zero_with_ack(s: Session) -> None:
    await s.send(_text(s, "t", hop_limit=0, want_ack=True))
    await s.settle()


async def probe_duplicate_packet_id(s: Session) -> None:
    """The same client packet id twice (2.1 s apart, clear of the text rate limit)."""
    p = _text(s, "dup", hop_limit=3)
    await s.send(p)
    await s.settle(2.1)
    await s.send(p)
    await s.settle()


async def probe_heartbeat(s: Session) -> None:
    hb = mesh_pb2.ToRadio()
    hb.heartbeat.SetInParent()
    await s.client.send(hb.SerializeToString())
    await s.settle(0.8)


async def probe_heartbeat_nonce(s: Session) -> None:
    """Heartbeat nonce 2: still a plain keepalive."""
    hb = mesh_pb2.ToRadio()
    hb.heartbeat.nonce = 2
    await s.client.send(hb.SerializeToString())
    await s.settle(0.8)


async def probe_heartbeat_nodeinfo_ping(s: Session) -> None:
    """Heartbeat nonce 1 (2.8): a "nodeinfo ping": no answer to the client. (The NodeInfo broadcast
    it asks for is subject to NodeInfoModule's cooldown since the radio's last one, so it counts
    among the frames a radio sends on its own.)"""
    hb = mesh_pb2.ToRadio()
    hb.heartbeat.nonce = 1
    await s.client.send(hb.SerializeToString())
    await s.settle()


async def probe_want_ack_broadcast_unheard(s: Session) -> None:
    """A want_ack broadcast that no one repeats: ReliableRouter sends it 3 times in all, then
    reports MAX_RETRANSMIT to the client. Also records when (compared with a tolerance)."""
    p = _text(s, "wa", "anyone?", from_me=True, hop_limit=3, want_ack=True)
    t0 = time.monotonic()
    await s.send(p)
    nak_at: float | None = None
    loop_deadline = t0 + 30.0
    while time.monotonic() < loop_deadline and (nak_at is None or time.monotonic() < nak_at + 0.5):
        try:
            m = await s.client.next(max(0.05, loop_deadline - time.monotonic()))
        except TimeoutError:
            break
        s._got.append(m)
        now = time.monotonic()
        s.arrivals.append((now, m))
        if (
            from_radio_variant(m) == "packet"
            and m.packet.decoded.portnum == ROUTING_APP
            and m.packet.decoded.request_id == p.id
        ):
            nak_at = now
    s.values["timing"] = {
        "tx_s": [round(t - t0, 1) for t in s.tx_times(p.id)],
        "nak_s": None if nak_at is None else round(nak_at - t0, 1),
    }


def _admin_packet(s: Session, label: str, msg: Any, *, want_response: bool) -> Any:
    p = mesh_pb2.MeshPacket()
    p.to = s.me
    p.id = s.new_id(label)
    p.want_ack = True
    p.decoded.portnum = ADMIN_APP
    p.decoded.payload = msg.SerializeToString()
    p.decoded.want_response = want_response
    return p


async def _admin(s: Session, label: str, msg: Any, *, want_response: bool = True) -> Any:
    """Send one admin message; return the admin response (or None) after it settles."""
    await s.send(_admin_packet(s, label, msg, want_response=want_response))
    before = len(s.received)
    await s.settle(0.8)
    for m in s.received[before:]:
        if from_radio_variant(m) == "packet" and m.packet.decoded.portnum == ADMIN_APP:
            return admin_pb2.AdminMessage.FromString(m.packet.decoded.payload)
    return None


def _admin_get(field_name: str, value: Any, keep: Callable[[Any], Any]) -> Probe:
    async def probe(s: Session) -> None:
        msg = admin_pb2.AdminMessage()
        setattr(msg, field_name, value)
        resp = await _admin(s, "get", msg)
        s.values["response"] = keep(resp) if resp is not None else None

    probe.__name__ = f"probe_admin_{field_name}"
    return probe


async def probe_admin_set_and_read_back(s: Session) -> None:
    """What apply-profile.sh's `meshtastic --configure` / `--set` send: begin edit, set owner,
    set lora config, commit; then read both back; then put the hop limit back."""
    begin = admin_pb2.AdminMessage()
    begin.begin_edit_settings = True
    await _admin(s, "begin", begin, want_response=False)
    owner = admin_pb2.AdminMessage()
    owner.set_owner.long_name = "Relay Probe"
    owner.set_owner.short_name = "RP"
    await _admin(s, "set-owner", owner, want_response=False)
    get_lora = admin_pb2.AdminMessage()
    get_lora.get_config_request = admin_pb2.AdminMessage.LORA_CONFIG
    lora = (await _admin(s, "get-lora-before", get_lora)).get_config_response
    lora.lora.hop_limit = 5
    set_lora = admin_pb2.AdminMessage()
    set_lora.set_config.CopyFrom(lora)
    await _admin(s, "set-lora", set_lora, want_response=False)
    commit = admin_pb2.AdminMessage()
    commit.commit_edit_settings = True
    await _admin(s, "commit", commit, want_response=False)
    after = await _admin(s, "get-lora-after", get_lora)
    get_owner = admin_pb2.AdminMessage()
    get_owner.get_owner_request = True
    who = await _admin(s, "get-owner", get_owner)
    s.values["hop_limit_after"] = after.get_config_response.lora.hop_limit
    s.values["owner_after"] = (who.get_owner_response.long_name, who.get_owner_response.short_name)
    lora.lora.hop_limit = 3
    set_lora.set_config.CopyFrom(lora)
    await _admin(s, "restore-lora", set_lora, want_response=False)
    # AdminModule reboots the radio 7 s after a commit (the process restarts in place).
    closed = False
    deadline = time.monotonic() + 9.0
    while time.monotonic() < deadline:
        try:
            s._got.append(await s.client.next(max(0.05, deadline - time.monotonic())))
        except TimeoutError:
            break
        except ApiClosedError:
            closed = True
            break
    s.values["rebooted_after_commit"] = closed


PROBES: dict[str, Probe] = {
    "text_queue_status": probe_text_queue_status,
    "rate_limit_from_zero": probe_rate_limit_from_zero,
    "rate_limit_from_me": probe_rate_limit_from_me,
    "too_large_233_from_zero": probe_too_large_from_zero,
    "too_large_233_from_me": probe_too_large_from_me,
    "largest_broadcast_232": probe_largest_broadcast,
    "hop_limit_0_no_ack": probe_hop_limit_zero_without_ack,
    "hop_limit_5": probe_hop_limit_set,
    "duplicate_packet_id": probe_duplicate_packet_id,
    "heartbeat": probe_heartbeat,
    "heartbeat_nonce_2": probe_heartbeat_nonce,
    "heartbeat_nodeinfo_ping": probe_heartbeat_nodeinfo_ping,
    "admin_get_owner": _admin_get("get_owner_request", True, lambda r: r.WhichOneof("payload_variant")),
    "admin_get_lora": _admin_get(
        "get_config_request",
        admin_pb2.AdminMessage.LORA_CONFIG,
        lambda r: (r.WhichOneof("payload_variant"), r.get_config_response.lora.hop_limit),
    ),
    "admin_get_device_ui": _admin_get(
        "get_config_request",
        admin_pb2.AdminMessage.DEVICEUI_CONFIG,
        lambda r: r.get_config_response.WhichOneof("payload_variant"),
    ),
    "admin_get_channel": _admin_get(
        "get_channel_request", 2, lambda r: (r.WhichOneof("payload_variant"), r.get_channel_response.index)
    ),
    "admin_get_module_extnotif": _admin_get(
        "get_module_config_request",
        admin_pb2.AdminMessage.EXTNOTIF_CONFIG,
        lambda r: r.get_module_config_response.WhichOneof("payload_variant"),
    ),
    "admin_get_canned_messages": _admin_get(
        "get_canned_message_module_messages_request",
        True,
        lambda r: r.get_canned_message_module_messages_response,
    ),
    "admin_get_ringtone": _admin_get("get_ringtone_request", True, lambda r: r.get_ringtone_response),
    "admin_get_metadata": _admin_get(
        "get_device_metadata_request",
        True,
        lambda r: (r.WhichOneof("payload_variant"), r.get_device_metadata_response.device_state_version),
    ),
    # With nobody to rebroadcast it, the firmware retransmits this broadcast and finally
    # reports MAX_RETRANSMIT (not modelled, see docs/simulator.md); later probes filter that out.
    "hop_limit_0_want_ack": probe_hop_limit_zero_with_ack,
    "want_ack_broadcast_unheard": probe_want_ack_broadcast_unheard,
    # Last: it ends with the firmware rebooting.
    "admin_set_and_read_back": probe_admin_set_and_read_back,
}

# Where the model deliberately differs from meshtasticd (docs/simulator.md, "Differences from the
# firmware"): probe -> a function of (model, firmware) observations that checks the documented
# difference instead of equality.
Comparable = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], dict[str, Any]]


def _duplicate_ignored_by_model(model: Comparable, fw: Comparable) -> None:
    # meshtasticd skips PhoneAPI::wasSeenRecently when it runs SimRadio ("for use with the
    # simulator"); a radio on real hardware ignores the resent id, and so does the model.
    m_client, m_air, _ = model
    f_client, f_air, _ = fw
    assert [a for a in f_air if a[1] == "TEXT_MESSAGE_APP"] == [
        a for a in m_air if a[1] == "TEXT_MESSAGE_APP"
    ] * 2
    assert sorted(set(f_client), key=repr) == sorted(set(m_client), key=repr)
    assert len(f_client) == 2 * len(m_client)


# Radio timing compares within this (the firmware's own scheduling adds jitter of a few slots
# and its loop granularity; the intervals under test are ~7 s).
TIMING_TOLERANCE_S = 1.5


def _same_timing(model: dict[str, Any], fw: dict[str, Any]) -> None:
    assert len(model["tx_s"]) == len(fw["tx_s"]), (model, fw)
    for m, f in zip(model["tx_s"], fw["tx_s"], strict=True):
        assert abs(m - f) <= TIMING_TOLERANCE_S, (model, fw)
    assert (model["nak_s"] is None) == (fw["nak_s"] is None), (model, fw)
    if fw["nak_s"] is not None:
        assert abs(model["nak_s"] - fw["nak_s"]) <= TIMING_TOLERANCE_S, (model, fw)


def _commit_reboots_only_the_firmware(model: Comparable, fw: Comparable) -> None:
    # AdminModule::saveChanges reboots 7 s after commit_edit_settings; the model applies the
    # settings at once and stays up (its reboots are the neighborhood's `reboot`).
    m_values = dict(model[2])
    f_values = dict(fw[2])
    assert (m_values.pop("rebooted_after_commit"), f_values.pop("rebooted_after_commit")) == (False, True)
    assert model[0] == fw[0]
    assert model[1] == fw[1]
    assert {k: v for k, v in m_values.items() if k != "handshake"} == {
        k: v for k, v in f_values.items() if k != "handshake"
    }


DOCUMENTED: dict[str, Callable[[Comparable, Comparable], None]] = {
    "duplicate_packet_id": _duplicate_ignored_by_model,
    "admin_set_and_read_back": _commit_reboots_only_the_firmware,
}


async def _both(model: ModelRadio, firmware: FirmwareRadio, probe: Probe) -> tuple[Seen, Seen]:
    async def run(radio: Radio) -> Seen:
        async with radio.session() as s:
            await probe(s)
            return s.seen()

    m, f = await asyncio.gather(run(model), run(firmware))
    return m, f


@pytest.mark.parametrize("name", list(PROBES))
async def test_probe_matches_firmware(name: str, model: ModelRadio, firmware: FirmwareRadio) -> None:
    m, f = await _both(model, firmware, PROBES[name])
    mc, fc = m.comparable(), f.comparable()
    if name in DOCUMENTED:
        DOCUMENTED[name](mc, fc)
        return
    timing = (mc[2].pop("timing", None), fc[2].pop("timing", None))
    if timing != (None, None):
        _same_timing(*timing)
    assert mc[0] == fc[0], f"client stream differs: model {mc[0]} firmware {fc[0]}"
    assert mc[1] == fc[1], f"air differs: model {mc[1]} firmware {fc[1]}"
    assert {k: v for k, v in mc[2].items() if k != "handshake"} == {
        k: v for k, v in fc[2].items() if k != "handshake"
    }


@pytest.mark.parametrize("nonce", [model_fw.NONCE_ONLY_CONFIG, model_fw.NONCE_ONLY_NODES, 4242])
async def test_handshake_sequence_matches_firmware(
    nonce: int, model: ModelRadio, firmware: FirmwareRadio
) -> None:
    async def run(radio: Radio) -> list[str]:
        async with radio.session(nonce) as s:
            kinds = [handshake_kind(x) for x in s.values["handshake"]]
        # The file manifest lists the radio's state files, which come and go as it saves them:
        # compare that it is there, not how many files it names.
        return [k for i, k in enumerate(kinds) if k != "fileInfo" or kinds[i - 1] != "fileInfo"]

    m, f = await asyncio.gather(run(model), run(firmware))
    assert m == f


async def test_model_reports_the_firmware_version_it_follows(
    model: ModelRadio, firmware: FirmwareRadio
) -> None:
    async def run(radio: Radio) -> Any:
        async with radio.session() as s:
            return next(x.metadata for x in s.values["handshake"] if x.HasField("metadata"))

    m, f = await asyncio.gather(run(model), run(firmware))
    assert f.firmware_version == FIRMWARE_VERSION == model_fw.FOLLOWS_FIRMWARE
    # Documented difference: the model marks itself so that a simulated radio is never mistaken
    # for a real one (relayd doctor shows the version).
    assert m.firmware_version == f"{f.firmware_version}.relayd-sim"
    assert m.device_state_version == f.device_state_version
    assert (m.hw_model, m.hasPKC) == (f.hw_model, f.hasPKC)


def _official_cli(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshtastic", "--host", f"127.0.0.1:{port}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_official_client_export_set_get_match_firmware(
    model: ModelRadio, firmware: FirmwareRadio
) -> None:
    """What hardware/apply-profile.sh and an operator run: `meshtastic --export-config`, `--set`,
    `--get`, with the official client, against both radios."""
    async with firmware.session():
        pass  # the node is up (an earlier probe may have rebooted it)
    await asyncio.sleep(0.3)
    loop = asyncio.get_running_loop()

    async def run(radio: Radio, *args: str) -> subprocess.CompletedProcess[str]:
        return await loop.run_in_executor(None, functools.partial(_official_cli, radio.port, *args))

    async def export(radio: Radio) -> dict[str, Any]:
        r = await run(radio, "--export-config")
        assert r.returncode == 0, r.stderr[-2000:]
        doc = yaml.safe_load(r.stdout)
        assert isinstance(doc, dict), r.stdout
        return doc

    m_doc, f_doc = await export(model), await export(firmware)
    assert set(m_doc) == set(f_doc)
    assert set(m_doc["config"]) == set(f_doc["config"])
    assert m_doc["canned_messages"] == f_doc["canned_messages"]
    for radio in (model, firmware):
        r = await run(radio, "--set", "lora.hop_limit", "4")
        assert r.returncode == 0, r.stderr[-2000:]
        await asyncio.sleep(0.3)
        r = await run(radio, "--get", "lora.hop_limit")
        assert r.returncode == 0, r.stderr[-2000:]
        assert "lora.hop_limit: 4" in r.stdout, (radio.name, r.stdout)
        r = await run(radio, "--set", "lora.hop_limit", "3")
        assert r.returncode == 0, r.stderr[-2000:]
        await asyncio.sleep(0.3)
