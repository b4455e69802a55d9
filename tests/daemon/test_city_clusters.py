"""Separate RF clusters on one broker do not wait for each other (`relayd-bench city`, small).

K clusters of 3 relays each, in-process on one real Mosquitto and one simulated city where no
cluster hears another. The relays start with empty neighbour memory; each asks its radio to
announce itself, so that already the first alert is ranked within each cluster. Every cluster
puts each alert on air once, the slowest cluster's first frame comes within one suppression
slot of the fastest, and every handheld shows every alert once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_city import SLOT_S, run_city

ALERTS = 4

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]


@pytest.mark.parametrize("clusters", [1, 3])
async def test_clusters_on_one_broker_transmit_once_and_do_not_wait_for_each_other(
    tmp_path: Path, clusters: int
) -> None:
    result = await run_city(tmp_path, clusters, "rf", ALERTS)
    for alert in result.alerts:
        assert all(d == 1 for d in alert.displays), alert  # every handheld, exactly once
    for alert in result.alerts:
        assert all(t == 1 for t in alert.tx), alert
        assert max(alert.first_s) - min(alert.first_s) <= SLOT_S, alert
    # The first, cold alert too: no cluster waits for relays it has never heard.
    assert max(result.alerts[0].first_s) <= SLOT_S, result.alerts[0]
