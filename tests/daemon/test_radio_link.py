"""The asyncio radio link against a simulated radio speaking the real device API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from relayd.daemon.config import RadioConfig
from relayd.daemon.radio import RadioLink, ReceivedText
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import load_scenario
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
        assert [r.payload for r in got] == [b"live message"]
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
