"""A late repeat recovers an urgent alert that handhelds missed on air, and shows it to
nobody twice (relayd/core/repeat.py).

One relay (north) sends a burst of urgent alerts; the other two relay radios run with no
relayd behind them, as repeaters. While north's radio puts the first alert on air, two
handhelds are in a fade: hh-alice, who hears north directly, and hh-dave, who hears only
the other relays' radios. They miss that alert and all of its flood. Once north's radio
has taken 20 other frames (its PhoneAPI forgets the id) and has nothing else to send, the
alert goes once more under the same packet id. Everyone who has it drops the copy; alice
shows it; the repeater radios relay the originator's copy once more, so dave shows it too.
The other alerts of the burst are repeated as well (each repeat pushes an older id out of
the radio's memory): none may show twice. With `late_repeat = "off"` the two never see the
first alert: the test's own control.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from google.protobuf.message import DecodeError
from meshtastic.protobuf import mesh_pb2

from relayd.core.jsonform import encode_alert
from relayd.meshapi.packets import TEXT_MESSAGE_APP
from relayd.sim.frames import Transmitted
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import load_scenario
from tests.daemon.conftest import GENEROUS_LIMITS, NEIGHBORHOOD, Site, SiteFactory
from tests.daemon.test_e2e_faults import lossless

# More than the radio's memory of 20 client ids: the first alerts can be repeated in-burst.
BURST = 24
TIME_SCALE = 20.0
RELAY = "relay-north"
FADED = ("hh-alice", "hh-dave")
QUIET_S = 60.0


def fade_first_frame(hood: Neighborhood) -> list[str]:
    """FADED lose every copy of the first text RELAY's radio puts on air, until its flood is
    over (the first of RELAY's frames after that ends the fade). Returns, once on air, its text."""
    relay_num = hood.node_num(RELAY)
    first: list[tuple[int, int]] = []
    texts: list[str] = []

    def watch(tx: Transmitted) -> None:
        p = tx.packet
        if tx.node != RELAY or tx.rebroadcast or p.from_num != relay_num or not is_text(p.data):
            return
        if not first:
            first.append(p.key)
            texts.append(text_of(p.data))
            for name in FADED:
                hood.medium.fade_for(name, first[0])
        elif len(texts) == 1 and p.key != first[0] and not hood.medium.carrying(first[0]):
            texts.append("")  # the fade is over, for good
            for name in FADED:
                hood.medium.fade_for(name, first[0], faded=False)

    hood.on_air.append(watch)
    return texts


def is_text(data: bytes) -> bool:
    d = mesh_pb2.Data()
    try:
        d.ParseFromString(data)
    except DecodeError:
        return False
    return bool(d.portnum == TEXT_MESSAGE_APP)


def text_of(data: bytes) -> str:
    d = mesh_pb2.Data()
    d.ParseFromString(data)
    return bytes(d.payload).decode("utf-8", "replace")


def repeats_handed(site: Site) -> int:
    return site.relays[RELAY].log_text().count("for handhelds that missed it")


async def repeats_done(site: Site) -> None:
    """Until the relay has handed no repeat for QUIET_S of mesh time (each waits the longest
    flood, 19.7 s), at most a minute: every repeat's copies have landed, so a duplicate would show."""
    last, since = repeats_handed(site), 0.0
    for _ in range(60):
        await asyncio.sleep(1.0)
        now = repeats_handed(site)
        since = since + 1.0 if now == last else 0.0
        last = now
        if since * TIME_SCALE >= QUIET_S:
            return


@pytest.mark.parametrize("late_repeat", ["urgent", "off"])
async def test_handhelds_that_missed_an_urgent_alert_get_its_late_repeat_once(
    site_factory: SiteFactory, late_repeat: str
) -> None:
    site = await site_factory(
        # As on the firmware, a neighbour relays the originator's copy once more.
        scenario=dataclasses.replace(lossless(load_scenario(NEIGHBORHOOD)), relay_origin_copies=True),
        time_scale=TIME_SCALE,
        start=False,
        extra=GENEROUS_LIMITS + f'[airtime]\nlate_repeat = "{late_repeat}"\n',
    )
    site.start_relay(RELAY)
    await site.wait_relays_ready()
    alerts = [
        site.network.sign("dispatcher", f"Urgent {i}: clear Elm {i}00 block", lifetime_s=3600)
        for i in range(BURST)
    ]
    faded_text = fade_first_frame(site.hood)
    await site.publish_many(site.topic("outbox"), [encode_alert(a) for a in alerts])
    everywhere = await site.wait_displayed_everywhere(
        alerts, timeout_s=90.0 if late_repeat == "urgent" else 20.0
    )
    await repeats_done(site)
    shown = {(hh, i): site.displayed(hh, a) for hh in site.handhelds for i, a in enumerate(alerts)}
    twice = sorted(k for k, n in shown.items() if n > 1)
    missed = sorted(k for k, n in shown.items() if n == 0)
    lost = {hh: sorted(site.hood.texts_lost_on_air(hh)) for hh in FADED}
    repeats = repeats_handed(site)
    print(f"late_repeat={late_repeat}: {repeats} repeat(s), missed {missed}, twice {twice}, lost {lost}")
    assert twice == []
    faded = next(i for i, a in enumerate(alerts) if a.onair == faded_text[0])
    if late_repeat == "off":
        # (Without repeats, others may miss more in this congested burst: a fresh relay knows
        # no repeaters yet and paces by the text interval.)
        assert {(hh, faded) for hh in FADED} <= set(missed)
        assert repeats == 0
    else:
        assert everywhere, missed
        assert repeats >= 1
