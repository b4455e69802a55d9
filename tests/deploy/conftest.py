"""Fixtures for the deployment tests (tests/deploy): a real Mosquitto started from the shipped
config/mosquitto/local.conf and acl.example, on a free loopback port in a temp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.deploy_support import Broker, render_local_broker, require_tool, run_broker


@pytest.fixture
def local_broker(tmp_path: Path) -> Iterator[Broker]:
    """The relay Pi's broker: local.conf + acl.example, every ACL user with a random password."""
    require_tool("mosquitto", "mosquitto")
    config, port, passwords = render_local_broker(tmp_path)
    with run_broker(config, port, passwords, tmp_path / "mosquitto.log") as broker:
        yield broker
