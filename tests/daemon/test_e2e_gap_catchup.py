"""Catch-up after a gap: a relay whose broker session was lost while it was away learns the
active alerts from its peers and puts on air, once, what its area missed, and nothing an RF
neighbour already put on air (relayd/core/reconcile.py, relayd/daemon/sync.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt

from relayd.core.jsonform import encode_alert
from relayd.core.model import Severity
from relayd.core.status import RelayStatus
from relayd.sim.scenario import load_scenario
from tests.daemon.conftest import Site, SiteFactory
from tests.daemon.test_e2e_faults import lossless

TIME_SCALE = 10.0

# Area A (relay-a, hh-a) and area B (relay-b and relay-b2, which hear each other, and hh-b).
# No link between the areas: relay-a's frames never reach area B.
TWO_AREAS = """\
name = "two-areas"
preset = "LONG_FAST"
seed = 3
hop_limit = 3
collisions = false
region = "EU_868"

[[channels]]
name = "alerts"
psk = "AQ=="

[[nodes]]
name = "relay-a"
role = "relay"
device_role = "ROUTER_LATE"
long_name = "Relay A"
tcp_port = 0

[[nodes]]
name = "relay-b"
role = "relay"
device_role = "ROUTER_LATE"
long_name = "Relay B"
tcp_port = 0

[[nodes]]
name = "relay-b2"
role = "relay"
device_role = "ROUTER_LATE"
long_name = "Relay B2"
tcp_port = 0

[[nodes]]
name = "hh-a"
role = "handheld"
long_name = "Handheld A"

[[nodes]]
name = "hh-b"
role = "handheld"
long_name = "Handheld B"

[[links]]
a = "relay-a"
b = "hh-a"
snr = 6.0
rssi = -98

[[links]]
a = "relay-b"
b = "hh-b"
snr = 6.0
rssi = -98

[[links]]
a = "relay-b2"
b = "hh-b"
snr = 5.0
rssi = -100

[[links]]
a = "relay-b"
b = "relay-b2"
snr = 7.0
rssi = -95
"""


async def _site(site_factory: SiteFactory, tmp_path: Path) -> Site:
    path = tmp_path / "two-areas.toml"
    path.write_text(TWO_AREAS)
    site = await site_factory(scenario=lossless(load_scenario(path)), time_scale=TIME_SCALE)
    await site.wait_relays_ready()
    return site


async def _lose_session(site: Site, relay: str) -> None:
    """What a broker that lost a relay's session leaves: a clean session under its client id."""
    async with aiomqtt.Client(
        "127.0.0.1", site.broker.port, identifier=f"relayd-{relay}", clean_session=True
    ):
        pass


def _transmitted(statuses: dict[str, RelayStatus]) -> dict[str, int]:
    return {r: s.transmitted for r, s in statuses.items()}


async def test_a_relay_back_without_its_session_airs_what_its_area_missed_once(
    site_factory: SiteFactory,
    tmp_path: Path,
) -> None:
    site = await _site(site_factory, tmp_path)
    site.relays["relay-b"].terminate()
    site.relays["relay-b2"].terminate()
    await _lose_session(site, "relay-b")
    await _lose_session(site, "relay-b2")
    alert = site.network.sign("dispatcher", "ICE at Oak & 5th: observers needed", severity=Severity.URGENT)
    await site.publish(site.topic("outbox"), encode_alert(alert))
    assert await site.hood.wait_for(lambda: site.displayed("hh-a", alert) == 1, 30)
    assert site.displayed("hh-b", alert) == 0  # area B's relays are away
    site.start_relay("relay-b")
    site.start_relay("relay-b2")
    # relay-a's "transmitted" covers area A only: area B gets it from one of its own relays.
    assert await site.hood.wait_for(lambda: site.displayed("hh-b", alert) == 1, 40), site.relays[
        "relay-b"
    ].log_text()[-3000:]
    await asyncio.sleep(6)  # time for a second copy, were one coming
    assert site.displayed("hh-b", alert) == 1, "\n".join(
        site.relays[r].log_text()[-3000:] for r in ("relay-b", "relay-b2")
    )
    assert site.displayed("hh-a", alert) == 1
    sent = _transmitted(await site.statuses())
    assert sent["relay-b"] + sent["relay-b2"] == 1, sent


async def test_a_relay_back_after_its_rf_neighbour_covered_the_gap_airs_nothing(
    site_factory: SiteFactory,
    tmp_path: Path,
) -> None:
    site = await _site(site_factory, tmp_path)
    # A first alert with everyone up: one of area B's relays sends it, the other hears it.
    first = site.network.sign("dispatcher", "Checkpoint on Elm: avoid", severity=Severity.WARNING)
    await site.publish(site.topic("outbox"), encode_alert(first))
    assert await site.wait_displayed_everywhere([first], 30)
    await asyncio.sleep(2)
    sent = _transmitted(await site.statuses())
    assert sent["relay-b"] + sent["relay-b2"] == 1, sent
    sender = "relay-b" if sent["relay-b"] == 1 else "relay-b2"
    listener = "relay-b2" if sender == "relay-b" else "relay-b"
    # The relay that heard its neighbour loses power (its radio too) and its session is lost.
    site.relays[listener].terminate()
    site.hood.switch(listener, on=False)
    await _lose_session(site, listener)
    second = site.network.sign("dispatcher", "ICE at Oak & 5th: observers needed", severity=Severity.URGENT)
    await site.publish(site.topic("outbox"), encode_alert(second))
    assert await site.wait_displayed_everywhere([second], 30)
    await asyncio.sleep(5)  # the handheld's and the ROUTER_LATE rebroadcasts are over
    site.hood.switch(listener, on=True)
    site.start_relay(listener)
    await site.wait_relays_ready()
    await asyncio.sleep(6)
    for handheld in site.handhelds:
        assert site.displayed(handheld, first) == 1
        assert site.displayed(handheld, second) == 1
    after = _transmitted(await site.statuses())
    assert after[listener] == 0, after
    # It did learn of the alert, and took it without airing it on its RF neighbour's word:
    # covered (the neighbour's answer came first) or stood down (relay-a's came first, saying
    # "air" for area A's sake).
    log = site.relays[listener].log_text()
    covered = "catch-up: an active alert this relay missed (covered)" in log
    assert covered or f"{sender} put it on air (catch-up)" in log, log[-3000:]
