"""A relay notices a broker that lost what it had saved: its own retained status is gone after
the broker restarts (relayd/core/brokersave.py). With persistence really on, no warning."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from relayd.core.brokersave import LOST_RETAINED
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import load_scenario
from relayd.testing.harness import RelayProcess, wait_until, write_relay_config
from relayd.testing.keys import TestNetwork
from relayd.testing.mosquitto import MosquittoBroker
from tests.daemon.conftest import ONE_RELAY

WARNING_START = LOST_RETAINED[:60]


def connects(relay: RelayProcess) -> int:
    return relay.log_text().count("INFO relayd.mqtt: broker 127.0.0.1")


@pytest.mark.parametrize("persistence", [False, True])
async def test_a_broker_restarted_without_its_saved_state_is_noticed(
    tmp_path: Path, network: TestNetwork, persistence: bool
) -> None:
    broker = MosquittoBroker(tmp_path / "broker", persistence=persistence)
    broker.start()
    relay = RelayProcess(tmp_path / "relay-north.toml", tmp_path / "relay.log")
    try:
        async with Neighborhood(load_scenario(ONE_RELAY), time_scale=10.0) as hood:
            config = write_relay_config(
                tmp_path / "relays",
                "relay-north",
                network,
                radio_port=hood.endpoints["relay"].tcp_port,
                broker_port=broker.port,
                time_scale=10.0,
            )
            relay.config = config
            relay.start()
            assert await asyncio.to_thread(wait_until, lambda: connects(relay) >= 1, 20)
            await asyncio.sleep(2)  # its retained status is on the broker
            broker.stop()
            broker.start()
            assert await asyncio.to_thread(wait_until, lambda: connects(relay) >= 2, 30), relay.log_text()
            await asyncio.sleep(7)  # the grace for the retained status to come back, and more
            warned = WARNING_START in relay.log_text()
            assert warned is not persistence, relay.log_text()[-3000:]
    finally:
        relay.terminate()
        broker.stop()
