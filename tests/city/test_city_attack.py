"""With the shipped ACL and real relays (tests/city/conftest.py): an attacker holding a relay's
leaked broker password (but not its key) and an ordinary dispatcher account claims a heard
handheld's radio as a relay's, answers every alert with "transmitted" and announces 300 fake
relays. relay-a still puts every urgent alert on air in its area (findings 2 and 3)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from relayd.core.codec import decode
from relayd.core.jsonform import onair_from_message
from relayd.core.status import (
    EventKind,
    LinkState,
    RelayEvent,
    RelayState,
    RelayStatus,
    encode_event,
    encode_status,
)
from relayd.meshapi.packets import node_id
from tests.city.conftest import City
from tests.city.test_city_bridge import DELIVERY_TIMEOUT_S, alert_where_relay_a_goes_second

FAKE_PEERS = 300


def _online(relay: str, node: int) -> bytes:
    status = RelayStatus(
        relay=relay,
        state=RelayState.ONLINE,
        ts_s=time.time(),
        radio=LinkState.CONNECTED,
        radio_node=node_id(node),
        broker=LinkState.CONNECTED,
    )
    return encode_status(status)


async def _attack(city: City, heard_node: int) -> None:
    """Answer every outbox alert at once: relay-b's and the dispatcher's "own" relay transmitted it."""
    async with (
        city.city.client("relay-b") as leaked,
        city.city.client("dispatcher-example") as dispatcher,
    ):
        await dispatcher.subscribe("relayd/outbox", qos=1)
        async for msg in dispatcher.messages:
            with contextlib.suppress(ValueError):
                alert_id = decode(onair_from_message(bytes(msg.payload))).alert_id.hex()
                for client, relay in ((leaked, "relay-b"), (dispatcher, "dispatcher-example")):
                    topic = f"relayd/relays/{relay}"
                    await client.publish(f"{topic}/status", _online(relay, heard_node), qos=1, retain=True)
                    event = RelayEvent(relay, EventKind.TRANSMITTED, alert_id, time.time(), "rf")
                    await client.publish(f"{topic}/events", encode_event(event), qos=1)


async def test_leaked_broker_accounts_cannot_silence_or_delay_relay_a(city: City) -> None:
    # relay-a hears hh-a1, so a "relay" claiming hh-a1's radio looked like an RF neighbour.
    city.hood.handheld_send("hh-a1", "radio check", channel_index=0)
    await asyncio.sleep(2.0)
    heard = city.hood.node_num("hh-a1")
    async with city.city.client("dispatcher-example") as dispatcher:
        for i in range(FAKE_PEERS):
            await dispatcher.publish(f"relayd/relays/fake-{i:03d}/status", _online(f"fake-{i:03d}", i), qos=1)
    attacker = asyncio.create_task(_attack(city, heard))
    await asyncio.sleep(1.0)
    try:
        alerts = [alert_where_relay_a_goes_second(city.network, f"Urgent {i}: raid at Elm") for i in range(4)]
        started = time.monotonic()
        for alert in alerts:
            await city.dispatch(alert)
            await asyncio.sleep(0.5)
        for alert in alerts:
            assert await city.wait_shown("a", alert, DELIVERY_TIMEOUT_S), city.logs()
        print(f"4 urgent alerts shown in area a after {time.monotonic() - started:.1f} s under attack")
    finally:
        attacker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await attacker
    assert not [e for e in city.at_city.events if e.relay == "relay-a" and e.event == "suppressed"]
