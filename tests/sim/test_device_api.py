"""The firmware side of the device API, driven by a raw framing+protobuf client."""

from __future__ import annotations

import asyncio
import json
import os
import tty
from pathlib import Path

import pytest
from meshtastic.protobuf import mesh_pb2

from relayd.meshapi.framing import StreamDecoder, encode_frame
from relayd.meshapi.packets import (
    BROADCAST_NUM,
    ROUTING_APP,
    TEXT_MESSAGE_APP,
    parse_from_radio,
    text_packet,
    to_radio_heartbeat,
    to_radio_packet,
    to_radio_want_config,
)
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import LinkSpec, Role, Scenario, make_node
from tests.sim.apiclient import ApiClient


def triangle() -> Scenario:
    """Two relay radios and a handheld that all hear each other."""
    nodes = (make_node("ra", Role.RELAY), make_node("rb", Role.RELAY), make_node("hh", Role.HANDHELD))
    links = (LinkSpec("ra", "rb", 6.0), LinkSpec("ra", "hh", 4.0), LinkSpec("rb", "hh", 5.0))
    return Scenario(name="triangle", nodes=nodes, links=links)


async def test_handshake_follows_firmware_order_and_echoes_nonce() -> None:
    async with Neighborhood(triangle(), time_scale=50) as hood:
        c = await ApiClient.connect(hood.endpoints["ra"].tcp_port or 0)
        try:
            msgs = await c.handshake(nonce=1234)
        finally:
            await c.close()
    kinds = [m.WhichOneof("payload_variant") for m in msgs]
    # Firmware 2.8 order; the fifth is region_presets, newer than the meshtastic package's protobufs.
    assert kinds[:5] == ["my_info", "deviceuiConfig", "node_info", "metadata", None]
    assert kinds[5:13] == ["channel"] * 8
    assert kinds[-6:] == ["fileInfo"] * 5 + ["config_complete_id"]
    assert msgs[0].my_info.my_node_num == hood.node_num("ra")
    assert msgs[2].node_info.num == hood.node_num("ra")
    assert msgs[3].metadata.firmware_version == "2.8.0.relayd-sim"
    channels = [m.channel for m in msgs[5:13]]
    assert [ch.settings.name for ch in channels[:2]] == ["alerts", "reports"]
    assert channels[0].role == 1
    assert channels[1].role == 2
    assert channels[2].role == 0
    configs = [m.config for m in msgs if m.WhichOneof("payload_variant") == "config"]
    sections = {c.WhichOneof("payload_variant") for c in configs}
    assert {"device", "position", "power", "network", "display", "lora", "bluetooth", "security"} <= sections
    lora = next(c.lora for c in configs if c.HasField("lora"))
    assert lora.hop_limit == 3
    assert lora.tx_enabled
    modules = [m.moduleConfig for m in msgs if m.WhichOneof("payload_variant") == "moduleConfig"]
    ext = next(m.external_notification for m in modules if m.HasField("external_notification"))
    assert ext.enabled
    assert ext.alert_bell
    others = {m.node_info.num for m in msgs[13:] if m.WhichOneof("payload_variant") == "node_info"}
    assert others == {hood.node_num("rb"), hood.node_num("hh")}


async def test_garbage_truncated_and_malformed_frames_are_skipped_link_stays_up() -> None:
    async with Neighborhood(triangle(), time_scale=50) as hood:
        c = await ApiClient.connect(hood.endpoints["ra"].tcp_port or 0)
        try:
            await c.send_raw(b"\xc3" * 32 + b"random noise\n\x94")  # wake burst, junk, lone START1
            await c.send_raw(bytes([0x94, 0xC3, 0xFF, 0xFF]))  # impossible length
            await c.send_raw(encode_frame(b"\xff\xff\xff"))  # not a ToRadio
            await c.handshake()
            await c.send(to_radio_heartbeat())
            qs = await c.until("queueStatus")
            assert qs.queueStatus.maxlen == 16
            session = hood.radio("ra").session
            assert session is not None
            assert session.decoder.skipped_bytes > 0
            assert session.malformed == 1
        finally:
            await c.close()


async def test_oversize_payload_is_rejected_with_too_large() -> None:
    async with Neighborhood(triangle(), time_scale=50) as hood:
        c = await ApiClient.connect(hood.endpoints["ra"].tcp_port or 0)
        try:
            await c.handshake()
            pkt = mesh_pb2.MeshPacket()
            pkt.id = 77
            pkt.to = BROADCAST_NUM
            pkt.decoded.portnum = TEXT_MESSAGE_APP
            pkt.decoded.payload = b"x" * 233  # 232 is the most a channel broadcast carries
            await c.send(to_radio_packet(pkt))
            qs = await c.until("queueStatus")
            assert qs.queueStatus.res == mesh_pb2.Routing.Error.TOO_LARGE
            assert qs.queueStatus.mesh_packet_id == 77
            nak = await c.until("packet")
            routing = mesh_pb2.Routing.FromString(nak.packet.decoded.payload)
            assert nak.packet.decoded.portnum == ROUTING_APP
            assert nak.packet.decoded.request_id == 77
            assert routing.error_reason == mesh_pb2.Routing.Error.TOO_LARGE
        finally:
            await c.close()
        assert hood.stats().frames_sent == 0


async def test_second_text_within_two_seconds_is_rate_limited() -> None:
    async with Neighborhood(triangle(), time_scale=1) as hood:
        c = await ApiClient.connect(hood.endpoints["ra"].tcp_port or 0)
        try:
            await c.handshake()
            # `from` = our own node: the firmware addresses the rate-limit error to it.
            me = hood.node_num("ra")
            one = text_packet("one", packet_id=1001)
            two = text_packet("two", packet_id=1002)
            setattr(one, "from", me)
            setattr(two, "from", me)
            await c.send(to_radio_packet(one))
            await c.send(to_radio_packet(two))
            first = await c.until("queueStatus")
            assert (first.queueStatus.res, first.queueStatus.mesh_packet_id) == (0, 1001)
            second = await c.until("queueStatus")
            assert second.queueStatus.mesh_packet_id == 1002
            nak = await c.until("packet")
            assert nak.packet.decoded.request_id == 1002
            routing = mesh_pb2.Routing.FromString(nak.packet.decoded.payload)
            assert routing.error_reason == mesh_pb2.Routing.Error.RATE_LIMIT_EXCEEDED
            await asyncio.sleep(2.1)
            await c.send(to_radio_packet(text_packet("three", packet_id=1003)))
            third = await c.until("queueStatus")
            while third.queueStatus.mesh_packet_id != 1003:
                third = await c.until("queueStatus")
            assert third.queueStatus.res == 0
        finally:
            await c.close()
        ok = await hood.wait_for(lambda: len(hood.displays("hh")) >= 2, 8.0)
        assert ok
        assert [d.text for d in hood.displays("hh")] == ["one", "three"]


async def test_client_packet_gets_from_id_and_hop_fields_assigned() -> None:
    async with Neighborhood(triangle(), time_scale=50) as hood:
        a = await ApiClient.connect(hood.endpoints["ra"].tcp_port or 0)
        b = await ApiClient.connect(hood.endpoints["rb"].tcp_port or 0)
        try:
            await a.handshake()
            await b.handshake()
            await a.send(to_radio_packet(text_packet("hi b", channel_index=1, hop_limit=3)))
            qs = await a.until("queueStatus")
            assert qs.queueStatus.mesh_packet_id != 0
            got = await b.until("packet", timeout_s=10)
            p = got.packet
            assert getattr(p, "from") == hood.node_num("ra")
            assert p.id == qs.queueStatus.mesh_packet_id
            assert (p.hop_start, p.hop_limit, p.channel) == (3, 3, 1)
            assert p.decoded.payload == b"hi b"
            assert p.rx_time > 0
            assert p.rx_snr == 6.0
            assert p.rx_rssi != 0
        finally:
            await a.close()
            await b.close()


async def test_backlog_is_replayed_after_config_complete() -> None:
    async with Neighborhood(triangle(), time_scale=50) as hood:
        hood.handheld_send("hh", "while you were away")
        assert await hood.wait_for(lambda: len(hood.radio("ra").to_phone) == 1, 10)
        c = await ApiClient.connect(hood.endpoints["ra"].tcp_port or 0)
        try:
            msgs = await c.handshake()
            assert all(m.WhichOneof("payload_variant") != "packet" for m in msgs)
            replay = await c.until("packet")
            assert replay.packet.decoded.payload == b"while you were away"
        finally:
            await c.close()


async def test_direct_message_reaches_only_its_addressee() -> None:
    async with Neighborhood(triangle(), time_scale=50) as hood:
        hood.handheld_send("hh", "just for ra", to="ra")
        assert await hood.wait_for(lambda: len(hood.radio("ra").to_phone) >= 1, 10)
        await asyncio.sleep(0.3)  # let rb's copy (if any) arrive
        assert [bytes(p.decoded.payload) for p in hood.radio("ra").to_phone] == [b"just for ra"]
        assert all(p.decoded.payload != b"just for ra" for p in hood.radio("rb").to_phone)


async def test_handheld_displays_text_with_bell_and_logs_jsonl(tmp_path: Path) -> None:
    log = tmp_path / "hh.jsonl"
    async with Neighborhood(triangle(), time_scale=50, handheld_log_path=log) as hood:
        c = await ApiClient.connect(hood.endpoints["ra"].tcp_port or 0)
        try:
            await c.handshake()
            await c.send(to_radio_packet(text_packet("\x07URGENT: road closed\nsig")))
            assert await hood.wait_for(lambda: bool(hood.displays("hh")), 10)
        finally:
            await c.close()
    shown = hood.displays("hh")[0]
    assert shown.text == "\x07URGENT: road closed\nsig"
    assert shown.bell
    assert not shown.dm
    assert shown.sender_id == f"!{hood.node_num('ra'):08x}"
    assert shown.channel_name == "alerts"
    line = json.loads(log.read_text().splitlines()[0])
    assert line["text"] == shown.text
    assert line["bell"] is True
    assert line["handheld"] == "hh"
    assert {"sim_time_s", "wall_time", "sender_name", "channel_index", "dm"} <= set(line)


async def test_unplug_drops_link_and_refuses_until_replugged() -> None:
    async with Neighborhood(triangle(), time_scale=50) as hood:
        port = hood.endpoints["ra"].tcp_port or 0
        c = await ApiClient.connect(port)
        await c.handshake()
        await hood.unplug("ra", 0.5)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await c.next(timeout_s=2)
        await c.close()
        await asyncio.sleep(0)
        with pytest.raises(ConnectionRefusedError):
            await ApiClient.connect(port)
        await asyncio.sleep(0.7)
        c2 = await ApiClient.connect(port)
        try:
            msgs = await c2.handshake()
            assert msgs[0].WhichOneof("payload_variant") == "my_info"
        finally:
            await c2.close()


async def test_reboot_sends_rebooted_first_on_next_connection() -> None:
    async with Neighborhood(triangle(), time_scale=50) as hood:
        port = hood.endpoints["ra"].tcp_port or 0
        await hood.reboot("ra", down_s=0.3)
        with pytest.raises(ConnectionRefusedError):
            await ApiClient.connect(port)
        await asyncio.sleep(0.5)
        c = await ApiClient.connect(port)
        try:
            first = await c.next()
            assert first.WhichOneof("payload_variant") == "rebooted"
            assert first.rebooted
            msgs = await c.handshake()
            assert msgs[0].my_info.reboot_count == 1
        finally:
            await c.close()


async def _pty_exchange(path: str, frames: list[bytes], wait_s: float) -> list[mesh_pb2.FromRadio]:
    """Open the radio's serial port, write frames, collect FromRadio for `wait_s`, close it."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        tty.setraw(fd)
        for f in frames:
            os.write(fd, f)
        decoder = StreamDecoder()
        got: list[mesh_pb2.FromRadio] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while loop.time() < deadline:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                await asyncio.sleep(0.02)
                continue
            got.extend(parse_from_radio(p) for p in decoder.feed(data))
        return got
    finally:
        os.close(fd)


async def test_serial_api_remembers_packet_ids_across_reconnects() -> None:
    """The firmware's serial API is one PhoneAPI for the radio's uptime: a packet id resent by a
    client that reopened the port is still "seen recently" and ignored (a TCP connection is a
    fresh PhoneAPI and accepts it)."""
    nodes = (make_node("ra", Role.RELAY, pty=True, tcp_port=0), make_node("hh", Role.HANDHELD))
    scenario = Scenario(name="serial", nodes=nodes, links=(LinkSpec("ra", "hh", 6.0),))
    async with Neighborhood(scenario, time_scale=1) as hood:
        path = hood.endpoints["ra"].pty_path or ""
        hello = encode_frame(to_radio_want_config(7))
        text = encode_frame(to_radio_packet(text_packet("once", packet_id=5001, hop_limit=3)))
        first = await _pty_exchange(path, [hello, text], 1.0)
        again = await _pty_exchange(path, [hello, text], 1.0)

        def ids(msgs: list[mesh_pb2.FromRadio]) -> list[int]:
            return [m.queueStatus.mesh_packet_id for m in msgs if m.HasField("queueStatus")]

        assert ids(first) == [5001]
        assert ids(again) == []
        c = await ApiClient.connect(hood.endpoints["ra"].tcp_port or 0)
        try:
            await c.handshake()
            await c.send(to_radio_packet(text_packet("again", packet_id=5001, hop_limit=3)))
            qs = await c.until("queueStatus")
            assert qs.queueStatus.mesh_packet_id == 5001
        finally:
            await c.close()
