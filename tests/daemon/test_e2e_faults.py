"""The relay keeps its promises through broker restarts, radio unplugs and kill -9.

These tests isolate the relay's own promises from RF loss: the neighborhood's links are
made lossless and collision-free, so any missing or doubled alert is the relay's fault.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter

import aiomqtt

from relayd.core.jsonform import encode_alert
from relayd.core.model import Severity, SignedAlert
from relayd.sim.scenario import Scenario, load_scenario
from tests.daemon.conftest import NEIGHBORHOOD, Site, SiteFactory

TIME_SCALE = 20.0


def lossless(scenario: Scenario) -> Scenario:
    links = tuple(dataclasses.replace(link, loss=0.0) for link in scenario.links)
    return dataclasses.replace(scenario, links=links, collisions=False)


async def publish_stream(site: Site, alerts: list[SignedAlert], delay_s: float) -> None:
    """Publish every alert, riding out broker outages (bounded retries).

    Like a careful dispatcher client: a broker that crashes may lose the messages it
    acknowledged in its last moments, so after an outage the last second's alerts are sent
    again. Relays deduplicate, so a resend never doubles an alert on a handheld; it cannot
    mask a relay losing an alert it had accepted, because the relay would drop the resend
    as a duplicate.
    """
    pending = [encode_alert(a) for a in alerts]
    recent: list[tuple[float, bytes]] = []
    loop = asyncio.get_running_loop()
    for _ in range(200):
        try:
            async with aiomqtt.Client("127.0.0.1", site.broker.port, timeout=2) as client:
                while pending:
                    await client.publish(site.topic("outbox"), pending[0], qos=1, timeout=2)
                    recent = [(t, p) for t, p in recent if loop.time() - t < 1.0] + [
                        (loop.time(), pending.pop(0))
                    ]
                    await asyncio.sleep(delay_s)
        except aiomqtt.MqttError:
            pending = [p for _, p in recent] + pending
            recent = []
            await asyncio.sleep(0.2)
        else:
            return
    raise AssertionError(f"{len(pending)} alerts could not be published")


def assert_each_once(site: Site, alerts: list[SignedAlert]) -> None:
    wanted = {a.onair for a in alerts}
    for handheld in site.handhelds:
        counts = Counter(d.text for d in site.hood.displays(handheld) if d.text in wanted)
        missing = len(wanted) - len(counts)
        doubled = {t[:30]: n for t, n in counts.items() if n > 1}
        assert missing == 0, f"{handheld} missed {missing} alerts"
        if doubled:
            # Who sent each copy, and what each relay logged of that alert.
            ids = [a.id_hex for a in alerts if counts[a.onair] > 1]
            copies = [d for d in site.hood.displays(handheld) if counts[d.text] > 1]
            shown = [(d.sender_id, d.packet_id, d.sim_time_s) for d in copies]
            print(f"{handheld} shows twice: {ids}, copies (sender, packet id, sim time): {shown}")
            for relay in site.relays:
                lines = [ln for ln in site.relays[relay].log_text().splitlines() if any(i in ln for i in ids)]
                print(f"--- {relay}", *lines[-30:], sep="\n")
        assert not doubled, f"{handheld} showed duplicates: {doubled}"


def stream(site: Site, n: int, tag: str, severity: Severity = Severity.WARNING) -> list[SignedAlert]:
    return [
        site.network.sign("dispatcher", f"{tag} {i}: patrol on Elm", severity=severity, lifetime_s=3600)
        for i in range(n)
    ]


async def test_broker_restart_and_radio_unplug_lose_nothing_and_double_nothing(
    site_factory: SiteFactory,
) -> None:
    site: Site = await site_factory(scenario=lossless(load_scenario(NEIGHBORHOOD)), time_scale=TIME_SCALE)
    await site.wait_relays_ready()
    alerts = stream(site, 200, "Stream")
    # One alert per 8 s of mesh time: a heavy but sustainable load for one LongFast channel
    # that every relay radio (ROUTER_LATE) rebroadcasts.
    publisher = asyncio.create_task(publish_stream(site, alerts, delay_s=0.4))
    await asyncio.sleep(12)
    site.broker.stop()
    await asyncio.sleep(3)
    site.broker.start()
    await asyncio.sleep(15)
    await site.hood.unplug("relay-center", for_s=3)
    await publisher
    # Within the test's time limit, so that a miss is reported with what the air says of it.
    everywhere = await site.wait_displayed_everywhere(alerts, timeout_s=75)
    assert everywhere, f"missed {site.missed(alerts)}; not lost on air: {site.missed_not_by_the_air(alerts)}"
    await asyncio.sleep(3)
    assert_each_once(site, alerts)


async def test_kill_minus_9_then_restart_loses_nothing_and_rebroadcasts_nothing(
    site_factory: SiteFactory,
) -> None:
    site: Site = await site_factory(scenario=lossless(load_scenario(NEIGHBORHOOD)), time_scale=TIME_SCALE)
    await site.wait_relays_ready()
    alerts = stream(site, 60, "Kill")
    publisher = asyncio.create_task(publish_stream(site, alerts, delay_s=0.4))
    await asyncio.sleep(9)
    site.relays["relay-center"].kill()
    await asyncio.sleep(1.0)
    site.start_relay("relay-center")
    await publisher
    assert await site.wait_displayed_everywhere(alerts, timeout_s=90)
    await asyncio.sleep(4)
    assert_each_once(site, alerts)


async def test_junk_on_every_subscribed_topic_is_counted_and_ignored(site_factory: SiteFactory) -> None:
    site: Site = await site_factory()
    await site.wait_relays_ready()
    junk = [b"{not json", b"\xff\xfe\x00binary", b"x" * 20000, b"[]", b'{"onair": 5}', b'{"v":1}']
    topics = ["outbox", "alerts", "trust", "reports", "relays/ghost/status", "relays/ghost/events"]
    for topic in topics:
        await site.publish_many(site.topic(topic), junk)
    statuses = await site.statuses(settle_s=2.0)
    assert all(r.alive for r in site.relays.values())
    for relay, status in statuses.items():
        assert status.drops.get("malformed", 0) >= 2 * len(junk), (relay, status.drops)
    alert = site.network.sign("dispatcher", "Still working after junk")
    await site.publish(site.topic("outbox"), encode_alert(alert))
    assert await site.wait_displayed_everywhere([alert], timeout_s=30)
    # The junk never reached the alerts feed.
    feed = await site.collect(site.topic("alerts"), 0.5)
    assert all(json.loads(m).get("onair") for m in feed)
