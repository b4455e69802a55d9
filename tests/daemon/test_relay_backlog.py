"""What the radio heard before relayd connected: current field reports reach dispatchers
marked late, older ones are counted (and shown red), everything lands in the signed status."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from relayd.core.backlog import REPORT_MAX_AGE_S
from relayd.core.codec import decode
from relayd.core.status import encode_status, parse_status
from relayd.daemon.config import load_config
from relayd.daemon.radio import ReceivedText
from relayd.daemon.relay import Relay
from relayd.sim.scenario import load_scenario
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork
from tests.daemon.conftest import ONE_RELAY, Site, SiteFactory
from tests.daemon.test_e2e_faults import lossless

NOW_S = 1_800_000_000.0


def heard_before(node: int, packet_id: int, text: str, ago_s: float) -> ReceivedText:
    return ReceivedText(
        "main", node, 0xFFFFFFFF, packet_id, 0, text.encode(), NOW_S - ago_s, 3, 3, backlog=True
    )


def test_backlog_reports_are_delivered_late_or_counted_and_the_status_says_so(
    tmp_path: Path, network: TestNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_relay_config(tmp_path / "relay", "relay-north", network, radio_port=9, broker_port=9)
    now = [NOW_S]
    relay = Relay(load_config(path), clock=lambda: now[0])
    caplog.set_level("INFO", logger="relayd")
    relay._on_radio_text(heard_before(0x1111, 1, "!r two vans at Oak & 3rd", ago_s=600))
    relay._on_radio_text(heard_before(0x2222, 2, "!r checkpoint on Elm", ago_s=REPORT_MAX_AGE_S + 60))
    relay._on_radio_text(heard_before(0x3333, 3, "anyone around?", ago_s=30))
    relay._on_radio_text(heard_before(0x3333, 4, "!omw", ago_s=30))  # which alert? unknown
    now[0] += 60
    relay._release_holds(now[0])

    published = [json.loads(p.payload) for p in relay.storage.pending()]
    assert len(published) == 1, "only the current report reaches dispatchers"
    frame = decode(published[0]["onair"])
    assert frame.fields.text == "(late: heard 07:50:00Z, before relayd connected) two vans at Oak & 3rd"
    assert frame.fields.origin_node == 0x1111
    # Nothing goes on air for backlog: no acknowledgement DM for a late report.
    assert all(len(s) == 0 for s in relay.schedulers.values())

    status = relay.status()
    assert status.backlog == {"late_report": 1, "old_report": 1, "other": 1, "unattributed": 1}
    assert parse_status(encode_status(status)).backlog == status.backlog
    # Logged at INFO by outcome, never the text or the handheld.
    for record in caplog.records:
        assert "vans" not in record.getMessage()
        assert "1111" not in record.getMessage()
    assert any("heard before relayd connected: old_report" in r.getMessage() for r in caplog.records)
    relay.storage.close()


async def test_a_report_sent_while_the_relay_was_down_reaches_dispatchers_marked_late(
    site_factory: SiteFactory,
) -> None:
    site: Site = await site_factory(scenario=lossless(load_scenario(ONE_RELAY)), start=False)
    collecting = asyncio.create_task(site.collect(site.topic("reports"), 25))
    await asyncio.sleep(0.5)
    site.hood.handheld_send("hh-west", "!r smoke on Elm, two cars", channel_index=0)
    # The radio hears it (and the scenario's own report at t=20 s) and keeps both for its
    # next client.
    await asyncio.sleep(3.5)
    site.start_relay("relay")
    await site.wait_relays_ready()
    texts = [decode(json.loads(p)["onair"]).fields.text for p in await collecting]
    assert len(texts) == 2, texts
    assert all(t.startswith("(late: heard ") for t in texts)
    assert sorted(t.split(", before relayd connected) ", 1)[1] for t in texts) == [
        "police at 5th and Main, 3 cars",
        "smoke on Elm, two cars",
    ]
    statuses = await site.statuses()
    assert statuses["relay"].backlog.get("late_report") == 2
