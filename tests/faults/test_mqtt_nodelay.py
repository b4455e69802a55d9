"""Regression: the relay's MQTT link turns Nagle's algorithm off.

Found by bench/bench_latency.py: paho leaves TCP_NODELAY off, so a small PUBLISH or PUBACK
written while an earlier one was unacknowledged waited for the broker's delayed ACK
(40 ms on Linux) -- 40 ms latency spikes, and a publisher falling seconds behind a steady
stream of alerts heard on RF.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from relayd.daemon.config import MqttConfig
from relayd.daemon.mqtt import MqttLink
from relayd.testing.mosquitto import MosquittoBroker

pytestmark = pytest.mark.mosquitto


async def _noop(_msg: object) -> None:
    return None


async def test_relay_mqtt_socket_has_nagle_off(mosquitto: MosquittoBroker) -> None:
    link = MqttLink(
        MqttConfig(host="127.0.0.1", port=mosquitto.port, client_id="nodelay-test"),
        subscriptions=["relayd/outbox"],
        handler=_noop,
        will_topic="relayd/relays/nodelay-test/status",
        will_payload=lambda: b"",
    )
    task = asyncio.create_task(link.run())
    try:
        assert await link.wait_connected(10)
        client = link._client
        assert client is not None
        sock = client._client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
