"""Shared fixtures: a real Mosquitto on a free loopback port, and a trusted key network."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relayd.testing.keys import TestNetwork, make_network
from relayd.testing.mosquitto import MosquittoBroker, MosquittoUnavailable, mosquitto_binary


@pytest.fixture
def network(tmp_path: Path) -> TestNetwork:
    """Root, dispatchers, verifier, reporter and three relay keys, with a signed bundle."""
    return make_network(tmp_path / "keys")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A real Mosquitto broker on 127.0.0.1 and a free port, stopped after the test."""
    try:
        mosquitto_binary()
    except MosquittoUnavailable as exc:
        pytest.skip(str(exc))
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
