"""The manual-ack seam into aiomqtt (relayd.daemon.mqtt.paho_client).

relayd acknowledges a QoS 1 message only after the daemon stored it, through the paho
client that aiomqtt wraps privately. These tests fail loudly if an aiomqtt or paho release
changes what that relies on, instead of letting the relay silently auto-ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect

import aiomqtt
import paho.mqtt.client as paho
import pytest

from relayd.daemon.config import MqttConfig
from relayd.daemon.mqtt import Incoming, MqttLibraryError, MqttLink, paho_client
from relayd.testing.mosquitto import MosquittoBroker

TOPIC = "seam/outbox"


async def test_installed_aiomqtt_wraps_a_paho_client_with_manual_ack() -> None:
    client = aiomqtt.Client("127.0.0.1", 1, identifier="seam-shape")
    inner = paho_client(client)
    assert isinstance(inner, paho.Client)
    assert list(inspect.signature(inner.ack).parameters) == ["mid", "qos"]
    assert list(inspect.signature(inner.manual_ack_set).parameters) == ["on"]
    inner.manual_ack_set(True)
    assert inner._manual_ack is True


def test_a_client_without_paho_inside_is_refused_with_the_fix() -> None:
    class Aiomqtt3Like:
        _client = object()

    with pytest.raises(MqttLibraryError, match=r"constraints\.txt"):
        paho_client(Aiomqtt3Like())  # type: ignore[arg-type] # not an aiomqtt.Client, on purpose


async def _run_until_first(link_id: str, port: int, *, hang: bool) -> Incoming:
    """Run an MqttLink until its handler sees a message; with `hang`, never finish handling."""
    got: asyncio.Future[Incoming] = asyncio.get_running_loop().create_future()

    async def handler(msg: Incoming) -> None:
        if not got.done():
            got.set_result(msg)
        if hang:
            await asyncio.Event().wait()  # the daemon "dies" before storing it

    link = MqttLink(
        MqttConfig(host="127.0.0.1", port=port, client_id=link_id),
        subscriptions=[TOPIC],
        handler=handler,
        will_topic=f"seam/{link_id}/status",
        will_payload=lambda: b"",
    )
    task = asyncio.create_task(link.run())
    try:
        assert await link.wait_connected(10)
        return await asyncio.wait_for(got, 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.mosquitto
async def test_a_message_not_yet_handled_is_redelivered_and_a_handled_one_is_not(
    mosquitto: MosquittoBroker,
) -> None:
    # The first session subscribes, so the broker queues for it from now on.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_run_until_first("seam-relay", mosquitto.port, hang=False), 1.5)
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as publisher:
        await publisher.publish(TOPIC, b"first", qos=1)
    first = await _run_until_first("seam-relay", mosquitto.port, hang=True)
    assert first.payload == b"first"
    # Not acked (the handler never returned): the broker must hand it over again.
    again = await _run_until_first("seam-relay", mosquitto.port, hang=False)
    assert again.payload == b"first"
    # Acked now: a later session gets only what is new.
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as publisher:
        await publisher.publish(TOPIC, b"second", qos=1)
    after = await _run_until_first("seam-relay", mosquitto.port, hang=False)
    assert after.payload == b"second"
