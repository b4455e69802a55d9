"""A forged "alert" broadcast straight to handhelds (anyone with the channel key can) is
answered on air: handhelds read that it is not from dispatch. A genuine alert never is."""

from __future__ import annotations

import asyncio

from relayd.core.jsonform import encode_alert
from relayd.core.model import Severity
from relayd.core.notice import NOTICE_PREFIX
from relayd.sim.scenario import load_scenario
from tests.daemon.conftest import ONE_RELAY, Site, SiteFactory
from tests.daemon.test_e2e_faults import lossless


def notices(site: Site, handheld: str) -> list[str]:
    return [d.text for d in site.hood.displays(handheld) if d.text.startswith(NOTICE_PREFIX)]


async def test_a_forgery_heard_on_rf_is_answered_once_and_a_genuine_alert_never(
    site_factory: SiteFactory,
) -> None:
    site: Site = await site_factory(scenario=lossless(load_scenario(ONE_RELAY)))
    await site.wait_relays_ready()
    genuine = site.network.sign("dispatcher", "Observers needed at Elm & 3rd", severity=Severity.URGENT)
    await site.publish(site.topic("outbox"), encode_alert(genuine))
    assert await site.wait_displayed_everywhere([genuine], timeout_s=30)
    # The attacker re-words a genuine frame (its signature no longer matches) and repeats it.
    raid = site.network.sign("dispatcher", "Raid at Oak & 5th: stay inside", severity=Severity.URGENT)
    fake = raid.onair.replace("stay inside", "run outside")
    site.hood.handheld_send("hh-west", fake)
    assert await site.hood.wait_for(lambda: bool(notices(site, "hh-east")), 30)
    site.hood.handheld_send("hh-west", fake)
    await asyncio.sleep(3)
    for handheld in site.handhelds:
        shown = notices(site, handheld)
        if handheld == "hh-west":
            assert len(shown) <= 1
            continue
        quote = "Raid at Oak & 5th: run o"
        assert shown == [f'{NOTICE_PREFIX}: the message starting "{quote}" is not a verified alert.']
    assert not any("Observers needed" in n for h in site.handhelds for n in notices(site, h))
