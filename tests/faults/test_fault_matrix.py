"""Each fault of issue 16, alone, on lossless links: every handheld shows every alert exactly once.

The air is made lossless and collision-free (tests/daemon/test_e2e_faults.py `lossless`), so a
missing or doubled alert is the relays' fault, not the radio channel's:

* a radio unplugged just after it took a frame (the frame goes on air, its confirmation is lost);
* a radio rebooted with a frame in its transmit queue (the frame is lost with the queue);
* a relay killed (-9) in the write-ahead window: its turn came and it handed the frame to a
  radio that never sent it (hung), then it died, while a neighbour covered the alert;
* three relays, the centre radio unplugged during a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable

import aiomqtt

from relayd.core.jsonform import MalformedMessage, encode_alert
from relayd.core.model import Severity, SignedAlert
from relayd.core.status import EventKind, RelayEvent, parse_event
from relayd.core.suppression import rank_of
from relayd.sim.scenario import load_scenario
from relayd.testing.harness import write_relay_config
from relayd.testing.proxy import FreezableProxy
from tests.daemon.conftest import NEIGHBORHOOD, ONE_RELAY, Site, SiteFactory
from tests.daemon.test_e2e_faults import assert_each_once, lossless

TIME_SCALE = 10.0
RELAYS = ("relay-north", "relay-center", "relay-south")


async def _on_event(site: Site, want: Callable[[RelayEvent], bool], ready: asyncio.Event) -> RelayEvent:
    """The first relay event that `want`s (the subscription is up once `ready` is set)."""
    async with aiomqtt.Client("127.0.0.1", site.broker.port) as client:
        await client.subscribe(site.topic("relays/+/events"), qos=1)
        ready.set()
        async for msg in client.messages:
            with contextlib.suppress(MalformedMessage):
                event = parse_event(bytes(msg.payload))
                if want(event):
                    return event
    raise AssertionError("the broker connection ended")


def _burst(site: Site, n: int, tag: str) -> list[SignedAlert]:
    return [
        site.network.sign("dispatcher", f"{tag} {i}: checkpoint on Elm", severity=Severity.URGENT)
        for i in range(n)
    ]


async def _one_relay(site_factory: SiteFactory) -> Site:
    site = await site_factory(scenario=lossless(load_scenario(ONE_RELAY)), time_scale=TIME_SCALE)
    await site.wait_relays_ready()
    return site


async def _taken_then(site: Site, alerts: list[SignedAlert], fault: Callable[[], object]) -> None:
    """Publish `alerts`; the moment the relay's radio takes the first frame, apply `fault`."""
    ready = asyncio.Event()
    watcher = asyncio.create_task(_on_event(site, lambda e: e.event is EventKind.TAKEN, ready))
    await ready.wait()
    await site.publish_many(site.topic("outbox"), [encode_alert(a) for a in alerts])
    await asyncio.wait_for(watcher, 30)
    result = fault()
    if asyncio.iscoroutine(result):
        await result


async def test_a_radio_unplugged_mid_send_shows_each_alert_once(site_factory: SiteFactory) -> None:
    site = await _one_relay(site_factory)
    alerts = _burst(site, 4, "Unplug")
    await _taken_then(site, alerts, lambda: site.hood.unplug("relay", for_s=3))
    assert await site.wait_displayed_everywhere(alerts, timeout_s=60)
    await asyncio.sleep(4)  # a resend under a fresh id would show by now
    assert_each_once(site, alerts)


async def test_a_radio_rebooted_with_a_frame_queued_shows_it_once(site_factory: SiteFactory) -> None:
    site = await _one_relay(site_factory)
    alerts = _burst(site, 3, "Reboot")
    await _taken_then(site, alerts, lambda: site.hood.reboot("relay", down_s=2))
    assert await site.wait_displayed_everywhere(alerts, timeout_s=60), {
        h: len(site.hood.displays(h)) for h in site.handhelds
    }
    await asyncio.sleep(4)
    assert_each_once(site, alerts)


async def test_three_relays_with_the_centre_radio_unplugged_during_a_burst(
    site_factory: SiteFactory,
) -> None:
    site = await site_factory(scenario=lossless(load_scenario(NEIGHBORHOOD)), time_scale=TIME_SCALE)
    await site.wait_relays_ready()
    warmup = _burst(site, 3, "Warm-up")  # relays learn which radios they hear
    await site.publish_many(site.topic("outbox"), [encode_alert(a) for a in warmup])
    assert await site.wait_displayed_everywhere(warmup, timeout_s=60)
    alerts = _burst(site, 8, "Burst")
    await site.publish_many(site.topic("outbox"), [encode_alert(a) for a in alerts])
    await asyncio.sleep(1.0)
    await site.hood.unplug("relay-center", for_s=4)
    assert await site.wait_displayed_everywhere(alerts, timeout_s=120)
    await asyncio.sleep(5)
    assert_each_once(site, [*warmup, *alerts])


def _queued(site: Site, relay: str, alert: SignedAlert) -> bool:
    """The alert is in the relay's persisted queue (accepted for air, not yet sent or stood down)."""
    db = site.workdir / "relays" / f"{relay}-state" / "relayd.sqlite3"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)) as conn:
        row = conn.execute("SELECT 1 FROM queue WHERE alert_id = ?", (alert.alert_id,)).fetchone()
    return row is not None


async def test_kill_9_in_the_write_ahead_window_while_a_neighbour_covers(site_factory: SiteFactory) -> None:
    """relay-center's turn comes first; its radio (hung) never sends the frame; relay-center is
    killed before any neighbour's word reaches it; a neighbour sends the alert. After its
    restart relay-center's queued frame is moot: it must stand down, not send it again."""
    site = await site_factory(
        scenario=lossless(load_scenario(NEIGHBORHOOD)), time_scale=TIME_SCALE, start=False
    )
    async with FreezableProxy(site.hood.endpoints["relay-center"].tcp_port or 0) as proxy:
        site.configs["relay-center"] = write_relay_config(
            site.workdir / "relays",
            "relay-center",
            site.network,
            radio_port=proxy.port,
            broker_port=site.broker.port,
            time_scale=TIME_SCALE,
            topic_root=site.root,
        )
        for relay in RELAYS:
            site.start_relay(relay)
        await site.wait_relays_ready()
        # Until relay-center has heard both neighbours' radios (it honours their word then).
        heard: set[str] = set()
        warmup: list[SignedAlert] = []
        for i in range(8):
            # Alternately an alert relay-north, then relay-south, is first in line for.
            first = ("relay-north", "relay-south")[i % 2]
            alert = next(
                a
                for a in (
                    site.network.sign(
                        "dispatcher", f"Warm-up {i}.{n}: patrol on Oak", severity=Severity.WARNING
                    )
                    for n in range(64)
                )
                if rank_of(first, a.alert_id, RELAYS) == 0
            )
            warmup.append(alert)
            await site.publish(site.topic("outbox"), encode_alert(alert))
            assert await site.wait_displayed_everywhere([alert], timeout_s=30)
            await asyncio.sleep(1.5)
            status = (await site.statuses(settle_s=0.5)).get("relay-center")
            heard = set(status.rf_heard) if status else set()
            if len(heard) >= 2:
                break
        assert len(heard) >= 2, heard
        # An alert relay-center is first in line for: its turn comes, and its radio is hung.
        alert = next(
            a
            for a in (
                site.network.sign("dispatcher", f"ICE at 5th & Main ({n})", severity=Severity.URGENT)
                for n in range(64)
            )
            if rank_of("relay-center", a.alert_id, RELAYS) == 0
        )
        proxy.frozen.set()
        await site.publish(site.topic("outbox"), encode_alert(alert))
        assert await site.hood.wait_for(lambda: _queued(site, "relay-center", alert), 30)
        await asyncio.sleep(0.3)  # its turn (rank 0): the frame goes to the hung radio
        site.relays["relay-center"].kill()  # before the next relay's turn, a slot later
        assert await site.wait_displayed_everywhere([alert], timeout_s=30)  # a neighbour covered it
        proxy.frozen.clear()
        site.start_relay("relay-center")
        await site.wait_relays_ready()
        await asyncio.sleep(8)  # its hold, and time for a second copy were one sent
        assert_each_once(site, [*warmup, alert])
        assert "suppressed " + alert.id_hex in site.relays["relay-center"].log_text()
