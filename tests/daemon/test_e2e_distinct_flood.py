"""A flood of distinct forgeries on the outbox (each new to the verifier's caches) does not
starve genuine alerts: they still reach the handhelds promptly, and the flood is counted."""

from __future__ import annotations

import asyncio
import sys
import time

from bench.bench_flood import forged_payloads
from bench.flood_publisher import MARKER
from relayd.core.jsonform import encode_alert
from tests.daemon.conftest import ONE_RELAY, SiteFactory

RATE = 5000.0
FLOOD_S = 16.0
# By then the relay is seconds behind the flood, if it handles deliveries in arrival order.
GENUINE_AFTER_S = 8.0
PROMPT_S = 3.0


async def test_genuine_alerts_arrive_promptly_during_a_distinct_forgery_flood(
    site_factory: SiteFactory,
) -> None:
    site = await site_factory(ONE_RELAY)
    await site.wait_relays_ready()
    (relay,) = site.relays
    frames = site.workdir / "forged.txt"
    frames.write_text("\n".join(forged_payloads(site.network, 20, marker=MARKER)) + "\n")
    flood = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.flood_publisher",
        str(site.broker.port),
        site.topic("outbox"),
        str(RATE),
        str(FLOOD_S),
        str(frames),
        "1000000",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.sleep(GENUINE_AFTER_S)
        waits: list[float] = []
        for i in range(4):
            alert = site.network.sign("dispatcher", f"Genuine {i}: police at 5th & Main")
            t0 = time.monotonic()
            await site.publish(site.topic("outbox"), encode_alert(alert))
            shown = await site.wait_displayed_everywhere([alert], timeout_s=PROMPT_S)
            assert shown, f"genuine alert {i} not on every handheld within {PROMPT_S} s of a flood"
            waits.append(time.monotonic() - t0)
        out, _ = await asyncio.wait_for(flood.communicate(), FLOOD_S + 10)
    finally:
        if flood.returncode is None:
            flood.kill()
            await flood.wait()
    published = int(out.split()[0])
    assert site.relays[relay].alive
    statuses = await site.statuses(settle_s=6.0)  # a status after the last forgery
    drops = statuses[relay].drops
    counted = drops.get("bad_signature", 0) + drops.get("unknown_key", 0) + drops.get("intake_overload", 0)
    # Every forgery the relay saw is counted under a reason (the broker may shed QoS 0 first).
    assert 0 < counted <= published, (drops, published)
    assert max(waits) < PROMPT_S
