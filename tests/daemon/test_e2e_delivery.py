"""A dispatcher's alert reaches every responder exactly once, with the bell."""

from __future__ import annotations

import asyncio

from relayd.core.jsonform import encode_alert
from relayd.core.model import Severity
from tests.daemon.conftest import Site, SiteFactory


async def test_outbox_alert_reaches_every_handheld_once_with_bell(site_factory: SiteFactory) -> None:
    site: Site = await site_factory()
    await site.wait_relays_ready()
    alert = site.network.sign(
        "dispatcher", "Police at 5th & Main. Observers to the corner now.", severity=Severity.URGENT
    )
    await site.publish(site.topic("outbox"), encode_alert(alert))
    assert await site.wait_displayed_everywhere([alert], timeout_s=30), {
        h: [d.text[:20] for d in site.hood.displays(h)] for h in site.handhelds
    }
    await asyncio.sleep(3)  # let any redundant transmission arrive
    for handheld in site.handhelds:
        shown = [d for d in site.hood.displays(handheld) if d.text == alert.onair]
        assert len(shown) == 1, f"{handheld} showed the alert {len(shown)} times"
        assert shown[0].bell
