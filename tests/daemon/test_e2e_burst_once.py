"""A burst released at once to three relays sharing the air (a broker restart releasing its
backlog): every handheld shows every alert once. The relays ahead in an alert's order have
a queue of other alerts before it; the ones behind must follow that queue, not a fixed wait."""

from __future__ import annotations

from relayd.core.jsonform import encode_alert
from relayd.core.model import Severity
from relayd.sim.scenario import load_scenario
from tests.daemon.conftest import NEIGHBORHOOD, SiteFactory
from tests.daemon.test_e2e_faults import lossless

BURST = 12
URGENT = 6
TIME_SCALE = 10.0


async def test_a_burst_at_once_is_shown_once_on_every_handheld(site_factory: SiteFactory) -> None:
    site = await site_factory(scenario=lossless(load_scenario(NEIGHBORHOOD)), time_scale=TIME_SCALE)
    await site.wait_relays_ready()
    # Warnings first, then urgent alerts: every relay sends the urgent ones first, so the
    # warnings wait behind more than was queued when they arrived.
    warnings = [
        site.network.sign("dispatcher", f"Burst {i}: shelter at Oak & {i}th", severity=Severity.WARNING)
        for i in range(BURST)
    ]
    urgent = [
        site.network.sign("dispatcher", f"Urgent {i}: evacuate Elm {i}00 block", severity=Severity.URGENT)
        for i in range(URGENT)
    ]
    alerts = warnings + urgent
    await site.publish_many(site.topic("outbox"), [encode_alert(a) for a in alerts])
    everywhere = await site.wait_displayed_everywhere(alerts, timeout_s=60.0)
    for _ in range(30):
        statuses = await site.statuses(settle_s=1.0)
        if all(s.queue_depth == 0 for s in statuses.values()):
            break
    transmitted = sum(s.transmitted for s in statuses.values())
    shown = {(hh, i): site.displayed(hh, a) for hh in site.handhelds for i, a in enumerate(alerts)}
    twice = sorted(k for k, n in shown.items() if n > 1)
    missed = sorted(k for k, n in shown.items() if n == 0)
    print(f"burst of {len(alerts)}: {transmitted} sent, {len(twice)} shown twice, {len(missed)} missed")
    assert everywhere, missed
    assert twice == []
    assert transmitted == len(alerts)
