"""Only signed words steer relays (findings 2 and 3 of the security review).

An attacker with broker access but no relay key claims heard radios as its own, answers
every outbox alert with "transmitted" events (unsigned, signed by a stranger's key, signed
by a dispatcher's key, and on a real relay's topic), and announces 300 fake online relays.
Genuine urgent alerts still go on air everywhere, promptly, and each attempt is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import aiomqtt

from relayd.core.codec import decode
from relayd.core.control import ControlKind, seal
from relayd.core.identity import Identity
from relayd.core.jsonform import encode_alert, onair_from_message
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
from relayd.meshapi.packets import node_id
from tests.daemon.conftest import Site, SiteFactory

FAKE_PEERS = 300
# The genuine alerts must reach every handheld within this (wall clock, time scale 10).
DELIVERY_BOUND_S = 30.0


def _online(relay: str, node: int) -> bytes:
    status = RelayStatus(
        relay=relay,
        state=RelayState.ONLINE,
        ts_s=time.time() + 3600,
        radio=LinkState.CONNECTED,
        radio_node=node_id(node),
        broker=LinkState.CONNECTED,
    )
    return encode_status(status)


async def _answer_every_alert(
    site: Site, forgers: list[tuple[str, bytes | None]], stranger: Identity
) -> None:
    """Read the outbox and claim at once that each alert was transmitted, every way we can."""
    dispatcher = site.network.identities["dispatcher"]
    async with aiomqtt.Client("127.0.0.1", site.broker.port) as client:
        await client.subscribe(site.topic("outbox"), qos=1)
        async for msg in client.messages:
            with contextlib.suppress(Exception):
                alert_id = decode(onair_from_message(bytes(msg.payload))).alert_id.hex()
                for relay, _ in forgers:
                    body = encode_event(RelayEvent(relay, EventKind.TRANSMITTED, alert_id, time.time(), "rf"))
                    topic = site.topic(f"relays/{relay}/events")
                    await client.publish(topic, body, qos=1)
                    for ident in (stranger, dispatcher):
                        forged = seal(ControlKind.EVENT, relay, body, ident.key_id, ident.sign)
                        await client.publish(topic, forged, qos=1)


async def test_forged_events_and_fake_peers_cannot_silence_or_delay_urgent_alerts(
    site_factory: SiteFactory,
) -> None:
    site: Site = await site_factory(name="ctrl")
    await site.wait_relays_ready()
    # Relays hear the handhelds chat, so a status claiming a handheld's radio as its own made
    # that "relay" look like an RF neighbour.
    for handheld in ("hh-alice", "hh-bob"):
        site.hood.handheld_send(handheld, f"radio check from {handheld}", channel_index=0)
    await asyncio.sleep(2.0)
    stranger = Identity.generate("mallory", Role.RELAY)
    claims = {
        "mallory": site.hood.node_num("hh-alice"),
        "mallory-2": site.hood.node_num("hh-bob"),
        "relay-center": site.hood.node_num("hh-alice"),  # on a real relay's topic
    }
    async with aiomqtt.Client("127.0.0.1", site.broker.port) as client:
        for relay, node in claims.items():
            body = _online(relay, node)
            await client.publish(
                site.topic(f"relays/{relay}/status"), body, qos=1, retain=relay != "relay-center"
            )
            forged = seal(ControlKind.STATUS, relay, body, stranger.key_id, stranger.sign)
            await client.publish(site.topic(f"relays/{relay}/status"), forged, qos=1)
        for i in range(FAKE_PEERS):
            relay = f"fake-{i:03d}"
            await client.publish(site.topic(f"relays/{relay}/status"), _online(relay, 0x1000 + i), qos=1)
    forgers: list[tuple[str, bytes | None]] = [(r, None) for r in claims]
    attacker = asyncio.create_task(_answer_every_alert(site, forgers, stranger))
    await asyncio.sleep(1.0)
    try:
        alerts = [site.network.sign("dispatcher", f"Urgent {i}: raid at Elm & {i}th") for i in range(4)]
        started = time.monotonic()
        for alert in alerts:
            await site.publish(site.topic("outbox"), encode_alert(alert))
            await asyncio.sleep(0.5)
        everywhere = await site.wait_displayed_everywhere(alerts, timeout_s=DELIVERY_BOUND_S)
        elapsed_s = time.monotonic() - started
        # A handheld that was itself repeating a frame as an alert went by lost it on the air (no
        # late repeat recovers that yet); any other miss is the attack's doing.
        unexplained = site.missed_not_by_the_air(alerts)
        if unexplained:
            for relay in site.relays:
                print(f"--- {relay}\n{site.relays[relay].log_text()[-4000:]}")
        assert not unexplained, (unexplained, site.missed(alerts))
        if everywhere:
            print(f"4 urgent alerts on every handheld after {elapsed_s:.1f} s under attack")
        else:
            print(f"missed on the air only: {site.missed(alerts)}")
    finally:
        attacker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await attacker
    statuses = await site.statuses()
    assert all(r.alive for r in site.relays.values())
    assert set(site.relays) <= set(statuses)
    for relay in site.relays:
        status = statuses[relay]
        # Every fake status and every forged event was seen and not believed.
        assert status.unverified.get("unsigned", 0) >= FAKE_PEERS, (relay, status.unverified)
        assert status.unverified.get("unknown_key", 0) >= 1, (relay, status.unverified)
        if relay != "relay-center":
            # Forged events under relay-center's name reach its peers and are refused there;
            # events under names the bundle does not list are never subscribed to at all
            # (relayd/core/eventscope.py), and a relay ignores its own topic.
            assert status.unverified.get("not_a_relay_key", 0) >= 1, (relay, status.unverified)
    # And the attacker's retained lies are what a console would see; they carry no signature.
    retained = await site.collect(site.topic("relays/mallory/status"), 0.5)
    assert retained
    assert "format" not in json.loads(retained[-1])
