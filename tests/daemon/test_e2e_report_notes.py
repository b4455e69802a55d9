"""Peers' "already reported" notes count only when relay-signed (finding 7 of the security
review): anyone who may publish on the reports topic used to swallow a handheld's report by
naming its packet first."""

from __future__ import annotations

import asyncio
import json

import aiomqtt

from relayd.core.control import ControlKind, seal
from relayd.core.identity import Identity
from relayd.core.model import Role
from relayd.core.status import ReportNote, encode_report_note
from relayd.meshapi.packets import node_id
from relayd.sim.scenario import load_scenario
from tests.daemon.conftest import ONE_RELAY, Site, SiteFactory
from tests.daemon.test_e2e_faults import lossless


async def test_unsigned_or_forged_report_notes_do_not_swallow_a_report(site_factory: SiteFactory) -> None:
    site: Site = await site_factory(scenario=lossless(load_scenario(ONE_RELAY)), name="notes")
    await site.wait_relays_ready()
    reports: list[dict[str, object]] = []

    async def listen() -> None:
        async with aiomqtt.Client("127.0.0.1", site.broker.port) as client:
            await client.subscribe(site.topic("reports"), qos=1)
            async for msg in client.messages:
                doc = json.loads(bytes(msg.payload))
                if doc.get("relay") == "relay":
                    reports.append(doc)

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.5)
    west = site.hood.node_num("hh-west")
    stranger = Identity.generate("mallory", Role.RELAY)
    reporter = site.network.identities["reporter"]
    packets = []
    async with aiomqtt.Client("127.0.0.1", site.broker.port) as attacker:
        for n in range(3):
            packet = site.hood.handheld_send("hh-west", f"!r smoke on Oak, number {n}", channel_index=0)
            packets.append(packet)
            # Named before the relay even hears it (the attacker has a radio on the same channel).
            plain = {"relay": "mallory", "origin_node": node_id(west), "origin_packet": packet}
            await attacker.publish(site.topic("reports"), json.dumps(plain).encode(), qos=1)
            body = encode_report_note(ReportNote("mallory", "00" * 8, west, packet))
            for ident in (stranger, reporter):
                forged = {
                    **plain,
                    "note": seal(ControlKind.REPORT_NOTE, "mallory", body, ident.key_id, ident.sign).decode(),
                }
                await attacker.publish(site.topic("reports"), json.dumps(forged).encode(), qos=1)
            await asyncio.sleep(1.0)

    def published() -> set[object]:
        return {r.get("origin_packet") for r in reports}

    # The scenario's own scripted report may be among them too.
    assert await site.hood.wait_for(lambda: set(packets) <= published(), 20), reports
    listener.cancel()
    status = (await site.statuses())["relay"]
    assert status.unverified.get("unsigned", 0) >= len(packets), status.unverified
    assert status.unverified.get("unknown_key", 0) >= len(packets), status.unverified
    assert status.unverified.get("not_a_relay_key", 0) >= len(packets), status.unverified
