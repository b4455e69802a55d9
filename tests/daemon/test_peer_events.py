"""The relay's peer-event handling in process (a real Relay, real storage, links not started):
whose "transmitted" makes it stand down, fed through its whole MQTT handler."""

from __future__ import annotations

import time
from pathlib import Path

from relayd.core.control import ControlKind
from relayd.core.jsonform import encode_alert
from relayd.core.model import Role
from relayd.core.status import (
    EventKind,
    LinkState,
    RelayEvent,
    RelayState,
    RelayStatus,
    encode_event,
    encode_status,
)
from relayd.daemon.config import load_config
from relayd.daemon.mqtt import Incoming
from relayd.daemon.relay import Relay
from relayd.meshapi.packets import node_id
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork, make_network

SHARED_NODE = 0x0B0B0B0B


def _relay(tmp_path: Path) -> tuple[Relay, TestNetwork]:
    members = {
        "dispatcher": Role.DISPATCHER,
        "relay-a": Role.RELAY,
        "relay-b": Role.RELAY,
        "seized": Role.RELAY,
    }
    net = make_network(tmp_path / "keys", members)
    config = write_relay_config(tmp_path, "relay-a", net, radio_port=1, broker_port=1)
    return Relay.load(load_config(config)), net


async def _say(relay: Relay, net: TestNetwork, who: str, kind: ControlKind, body: bytes) -> None:
    leaf = "status" if kind is ControlKind.STATUS else "events"
    await relay._on_mqtt(Incoming(f"relayd/relays/{who}/{leaf}", net.seal(who, kind, body), retain=False))


async def _online(relay: Relay, net: TestNetwork, who: str, node: int) -> None:
    status = RelayStatus(
        who, RelayState.ONLINE, time.time(), radio=LinkState.CONNECTED, radio_node=node_id(node)
    )
    await _say(relay, net, who, ControlKind.STATUS, encode_status(status))


async def _held_alert(relay: Relay, net: TestNetwork) -> bytes:
    alert = net.sign("dispatcher", "Raid at 5th & Main")
    await relay._on_mqtt(Incoming("relayd/outbox", encode_alert(alert), retain=False))
    assert alert.alert_id in relay.suppressor
    return alert.alert_id


async def _transmitted(relay: Relay, net: TestNetwork, who: str, alert_id: bytes) -> None:
    event = RelayEvent(who, EventKind.TRANSMITTED, alert_id.hex(), time.time(), "rf")
    await _say(relay, net, who, ControlKind.EVENT, encode_event(event))


async def test_a_verified_rf_neighbours_signed_transmitted_stands_the_relay_down(tmp_path: Path) -> None:
    relay, net = _relay(tmp_path)
    relay.neighbours.heard_nodes.add(SHARED_NODE)
    await _online(relay, net, "relay-b", SHARED_NODE)
    alert_id = await _held_alert(relay, net)
    await _transmitted(relay, net, "relay-b", alert_id)
    assert alert_id not in relay.suppressor
    assert relay.counters.suppressed == 1


async def test_a_radio_claimed_by_two_relays_stands_no_one_down(tmp_path: Path) -> None:
    # A seized relay key claims relay-b's radio: neither may silence us on its word alone.
    relay, net = _relay(tmp_path)
    relay.neighbours.heard_nodes.add(SHARED_NODE)
    await _online(relay, net, "relay-b", SHARED_NODE)
    await _online(relay, net, "seized", SHARED_NODE)
    alert_id = await _held_alert(relay, net)
    await _transmitted(relay, net, "seized", alert_id)
    assert alert_id in relay.suppressor
    assert relay.counters.unverified["wrong_relay"] == 1
    assert relay.counters.handler_errors == 0


async def test_a_peer_without_a_signed_status_or_an_unheard_radio_stands_no_one_down(tmp_path: Path) -> None:
    relay, net = _relay(tmp_path)
    alert_id = await _held_alert(relay, net)
    await _transmitted(relay, net, "relay-b", alert_id)  # no status from relay-b yet
    await _online(relay, net, "relay-b", SHARED_NODE)  # a radio we never heard
    await _transmitted(relay, net, "relay-b", alert_id)
    assert alert_id in relay.suppressor
