"""Fixtures for the CLI contract tests; helpers live in cli_support.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.cli_support import Relayd, make_runner


@pytest.fixture
def relayd(tmp_path: Path) -> Relayd:
    """`relayd(*args, stdin=None)` runs `python -m relayd ARGS` in tmp_path."""
    return make_runner(tmp_path)
