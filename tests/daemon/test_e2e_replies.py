"""Responders answer an alert from stock handhelds (a keyword, a tapback): each answer becomes
one relay-signed report referring to the alert, and nothing goes back on air."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiomqtt

from relayd.core.codec import decode
from relayd.core.jsonform import encode_alert
from relayd.core.model import Kind, Severity
from relayd.core.replies import ReplyWord, reply_of_report
from relayd.core.verify import Verifier
from relayd.sim.scenario import load_scenario
from tests.daemon.conftest import NEIGHBORHOOD, Site, SiteFactory
from tests.daemon.test_e2e_faults import lossless


async def test_keyword_and_tapback_answers_are_wrapped_once_each_and_never_broadcast(
    site_factory: SiteFactory,
) -> None:
    # Lossless: one answer sent once, with no retry on a stock handheld, must reach a relay.
    site: Site = await site_factory(scenario=lossless(load_scenario(NEIGHBORHOOD)))
    await site.wait_relays_ready()
    reports: list[dict[str, object]] = []

    async def listen() -> None:
        async with aiomqtt.Client("127.0.0.1", site.broker.port) as client:
            await client.subscribe(site.topic("reports"), qos=1)
            async for msg in client.messages:
                reports.append(json.loads(bytes(msg.payload)))

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.5)
    alert = site.network.sign("dispatcher", "ICE at Oak & 5th: observers needed", severity=Severity.URGENT)
    await site.publish(site.topic("outbox"), encode_alert(alert))
    assert await site.wait_displayed_everywhere([alert], 30)
    shown = next(d for d in site.hood.displays("hh-bob") if d.text == alert.onair)
    assert shown.packet_id, "the handheld knows the packet id it received the alert under"

    site.hood.handheld_send("hh-alice", "!omw")
    site.hood.handheld_send("hh-bob", "\U0001f44d", reply_id=shown.packet_id, emoji=True)
    site.hood.handheld_send("hh-carol", "!y but later")  # chat, not an answer
    try:
        assert await site.hood.wait_for(lambda: len(reports) >= 2, 20)
        await asyncio.sleep(3)  # a second relay's copy would arrive by now
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener

    verifier = Verifier(site.network.bundle)
    words: dict[object, ReplyWord | None] = {}
    for report in reports:
        frame = decode(str(report["onair"]))
        assert frame.fields.kind is Kind.REPORT
        assert frame.fields.ref == alert.alert_id
        verdict = verifier.verify_frame(frame, frame.fields.issued_at_s)
        assert verdict.ok
        assert verdict.signer is not None
        assert verdict.signer.role.value == "relay"
        words[report["origin_node"]] = reply_of_report(frame.fields.text, frame.fields.ref)
    assert len(reports) == 2, "one relay publishes each answer"
    assert words == {
        site.hood.endpoints["hh-alice"].node_id: ReplyWord.ON_MY_WAY,
        site.hood.endpoints["hh-bob"].node_id: ReplyWord.YES,
    }
    # Never on air: no handheld shows a wrapped answer, and no ack DM costs airtime.
    for handheld in site.handhelds:
        for shown_msg in site.hood.displays(handheld):
            assert not shown_msg.dm
            assert all(shown_msg.text != r["onair"] for r in reports)
