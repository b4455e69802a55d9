"""The relay's clock rule on a real state directory (issue 13, finding 5).

`Relay` objects are built but not started (no radio, no broker) and driven through the
methods the MQTT handler and the transmit loop call, with injected clocks: the attacks
need a relay whose clock reads 1970 and then a relay after NTP, in one test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from relayd.core.model import DropReason, Kind, Severity
from relayd.core.trust import TrustBundle
from relayd.core.verify import Verdict
from relayd.daemon.config import load_config
from relayd.daemon.relay import Relay
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork

DAY_S = 86400
WEEK_S = 7 * DAY_S


@pytest.fixture
def config_path(tmp_path: Path, network: TestNetwork) -> Path:
    return write_relay_config(tmp_path / "relay", "relay-north", network, radio_port=9, broker_port=9)


def _offer(relay: Relay, onair: str) -> Verdict:
    verdict = relay._verify(onair, "mqtt")
    if verdict.ok:
        relay._accept(verdict, "mqtt", queue=True)
    return verdict


def _relay(
    config_path: Path,
    clock: float | list[float],
    *,
    clock_synced: Callable[[], bool | None] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Relay:
    config = load_config(config_path)
    if isinstance(clock, list):
        box = clock
        return Relay(config, clock=lambda: box[0], clock_synced=clock_synced, monotonic=monotonic)
    fixed = clock
    return Relay(config, clock=lambda: fixed, clock_synced=clock_synced, monotonic=monotonic)


def test_reporter_and_relay_drills_cannot_push_the_floor_ahead(
    config_path: Path, network: TestNetwork
) -> None:
    """While the clock read 1970, drills signed a week ahead by a reporter and a relay key
    were accepted and moved the persisted floor; after NTP every genuine alert was then
    dropped as expired, for good."""
    now = time.time()
    epoch = _relay(config_path, 0.0)
    ahead = now + WEEK_S - 3600
    for name in ("reporter", "relay-south"):
        drill = network.sign(name, "Drill, ignore", kind=Kind.TEST, severity=Severity.INFO, now_s=ahead)
        assert _offer(epoch, drill.onair).ok  # a drill is theirs to sign...
    assert epoch.newest_issued_s is None or epoch.newest_issued_s < now + 3600  # ...not the time
    epoch.storage.close()

    after_ntp = _relay(config_path, now + 60)
    assert after_ntp.clock_assessment.plausible, after_ntp.clock_assessment
    genuine = network.sign("dispatcher", "Observers needed at 5th & Main", now_s=now + 60)
    verdict = _offer(after_ntp, genuine.onair)
    assert verdict.ok, verdict
    after_ntp.storage.close()


def test_a_floor_pushed_ahead_by_a_trusted_key_is_clamped_once_ntp_sets_the_clock(
    config_path: Path, network: TestNetwork
) -> None:
    now = time.time()
    epoch = _relay(config_path, 0.0)
    fast = network.sign("dispatcher", "Sent from a console a week fast", now_s=now + WEEK_S - 3600)
    assert _offer(epoch, fast.onair).ok
    epoch.storage.close()

    # No word from the system yet: the relay cannot tell a stale clock from a fast console.
    unsure = _relay(config_path, now + 60)
    assert not unsure.clock_assessment.plausible
    assert "stale" in (unsure.clock_assessment.warning or "")
    unsure.storage.close()

    synced = _relay(config_path, now + 60, clock_synced=lambda: True)
    assert synced.clock_assessment.plausible
    genuine = network.sign("dispatcher", "Medic needed at the library", now_s=now + 60)
    assert _offer(synced, genuine.onair).ok
    stored = synced.storage.newest_issued_s()
    assert stored is not None
    assert stored <= now + 60 + synced.config.clock_skew_s
    synced.storage.close()

    # The clamp is persisted: a restart without NTP word keeps the clock plausible.
    later = _relay(config_path, now + 120)
    assert later.clock_assessment.plausible, later.clock_assessment
    later.storage.close()


def test_a_clock_set_while_running_is_trusted(config_path: Path, network: TestNetwork) -> None:
    now = time.time()
    epoch = _relay(config_path, 0.0)
    assert _offer(epoch, network.sign("dispatcher", "Fast console", now_s=now + WEEK_S - 3600).onair).ok
    epoch.storage.close()
    clock = [now + 60 - 3 * 3600]  # fake-hwclock: the last shutdown time, plausible but stale
    mono = [1000.0]
    relay = _relay(config_path, clock, monotonic=lambda: mono[0])
    assert not relay.clock_assessment.plausible
    clock[0], mono[0] = now + 60, 1005.0  # NTP steps the clock forward three hours
    relay._observe_clock()
    relay.clock_assessment = relay._assess_clock()
    assert relay.clock_assessment.plausible
    assert _offer(relay, network.sign("dispatcher", "After the step", now_s=now + 60).onair).ok
    relay.storage.close()


def test_a_relay_back_after_a_long_absence_drops_what_a_newer_bundle_says_expired(
    config_path: Path, network: TestNetwork
) -> None:
    now = time.time()
    before = _relay(config_path, now)
    queued = network.sign("dispatcher", "Crowd gathering at Oak & Broadway", now_s=now, lifetime_s=1800)
    assert _offer(before, queued.onair).ok
    assert [r.alert_id for r in before.storage.queued()] == [queued.alert_id]
    before.storage.close()

    # Weeks later: the admin issued a new bundle meanwhile; the relay's clock reads 1970.
    b = network.bundle
    network.resign(
        TrustBundle(
            b.version + 1,
            int(now + 3 * WEEK_S),
            b.expires_at_s + 3 * WEEK_S,
            b.root_public_key,
            b.keys,
            b.revoked,
        )
    )
    back = _relay(config_path, 0.0)
    assert queued.alert_id not in back._queued_rows
    assert queued.alert_id not in back.suppressor
    assert back.storage.queued() == []
    back.storage.close()


def test_a_relay_back_after_a_long_absence_drops_queued_alerts_once_fresh_news_arrives(
    config_path: Path, network: TestNetwork
) -> None:
    now = time.time()
    before = _relay(config_path, now)
    queued = network.sign("dispatcher", "Crowd gathering at Oak & Broadway", now_s=now, lifetime_s=1800)
    assert _offer(before, queued.onair).ok
    before.storage.close()

    back = _relay(config_path, 0.0)
    assert queued.alert_id in back._queued_rows  # nothing yet says how long it was away
    fresh = network.sign("dispatcher", "Road closed at Pine St bridge", now_s=now + 5 * DAY_S)
    assert _offer(back, fresh.onair).ok  # the MQTT session's backlog: fresh news
    back._expire(back.clock())  # as the transmit loop does before each send
    assert queued.alert_id not in back._queued_rows
    assert queued.alert_id not in back.suppressor
    assert all(queued.alert_id not in s for s in back.schedulers.values())
    assert back.counters.drops[DropReason.EXPIRED.value] >= 1
    assert [r.alert_id for r in back.storage.queued()] == [fresh.alert_id]
    back.storage.close()
