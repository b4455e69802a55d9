"""Nothing a broker account publishes stops a relay: every kind of hostile payload on every
topic the relay subscribes to is counted as malformed under its topic, acknowledged, and the
relay goes on delivering genuine alerts (finding 1 of the security review)."""

from __future__ import annotations

import asyncio

import aiomqtt

from relayd.core.jsonform import encode_alert
from relayd.sim.scenario import load_scenario
from relayd.testing.hostile import hostile_payloads
from tests.daemon.conftest import ONE_RELAY, Site, SiteFactory
from tests.daemon.test_e2e_faults import lossless

# Every topic kind the relay subscribes to. Events: of the relays the trust bundle names
# (relayd/core/eventscope.py), so relay-north's, whose key is in the bundle.
SUBSCRIBED = ["outbox", "alerts", "reports", "trust", "relays/mallory/status", "relays/relay-north/events"]


async def test_hostile_payloads_on_every_topic_are_counted_and_the_relay_keeps_delivering(
    site_factory: SiteFactory,
) -> None:
    # Lossless links: this test is about the relay, not about a frame lost on air.
    site: Site = await site_factory(scenario=lossless(load_scenario(ONE_RELAY)), name="hostile")
    await site.wait_relays_ready()
    payloads = hostile_payloads("mallory")
    async with aiomqtt.Client("127.0.0.1", site.broker.port) as client:
        for leaf in SUBSCRIBED:
            for payload in payloads.values():
                await client.publish(site.topic(leaf), payload, qos=1)
        # The retained one that killed every relay on every restart.
        await client.publish(site.topic("relays/mallory/status"), payloads["huge_int_ts"], qos=1, retain=True)
    statuses = await site.statuses(settle_s=3.0)
    relay = site.relays["relay"]
    assert relay.alive, relay.log_text()[-3000:]
    malformed = statuses["relay"].malformed
    expected = {"outbox", "alerts", "reports", "trust", "status", "events"}
    assert expected <= set(malformed), malformed
    # Every one was refused on the outbox (an empty message included).
    assert malformed["outbox"] == len(payloads)
    alert = site.network.sign("dispatcher", "Still delivering after hostile payloads")
    await site.publish(site.topic("outbox"), encode_alert(alert))
    assert await site.wait_displayed_everywhere([alert], timeout_s=30)

    # Acknowledged, not redelivered: after a restart only the retained status is read again
    # (and, unsigned, not even parsed).
    relay.terminate()
    site.start_relay("relay")
    await site.wait_relays_ready()
    await asyncio.sleep(2.0)
    statuses = await site.statuses()
    assert site.relays["relay"].alive, site.relays["relay"].log_text()[-3000:]
    again = statuses["relay"].malformed
    assert again.get("outbox", 0) == 0, again
    assert again.get("status", 0) + statuses["relay"].unverified.get("unsigned", 0) >= 1, again
