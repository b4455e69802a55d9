"""A city of two bridged neighborhoods (tests/city/conftest.py): one dispatcher alert reaches every
handheld in both areas exactly once, relays in separate areas never silence each other, and an
alert sent while the city link is cut still reaches the far area after the link comes back."""

from __future__ import annotations

import asyncio

from relayd.core.model import SignedAlert
from relayd.core.suppression import rank_of
from relayd.testing.keys import TestNetwork
from tests.city.conftest import AREAS, City

DELIVERY_TIMEOUT_S = 30.0
# Long enough for a bridge echo or a second transmission to show up if there were one: several
# suppression slots and LoRa airtimes at the simulator's time scale.
SETTLE_S = 3.0


def alert_where_relay_a_goes_second(network: TestNetwork, text: str, lifetime_s: int = 1800) -> SignedAlert:
    """An alert for which relay-a, knowing relay-b as an online peer, ranks second and holds it
    for a suppression slot. relay-b knows no peers (status crosses the bridge upward only), so it
    transmits at once, and its "transmitted" event reaches relay-a while relay-a still holds."""
    for _ in range(64):
        alert = network.sign("dispatcher", text, lifetime_s=lifetime_s)
        if rank_of("relay-a", alert.alert_id, ["relay-b"]) == 1:
            return alert
    raise AssertionError("no alert ranked relay-a second in 64 tries")


def all_handhelds() -> list[str]:
    return [h for _, handhelds in AREAS.values() for h in handhelds]


def assert_shown_once_everywhere(city: City, alert: SignedAlert) -> None:
    shown = {h: city.shown(h, alert) for h in all_handhelds()}
    assert shown == dict.fromkeys(shown, 1), f"{shown}\n{city.logs()}"


def assert_each_relay_transmitted_once(city: City, alert: SignedAlert) -> None:
    # Each relay's own broker carries its events at QoS 1 (the bridge carries them at QoS 0).
    assert len(city.at_city.transmitted("relay-a", alert)) == 1, city.logs()
    assert len(city.at_neighborhood.transmitted("relay-b", alert)) == 1, city.logs()
    suppressed = [e for e in city.at_city.events + city.at_neighborhood.events if e.event == "suppressed"]
    assert suppressed == []


async def test_city_alert_reaches_both_areas_once_and_areas_never_suppress_each_other(city: City) -> None:
    alert = alert_where_relay_a_goes_second(city.network, "Gas leak on 5th: stay indoors")
    await city.dispatch(alert)
    assert await city.wait_shown("a", alert, DELIVERY_TIMEOUT_S), city.logs()
    assert await city.wait_shown("b", alert, DELIVERY_TIMEOUT_S), city.logs()
    await asyncio.sleep(SETTLE_S)

    assert_shown_once_everywhere(city, alert)
    assert_each_relay_transmitted_once(city, alert)
    # relay-a had relay-b's "transmitted" event before its own hold ended, and transmitted anyway:
    # relay-b's radio is not an RF neighbour of relay-a's, so the event must not suppress.
    b_seen_at_city = city.at_city.transmitted("relay-b", alert)
    a_transmitted = city.at_city.transmitted("relay-a", alert)
    assert b_seen_at_city, "relay-b's event never crossed the bridge"
    assert b_seen_at_city[0].at < a_transmitted[0].at
    # No bridge echo: each relay's retained "active" marker crossed the bridge exactly once, and
    # neither came back to the broker it was published on a second time.
    for collector in (city.at_city, city.at_neighborhood):
        assert collector.active_from("relay-a", alert) == 1
        assert collector.active_from("relay-b", alert) == 1


async def test_alert_sent_while_city_link_is_cut_reaches_far_area_after_restore(city: City) -> None:
    await city.link.cut()
    # The bridge's last will at the city: dispatchers see the neighborhood is cut off.
    await city.wait_bridge_state(b"0")
    alert = city.network.sign("dispatcher", "Boil water notice, Elm district", lifetime_s=90)
    await city.dispatch(alert)
    assert await city.wait_shown("a", alert, DELIVERY_TIMEOUT_S), city.logs()
    # Area B has no RF path from area A and no MQTT path from the city: nothing arrives there.
    await asyncio.sleep(SETTLE_S)
    assert all(city.shown(h, alert) == 0 for h in AREAS["b"][1])
    assert city.at_neighborhood.transmitted("relay-b", alert) == []

    # The city broker queued the outbox message for the bridge's persistent session.
    await city.link.restore()
    await city.wait_bridge_state(b"1")
    assert await city.wait_shown("b", alert, DELIVERY_TIMEOUT_S), city.logs()
    shown_at = max(d.wall_time for h in AREAS["b"][1] for d in city.hood.displays(h) if d.text == alert.onair)
    assert shown_at < alert.fields.expires_at_s
    await asyncio.sleep(SETTLE_S)
    assert_shown_once_everywhere(city, alert)
    assert_each_relay_transmitted_once(city, alert)
