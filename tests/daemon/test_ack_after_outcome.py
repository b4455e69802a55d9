"""Nothing acknowledged to the broker before it is safe (issue 16).

An alert whose acceptance could not be stored (a real full disk) is acknowledged only once
its outcome is known; a crash before then and the broker delivers it again. The relay is
driven through its own handlers on a real state directory; the MQTT link against a real
Mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest

from relayd.core.jsonform import encode_alert
from relayd.core.model import SignedAlert
from relayd.core.packetid import first_packet_id
from relayd.daemon.config import MqttConfig, load_config
from relayd.daemon.mqtt import Incoming, MqttLink
from relayd.daemon.relay import Relay
from relayd.meshapi import routing
from relayd.meshapi.routing import classify_routing
from relayd.testing.fulldisk import MountUnavailableError, fill, free, small_filesystem
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork
from relayd.testing.mosquitto import MosquittoBroker

TOPIC = "ackgate/outbox"


@pytest.fixture
def relay_on_small_disk(tmp_path: Path, network: TestNetwork) -> Iterator[tuple[Relay, Path]]:
    path = write_relay_config(tmp_path / "relay", "relay-north", network, radio_port=9, broker_port=9)
    state = tmp_path / "relay" / "relay-north-state"
    try:
        with small_filesystem(state, size_kib=384) as disk:
            relay = Relay(load_config(path))
            try:
                yield relay, disk
            finally:
                relay.storage.close()
    except MountUnavailableError as exc:
        pytest.skip(str(exc))


async def _committed(relay: Relay) -> None:
    """Until the writes so far have committed and their completions have run in the loop."""
    relay.storage.flush()
    for _ in range(3):
        await asyncio.sleep(0)


def _outbox(relay: Relay, alert: SignedAlert) -> Incoming:
    return Incoming(relay.topics.outbox, encode_alert(alert), False)


def _on_air(relay: Relay, alert: SignedAlert) -> None:
    """The radio takes the frame and its firmware confirms it on air."""
    radio = relay.radios[0]
    relay.suppressor.forget(alert.alert_id)
    relay._enqueue(relay._queued_rows[alert.alert_id])
    item = relay.schedulers[radio.name].pop(alert.alert_id)
    assert item is not None
    packet_id = first_packet_id(alert.alert_id)
    relay._track_in_flight(radio.name, packet_id, item)
    relay._on_radio_answer(radio.name, packet_id, classify_routing(routing.NONE, broadcast=True))


async def test_on_a_full_disk_an_alert_is_acknowledged_only_once_it_is_on_air(
    relay_on_small_disk: tuple[Relay, Path], network: TestNetwork
) -> None:
    relay, disk = relay_on_small_disk
    stored = network.sign("dispatcher", "Observers needed at Elm & 3rd")
    first = await relay._on_mqtt(_outbox(relay, stored))
    assert first is not None
    await _committed(relay)
    assert first.done()  # stored: acknowledged once the commit is done
    fill(disk)
    for i in range(200):  # until SQLite's spare pages are used up as well
        alert = network.sign("dispatcher", f"Legal observers to Oak & 5th, group {i} " + "x" * 80)
        after = await relay._on_mqtt(_outbox(relay, alert))
        assert after is not None
        await _committed(relay)
        if not after.done():
            break
    else:
        raise AssertionError("a full disk kept taking acceptances")
    assert relay.storage_error is not None
    # A redelivery (the verifier calls it a duplicate) waits for the same outcome.
    again = await relay._on_mqtt(_outbox(relay, alert))
    assert again is after
    waits = [after, again]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waits)
    _on_air(relay, alert)
    await asyncio.sleep(0)
    assert all(w.done() for w in waits)
    assert relay.counters.transmitted == 1
    # Still full: a small write that happened to fit does not clear the error.
    assert relay.storage_error is not None
    free(disk)


async def _until(done: Callable[[], bool], timeout_s: float) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if done():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


@pytest.mark.mosquitto
async def test_a_held_acknowledgement_is_sent_when_released_and_the_broker_redelivers_until_then(
    mosquitto: MosquittoBroker,
) -> None:
    released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen: list[bytes] = []

    async def hold_first(msg: Incoming) -> asyncio.Future[None] | None:
        seen.append(msg.payload)
        return released if msg.payload == b"unsafe" else None

    async def session(handler: object) -> tuple[MqttLink, asyncio.Task[None]]:
        link = MqttLink(
            MqttConfig(host="127.0.0.1", port=mosquitto.port, client_id="ackgate-relay"),
            subscriptions=[TOPIC],
            handler=handler,  # type: ignore[arg-type]  # test handlers of both shapes
            will_topic="ackgate/relay/status",
            will_payload=lambda: b"",
        )
        task = asyncio.create_task(link.run())
        assert await link.wait_connected(10)
        return link, task

    async def end(task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    link, task = await session(hold_first)
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as publisher:
        await publisher.publish(TOPIC, b"unsafe", qos=1)
        await publisher.publish(TOPIC, b"safe", qos=1)
    await _until(lambda: len(seen) >= 2, 10)
    assert link.unacknowledged == 1
    await end(task)  # the relay dies before the alert's outcome is known

    seen.clear()
    link, task = await session(hold_first)
    await _until(lambda: bool(seen), 10)
    await asyncio.sleep(0.3)
    assert seen == [b"unsafe"]  # redelivered; the safe one was acknowledged at once
    released.set_result(None)
    await _until(lambda: link.unacknowledged == 0, 5)
    await asyncio.sleep(0.2)  # let the PUBACK reach the broker
    await end(task)

    seen.clear()
    link, task = await session(hold_first)
    await asyncio.sleep(1.0)
    await end(task)
    assert seen == []  # acknowledged: not delivered again
