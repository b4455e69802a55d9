"""The MQTT link follows a changing subscription list on a real Mosquitto, and drops what
an older relay had subscribed in the same persistent session."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import aiomqtt
import pytest

from relayd.daemon.config import MqttConfig
from relayd.daemon.mqtt import Incoming, MqttLink
from relayd.testing.mosquitto import MosquittoBroker


async def _until(done: Callable[[], bool], timeout_s: float) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if done():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


def _link(port: int, seen: list[str], subscriptions: list[str], retired: list[str]) -> MqttLink:
    async def handler(msg: Incoming) -> None:
        seen.append(msg.topic)

    return MqttLink(
        MqttConfig(host="127.0.0.1", port=port, client_id="subs-relay"),
        subscriptions=subscriptions,
        handler=handler,
        will_topic="subs/relay/status",
        will_payload=lambda: b"",
        retired=retired,
    )


async def _publish(port: int, topics: list[str]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic in topics:
            await client.publish(topic, b"x", qos=1)


@pytest.mark.mosquitto
async def test_subscriptions_follow_the_list_and_an_old_wildcard_is_dropped(
    mosquitto: MosquittoBroker,
) -> None:
    port = mosquitto.port
    seen: list[str] = []
    # An older relay's session: subscribed to every relay's events.
    old = _link(port, seen, ["subs/relays/+/events"], [])
    task = asyncio.create_task(old.run())
    assert await old.wait_connected(10)
    await old.disconnect()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    link = _link(port, seen, ["subs/relays/a/events"], ["subs/relays/+/events"])
    task = asyncio.create_task(link.run())
    try:
        assert await link.wait_connected(10)
        await asyncio.sleep(0.2)
        await _publish(port, ["subs/relays/a/events", "subs/relays/b/events"])
        await _until(lambda: "subs/relays/a/events" in seen, 5)
        await asyncio.sleep(0.3)
        assert seen == ["subs/relays/a/events"]  # the wildcard went with the old relayd
        seen.clear()
        link.set_subscriptions(["subs/relays/b/events"])
        await asyncio.sleep(0.3)
        await _publish(port, ["subs/relays/a/events", "subs/relays/b/events"])
        await _until(lambda: bool(seen), 5)
        await asyncio.sleep(0.3)
        assert seen == ["subs/relays/b/events"]
        assert link.delivered == 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
