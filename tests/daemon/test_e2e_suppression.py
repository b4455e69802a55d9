"""Three relays covering one area transmit an MQTT alert about once (vs 3.0 naively)."""

from __future__ import annotations

import asyncio

from relayd.core.jsonform import encode_alert
from relayd.core.model import Severity
from tests.daemon.conftest import Site, SiteFactory

ALERTS = 50
TIME_SCALE = 20.0


async def _transmissions_per_alert(site: Site) -> float:
    await site.wait_relays_ready()
    alerts = [
        site.network.sign("dispatcher", f"Drill {i}: checkpoint at Elm & {i}th", severity=Severity.WARNING)
        for i in range(ALERTS)
    ]
    await site.publish_many(site.topic("outbox"), [encode_alert(a) for a in alerts], delay_s=0.4)
    # Delivery is the other tests' business (this neighborhood has lossy links); here we wait
    # until every relay has worked through its queue (paced to the air: the naive relays send
    # every alert, three times the frames, so their queues take longer), then count frames.
    for _ in range(60):
        statuses = await site.statuses(settle_s=1.0)
        done = sum(s.transmitted + s.suppressed for s in statuses.values())
        if all(s.queue_depth == 0 for s in statuses.values()) and done >= ALERTS * len(site.relays) * 0.99:
            break
    return sum(s.transmitted for s in statuses.values()) / ALERTS


async def test_suppression_transmits_about_once_against_naive_three(site_factory: SiteFactory) -> None:
    suppressed_site: Site = await site_factory(name="trickle", time_scale=TIME_SCALE)
    ours = await _transmissions_per_alert(suppressed_site)
    suppressed_site.stop()
    await suppressed_site.hood.stop()
    await asyncio.sleep(0.5)
    naive_site: Site = await site_factory(name="naive", suppression=False, time_scale=TIME_SCALE)
    naive = await _transmissions_per_alert(naive_site)
    print(f"transmissions per alert: suppression {ours:.2f}, naive {naive:.2f}")
    assert ours <= 1.2
    assert naive >= 2.9
