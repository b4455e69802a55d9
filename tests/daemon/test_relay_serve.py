"""The whole relay serving, in-process: its real core, TaskGroup and Storage, with fake radio
and broker links in place of the serial port and the MQTT client. No subprocess, no sleeps
in the test: it waits on what the fakes record. (The subprocess end-to-end tests, against
the simulator and a real Mosquitto, are the test_e2e_* files.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

from relayd.core.jsonform import encode_alert
from relayd.core.model import Kind, SignedAlert
from relayd.core.packetid import first_packet_id
from relayd.core.status import EventKind, LinkState, RelayState, parse_event, parse_status
from relayd.daemon.config import load_config
from relayd.daemon.intake_queue import IntakeQueue
from relayd.daemon.metrics import registry_for, render
from relayd.daemon.mqtt import Incoming, MqttLink
from relayd.daemon.radio import RadioLink, ReceivedText
from relayd.daemon.relay import Relay
from relayd.meshapi import routing
from relayd.meshapi.packets import BROADCAST_NUM
from relayd.meshapi.routing import classify_routing
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork

MY_NODE = 0x1234ABCD
HANDHELD = 0x0BADF00D
WAIT_S = 10.0


@dataclass(frozen=True)
class Frame:
    text: str
    to: int
    packet_id: int


class FakeRadio(RadioLink):
    """A radio that takes every frame; its firmware confirms each on air unless told to
    keep quiet (then the frame is in doubt until the link drops)."""

    confirm = True
    changed: asyncio.Event  # set whenever the relay writes to a link or a link changes state

    def setup(self, changed: asyncio.Event) -> None:
        self.frames: list[Frame] = []
        self.changed = changed

    async def run(self) -> None:
        self.my_node = MY_NODE
        self.back()
        await asyncio.Event().wait()

    async def send_text(
        self,
        text: str,
        *,
        to: int = BROADCAST_NUM,
        channel: int = 0,
        packet_id: int | None = None,
        want_ack: bool | None = None,
    ) -> int:
        assert packet_id is not None
        self.frames.append(Frame(text, to, packet_id))
        self.changed.set()
        if self.confirm and want_ack:
            answer = classify_routing(routing.NONE, broadcast=True)
            assert self._on_answer is not None
            asyncio.get_running_loop().call_soon(self._on_answer, packet_id, answer)
        return packet_id

    def hear(self, text: str, packet_id: int) -> None:
        self._on_text(
            ReceivedText(self.name, HANDHELD, BROADCAST_NUM, packet_id, 0, text.encode(), 0.0, 3, 3)
        )

    def drop(self) -> None:
        self._set_state(LinkState.DISCONNECTED)
        self.changed.set()

    def back(self) -> None:
        self.connects += 1
        self._set_state(LinkState.CONNECTED)
        self.changed.set()


@dataclass
class Published:
    topic: str
    payload: bytes
    retain: bool


class FakeBroker(MqttLink):
    """A broker link that is always up and keeps what the relay published."""

    published: list[Published]
    changed: asyncio.Event

    async def run(self) -> None:
        self.published = []
        self.connects += 1
        self._set_state(LinkState.CONNECTED)
        self.changed.set()
        if self._on_connect is not None:
            await self._on_connect()
        await asyncio.Event().wait()

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        self.published.append(Published(topic, payload, retain))
        self.changed.set()
        return True

    async def disconnect(self) -> None:
        self._set_state(LinkState.DISCONNECTED)

    async def deliver(self, topic: str, payload: bytes) -> None:
        """A message from the broker, handled as the real link does (then acknowledged)."""
        await self._handler(Incoming(topic, payload, False))


@dataclass
class Running:
    relay: Relay
    radio: FakeRadio
    broker: FakeBroker
    stop: asyncio.Event
    task: asyncio.Task[None]
    seen: list[str] = field(default_factory=list)

    async def until(self, done: Callable[[], bool]) -> None:
        """Until `done`, checked whenever the relay did something to a link (bounded, so a
        failure cannot hang the test)."""
        async with asyncio.timeout(WAIT_S):
            while not done():
                self.radio.changed.clear()
                await self.radio.changed.wait()

    def bodies(self, topic: str) -> list[bytes]:
        """The signed bodies the relay published on `topic` (relayd/core/control.py)."""
        return [json.loads(p.payload)["body"].encode() for p in self.broker.published if p.topic == topic]

    def events(self, kind: EventKind, alert: SignedAlert) -> int:
        topic = self.relay.topics.events(self.relay.config.relay_id)
        return sum(
            1 for e in map(parse_event, self.bodies(topic)) if e.event is kind and e.alert_id == alert.id_hex
        )


@pytest.fixture
async def running(tmp_path: Path, network: TestNetwork) -> AsyncIterator[Running]:
    path = write_relay_config(
        tmp_path / "relay", "relay-north", network, radio_port=9, broker_port=9, time_scale=100.0
    )
    relay = Relay(load_config(path), radio_link=FakeRadio, mqtt_link=FakeBroker)
    radio = relay.radios[0]
    broker = relay.mqtt
    assert isinstance(radio, FakeRadio)
    assert isinstance(broker, FakeBroker)
    changed = asyncio.Event()
    radio.setup(changed)
    broker.changed = changed
    stop = asyncio.Event()
    async with relay:
        task = asyncio.create_task(relay.serve(stop))
        state = Running(relay, radio, broker, stop, task)
        await state.until(lambda: radio.connected and broker.connected)
        yield state
        stop.set()
        async with asyncio.timeout(WAIT_S):
            await task


async def test_an_outbox_alert_goes_on_air_once_under_its_own_packet_id(
    running: Running, network: TestNetwork
) -> None:
    relay, radio = running.relay, running.radio
    alert = network.sign("dispatcher", "Observers needed at Elm & 3rd")
    await running.broker.deliver(relay.topics.outbox, encode_alert(alert))
    await running.until(lambda: relay.counters.transmitted == 1)
    assert radio.frames == [Frame(alert.onair, BROADCAST_NUM, first_packet_id(alert.alert_id))]
    assert alert.alert_id not in relay.outbound
    assert not relay.storage.queued()
    await running.until(lambda: running.events(EventKind.TRANSMITTED, alert) == 1)


async def test_a_relay_that_hears_the_rf_copy_first_never_transmits(
    running: Running, network: TestNetwork
) -> None:
    relay, radio = running.relay, running.radio
    alert = network.sign("dispatcher", "Observers needed at Elm & 3rd")
    radio.hear(alert.onair, packet_id=77)  # another relay's copy, before the outbox's
    assert relay.counters.heard == 1
    await running.broker.deliver(relay.topics.outbox, encode_alert(alert))
    assert alert.alert_id not in relay.outbound  # a duplicate: evidence, nothing to hold
    assert relay.outbound.depth() == 0
    assert radio.frames == []
    # and the heard copy was published for dispatchers
    await running.until(lambda: any(p.topic == relay.topics.alerts for p in running.broker.published))


async def test_a_frame_lost_with_its_radio_goes_again_under_the_same_id(
    running: Running, network: TestNetwork
) -> None:
    relay, radio = running.relay, running.radio
    radio.confirm = False  # the radio takes it, then reboots before saying it was on air
    alert = network.sign("dispatcher", "Observers needed at Elm & 3rd")
    await running.broker.deliver(relay.topics.outbox, encode_alert(alert))
    await running.until(lambda: len(radio.frames) == 1)
    assert relay.counters.transmitted == 0
    radio.drop()
    radio.confirm = True
    radio.back()
    await running.until(lambda: relay.counters.transmitted == 1)
    assert [f.packet_id for f in radio.frames] == [first_packet_id(alert.alert_id)] * 2
    assert not relay.storage.queued()


async def test_a_cancel_while_held_means_nothing_goes_on_air(running: Running, network: TestNetwork) -> None:
    relay, radio = running.relay, running.radio
    radio.confirm = False
    first = network.sign("dispatcher", "Observers needed at Elm & 3rd")
    later = network.sign("dispatcher", "Legal observers to Oak & 5th")
    await running.broker.deliver(relay.topics.outbox, encode_alert(first))
    await running.broker.deliver(relay.topics.outbox, encode_alert(later))
    cancel = network.sign("dispatcher", "Cancelled: Oak & 5th is clear", kind=Kind.CANCEL, ref=later.alert_id)
    # The three arrive in one turn of the event loop (handling a message never waits), so
    # `later` is still held for its turn when its cancel comes.
    await running.broker.deliver(relay.topics.outbox, encode_alert(cancel))
    assert later.alert_id not in relay.queued
    await running.until(lambda: any(f.text == cancel.onair for f in radio.frames))
    assert [f.text for f in radio.frames if f.text != cancel.onair] == [first.onair]


async def test_a_stop_ends_every_task_and_says_offline_last(running: Running) -> None:
    running.stop.set()
    async with asyncio.timeout(WAIT_S):
        await running.task
    status_topic = running.relay.topics.status(running.relay.config.relay_id)
    last = parse_status(running.bodies(status_topic)[-1])
    assert last.state is RelayState.OFFLINE
    assert [p.retain for p in running.broker.published if p.topic == status_topic][-1]
    assert not running.broker.connected


async def test_what_the_mqtt_intake_sheds_under_a_flood_is_counted_in_metrics(running: Running) -> None:
    """The intake's own queue, fed past its QoS 0 bound: each shed delivery shows on /metrics."""
    relay = running.relay
    intake = IntakeQueue(2, stats=relay.mqtt.intake)
    for mid in range(5):
        intake.put_nowait(aiomqtt.Message("relayd/relays/x/status", b"{}", 0, False, mid, None))
    intake.put_nowait(aiomqtt.Message("relayd/outbox", b"{}", 1, False, 9, None))
    assert intake.qsize() == 3  # two peer messages and the QoS 1 one: nothing acknowledged is shed
    body, _ = render(registry_for(relay), "application/openmetrics-text; version=1.0.0")
    assert 'relayd_dropped_frames_total{reason="intake_overload"} 3.0' in body.decode()
    assert relay.status().drops.get("intake_overload") == 3
