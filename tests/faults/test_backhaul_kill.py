"""Both brokers killed (-9) during a backhaul cut, with the shipped bridge config and the shipped
persistence settings (save after every change): every alert reaches every handheld, once.

The dispatcher publishes on the city broker throughout; during the cut the city queues the
outbox for the bridge's persistent session and the neighborhood broker queues the relays'
alerts and events for the city. Both are killed in the middle of the cut and restarted; when
the cut heals, what each had acknowledged must still flow (docs/scaling.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relayd.testing.keys import TestNetwork
from relayd.testing.mosquitto import MosquittoUnavailable, mosquitto_binary
from tests.faults.chaos import ChaosPlan, run_chaos

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

# 16 alerts, one per 8 s of sim time at x10; a 4 s (40 sim s) cut, so about five alerts
# wait in the city's queue for the bridge; no other fault.
CUT_KILL_PLAN = ChaosPlan(
    alerts=16,
    interval_s=0.8,
    time_scale=10.0,
    broker_restarts=0,
    unplugs=0,
    kills=0,
    cut_s=4.0,
    disk_full_s=0.0,
    down_s=2.0,
    settle_timeout_s=60.0,
    kill_brokers_in_cut=True,
)


async def test_both_brokers_killed_during_a_backhaul_cut_lose_nothing(
    tmp_path: Path, network: TestNetwork
) -> None:
    try:
        mosquitto_binary()
    except MosquittoUnavailable as exc:
        pytest.skip(str(exc))
    report = await run_chaos(tmp_path, network, CUT_KILL_PLAN)
    print(report)
    assert report.faults["broker_kill"] == 2
    assert not report.tracebacks, report.tracebacks
    assert not report.unexpected_exits, report.unexpected_exits
    assert report.lost_before_relays == [], f"lost in the brokers: {report.lost_before_relays}"
    assert report.not_transmitted == [], f"never on air: {report.not_transmitted}"
    assert report.duplicates == 0, report.transmitted_twice
    assert report.missing == 0, f"{report.missing} (alert, handheld) deliveries missed"
