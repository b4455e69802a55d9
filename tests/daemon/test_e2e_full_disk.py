"""A full state disk followed by a crash: every alert on every handheld exactly once.

The relay daemon runs as its own process with its state directory on a small, real
filesystem (a tmpfs, relayd.testing.fulldisk) that the test fills while alerts are queued
and arriving, then the relay is killed (SIGKILL), the space given back, and the relay
started again. What it had accepted but could not store must come back from the broker
(it was not acknowledged), and what it had sent while it could not record that must not
be shown twice (the resend carries the same packet id).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from relayd.core.jsonform import encode_alert
from relayd.sim.scenario import load_scenario
from relayd.testing.fulldisk import MountUnavailableError, fill, free, small_filesystem
from tests.daemon.conftest import ONE_RELAY, Site
from tests.daemon.test_e2e_faults import assert_each_once, lossless, stream

TIME_SCALE = 20.0

SiteFactory = Callable[..., Coroutine[Any, Any, Site]]


@pytest.mark.mosquitto
async def test_a_full_disk_then_a_crash_loses_nothing_and_doubles_nothing(site_factory: SiteFactory) -> None:
    site = await site_factory(scenario=lossless(load_scenario(ONE_RELAY)), start=False, time_scale=TIME_SCALE)
    state = site.workdir / "relays" / "relay-state"
    try:
        disk_cm = small_filesystem(state, size_kib=1024)
        disk = disk_cm.__enter__()
    except MountUnavailableError as exc:
        pytest.skip(str(exc))
    try:
        site.start_relay("relay")
        await site.wait_relays_ready()
        before = stream(site, 8, "Before")
        during = stream(site, 12, "Full")
        # Stored and queued, then the disk fills while they go out.
        await site.publish_many(site.topic("outbox"), [encode_alert(a) for a in before])
        fill(disk)
        await site.publish_many(site.topic("outbox"), [encode_alert(a) for a in during], delay_s=0.1)
        statuses = await site.statuses(settle_s=0.5)
        assert statuses["relay"].storage_error, "the relay did not notice the full disk"
        site.relays["relay"].kill()
        free(disk)
        await asyncio.sleep(0.5)
        site.start_relay("relay")
        alerts = before + during
        await site.wait_displayed_everywhere(alerts, timeout_s=60)
        await asyncio.sleep(3)
        assert_each_once(site, alerts)  # names what is missing or doubled
    finally:
        site.relays["relay"].terminate()
        disk_cm.__exit__(None, None, None)
