"""A handheld's `!r` text becomes one relay-signed report for dispatchers, and an ack."""

from __future__ import annotations

import asyncio
import json

import aiomqtt

from relayd.core.catchup import BOOT_ANNOUNCE_S
from relayd.core.codec import decode
from relayd.core.model import Kind
from relayd.core.verify import Verifier
from tests.daemon.conftest import Site, SiteFactory


async def test_handheld_report_is_wrapped_signed_published_and_acknowledged(
    site_factory: SiteFactory,
) -> None:
    site: Site = await site_factory()
    await site.wait_relays_ready()
    reports: list[dict[str, object]] = []
    subscribed = asyncio.Event()

    async def listen() -> None:
        async with aiomqtt.Client("127.0.0.1", site.broker.port) as client:
            await client.subscribe(site.topic("reports"), qos=1)
            subscribed.set()
            async for msg in client.messages:
                reports.append(json.loads(bytes(msg.payload)))

    listener = asyncio.create_task(listen())
    # A report is not retained: on a loaded machine a fixed pause could end before the
    # subscription, and the report would pass unseen.
    await asyncio.wait_for(subscribed.wait(), 10)
    # Past the handhelds' boot announcements (30 s of mesh time in, all at once, collisions on):
    # a report typed into that crowd can be lost on air, and nothing repeats it.
    assert await site.hood.wait_for(lambda: site.hood.sim_now_s() >= BOOT_ANNOUNCE_S + 15.0, 30)
    site.hood.handheld_send("hh-bob", "!r two vans at Oak & 3rd, agents on foot", channel_index=0)
    bob = site.hood.endpoints["hh-bob"].node_id
    assert await site.hood.wait_for(lambda: bool(reports), 20)
    assert await site.hood.wait_for(lambda: any(d.dm for d in site.hood.displays("hh-bob")), 20)
    await asyncio.sleep(2)
    listener.cancel()

    assert len(reports) == 1, "exactly one relay publishes the report"
    report = reports[0]
    frame = decode(str(report["onair"]))
    assert frame.fields.kind is Kind.REPORT
    assert frame.fields.text == "two vans at Oak & 3rd, agents on foot"
    assert report["origin_node"] == bob
    verdict = Verifier(site.network.bundle).verify_frame(frame, frame.fields.issued_at_s)
    assert verdict.ok
    assert verdict.signer is not None
    assert verdict.signer.role.value == "relay"
    acks = [d for d in site.hood.displays("hh-bob") if d.dm]
    assert len(acks) == 1
    assert "report received" in acks[0].text
    # Never broadcast to handhelds: nobody displays the wrapped report.
    for handheld in site.handhelds:
        assert not any(d.text == report["onair"] for d in site.hood.displays(handheld))
