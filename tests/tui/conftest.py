"""Fixtures for the TUI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from relayd.testing.keys import TestNetwork
from tests.tui.support import fixed_network


@pytest.fixture
def fixed_net(tmp_path: Path) -> TestNetwork:
    """Seeded keys and a bundle issued at FIXED_NOW_S (for snapshots)."""
    return fixed_network(tmp_path / "fixed-keys")
