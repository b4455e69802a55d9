"""A responder who switches a handheld on after an alert went out still sees it, once."""

from __future__ import annotations

import asyncio

from relayd.core.jsonform import encode_alert
from relayd.core.model import Severity
from relayd.sim.scenario import load_scenario
from relayd.testing.harness import write_relay_config
from tests.daemon.conftest import ONE_RELAY, Site, SiteFactory
from tests.daemon.test_e2e_faults import lossless

TIME_SCALE = 10.0


async def test_a_handheld_switched_on_after_an_alert_is_sent_it_once_by_dm(
    site_factory: SiteFactory,
) -> None:
    site: Site = await site_factory(
        scenario=lossless(load_scenario(ONE_RELAY)), start=False, time_scale=TIME_SCALE
    )
    site.configs["relay"] = write_relay_config(
        site.workdir / "relays",
        "relay",
        site.network,
        radio_port=site.hood.endpoints["relay"].tcp_port,
        broker_port=site.broker.port,
        time_scale=TIME_SCALE,
        topic_root=site.root,
        catchup_after="60s",  # 6 s of wall time at x10
    )
    site.hood.switch("hh-east", on=False)
    site.start_relay("relay")
    await site.wait_relays_ready()
    alert = site.network.sign("dispatcher", "ICE at Oak & 5th: observers needed", severity=Severity.URGENT)
    await site.publish(site.topic("outbox"), encode_alert(alert))
    assert await site.hood.wait_for(lambda: site.displayed("hh-west", alert) == 1, 30)
    assert site.displayed("hh-east", alert) == 0
    await asyncio.sleep(7)
    site.hood.switch("hh-east", on=True)
    assert await site.hood.wait_for(lambda: site.displayed("hh-east", alert) == 1, 30)
    # Switched off and on again: nothing twice.
    site.hood.switch("hh-east", on=False)
    await asyncio.sleep(7)
    site.hood.switch("hh-east", on=True)
    await asyncio.sleep(4)
    assert site.displayed("hh-east", alert) == 1
    assert site.displayed("hh-west", alert) == 1
