"""The asyncio radio link against a simulated radio speaking the real device API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from meshtastic.protobuf import mesh_pb2

from relayd.daemon.config import RadioConfig
from relayd.daemon.radio import RadioLink, RadioUnavailableError, ReceivedText
from relayd.meshapi import routing
from relayd.meshapi.packets import ROUTING_APP
from relayd.meshapi.routing import Answer
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import load_scenario
from relayd.testing.proxy import FreezableProxy
from tests.daemon.conftest import ONE_RELAY


@pytest.fixture
async def hood() -> AsyncIterator[Neighborhood]:
    async with Neighborhood(load_scenario(ONE_RELAY), time_scale=10.0) as neighborhood:
        yield neighborhood


def link_for(
    hood: Neighborhood, got: list[ReceivedText], errors: list[tuple[int, int]] | None = None
) -> RadioLink:
    endpoint = hood.endpoints["relay"]
    assert endpoint.tcp_port is not None
    config = RadioConfig("main", "tcp", host="127.0.0.1", port=endpoint.tcp_port)
    on_answer = (lambda pid, answer: errors.append((pid, answer.code))) if errors is not None else None
    return RadioLink(config, got.append, on_answer=on_answer)


async def test_backlog_replayed_on_connect_is_skipped(hood: Neighborhood) -> None:
    hood.handheld_send("hh-west", "sent while no client was attached")
    await asyncio.sleep(3.5)  # the radio hears it and queues it for its future client
    got: list[ReceivedText] = []
    link = link_for(hood, got)
    task = asyncio.create_task(link.run())
    try:
        assert await link.wait_connected(10)
        hood.handheld_send("hh-west", "live message")
        assert await hood.wait_for(lambda: any(r.payload == b"live message" for r in got), 10)
        assert [r.payload for r in got if not r.backlog] == [b"live message"]
        # Still handed over, marked: what went on air meanwhile is suppression evidence.
        assert b"sent while no client was attached" in [r.payload for r in got if r.backlog]
        assert link.skipped_backlog >= 1
    finally:
        task.cancel()


async def test_reconnect_after_unplug_delivers_nothing_twice(hood: Neighborhood) -> None:
    got: list[ReceivedText] = []
    link = link_for(hood, got)
    task = asyncio.create_task(link.run())
    try:
        assert await link.wait_connected(10)
        hood.handheld_send("hh-west", "before unplug")
        assert await hood.wait_for(lambda: len(got) == 1, 10)
        await hood.unplug("relay", for_s=1.0)
        assert await hood.wait_for(lambda: not link.connected, 5)
        assert await link.wait_connected(15)
        hood.handheld_send("hh-east", "after replug")
        assert await hood.wait_for(lambda: any(r.payload == b"after replug" for r in got), 10)
        await asyncio.sleep(0.5)
        payloads = [r.payload for r in got]
        assert payloads.count(b"before unplug") == 1
        assert payloads.count(b"after replug") == 1
        assert link.connects == 2
    finally:
        task.cancel()


async def test_firmware_rate_limit_is_reported_as_not_sent_and_retries_get_fresh_ids(
    hood: Neighborhood,
) -> None:
    got: list[ReceivedText] = []
    errors: list[tuple[int, int]] = []
    link = link_for(hood, got, errors)
    task = asyncio.create_task(link.run())
    try:
        assert await link.wait_connected(10)
        first = await link.send_text("first")
        second = await link.send_text("second, too soon")  # within the firmware's 2 s
        assert first != second
        assert await hood.wait_for(lambda: bool(errors), 5)
        assert errors[0][0] == second
        assert errors[0][1] == 38  # Routing.Error.RATE_LIMIT_EXCEEDED
        assert {first, second}.isdisjoint({link.fresh_packet_id() for _ in range(3)})
    finally:
        task.cancel()


def _tap_client_packets(hood: Neighborhood, radio_name: str) -> list[Any]:
    """Packets the radio's firmware took from its client, as the client wrote them."""
    radio = hood.radios[radio_name]
    originate = radio.originate
    seen: list[Any] = []

    def tapped(p: Any, **kwargs: Any) -> Any:
        seen.append(p)
        return originate(p, **kwargs)

    # An instance attribute shadows the method (mypy refuses assigning over one); same call.
    radio.originate = tapped  # type: ignore[method-assign]
    return seen


async def test_texts_carry_the_radios_hop_limit_and_own_node_and_are_confirmed_on_air(
    hood: Neighborhood,
) -> None:
    got: list[ReceivedText] = []
    answers: list[tuple[int, Answer]] = []
    config = RadioConfig("main", "tcp", host="127.0.0.1", port=hood.endpoints["relay"].tcp_port or 0)
    link = RadioLink(config, got.append, on_answer=lambda pid, a: answers.append((pid, a)))
    written = _tap_client_packets(hood, "relay")
    task = asyncio.create_task(link.run())
    try:
        assert await link.wait_connected(10)
        pid = await link.send_text("checkpoint on Elm")
        sent = next(p for p in written if p.id == pid)
        # The firmware fills in a hop limit only for want_ack packets: a client must set it.
        assert sent.hop_limit == link.hop_limit == hood.scenario.hop_limit
        assert getattr(sent, "from") == link.my_node
        assert sent.want_ack
        # "Taken" is not "on air": the firmware's implicit ACK says when it was.
        assert await hood.wait_for(lambda: any(p == pid for p, _ in answers), 10)
        answer = next(a for p, a in answers if p == pid)
        assert answer.sent
    finally:
        task.cancel()


async def test_routing_error_heard_from_another_node_is_not_taken_as_our_radios(
    hood: Neighborhood,
) -> None:
    got: list[ReceivedText] = []
    answers: list[tuple[int, Answer]] = []
    config = RadioConfig("main", "tcp", host="127.0.0.1", port=hood.endpoints["relay"].tcp_port or 0)
    link = RadioLink(config, got.append, on_answer=lambda pid, a: answers.append((pid, a)))
    task = asyncio.create_task(link.run())
    try:
        assert await link.wait_connected(10)
        pid = await link.send_text("checkpoint on Elm")
        # Anyone on the channel can transmit a Routing NAK naming our packet id.
        forged = mesh_pb2.MeshPacket()
        forged.to = hood.node_num("relay")
        forged.decoded.portnum = ROUTING_APP
        forged.decoded.request_id = pid
        nak = mesh_pb2.Routing(error_reason=routing.RATE_LIMIT_EXCEEDED)
        forged.decoded.payload = nak.SerializeToString()
        hood.radios["hh-west"].originate(forged)
        assert await hood.wait_for(lambda: link.foreign_routing >= 1, 10)
        assert all(a.sent for p, a in answers if p == pid)
    finally:
        task.cancel()


async def test_a_hung_radio_is_dropped_and_its_send_is_not_reported_taken(hood: Neighborhood) -> None:
    got: list[ReceivedText] = []
    async with FreezableProxy(hood.endpoints["relay"].tcp_port or 0) as proxy:
        link = RadioLink(RadioConfig("main", "tcp", host="127.0.0.1", port=proxy.port), got.append)
        task = asyncio.create_task(link.run())
        try:
            assert await link.wait_connected(10)
            proxy.frozen.set()
            with pytest.raises(RadioUnavailableError, match="did not answer"):
                await link.send_text("goes nowhere")
            assert not link.connected
            assert link.unresponsive == 1
            proxy.frozen.clear()
            assert await link.wait_connected(20)
            assert await link.send_text("after recovery")
        finally:
            task.cancel()
