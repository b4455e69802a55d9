"""Fixtures for the tests that run the real Meshtastic firmware (meshtasticd, SimRadio).

Where the binary is absent these tests skip with a message saying how to get it; under CI
(``CI=true``) an absent binary fails them instead, so a CI run cannot pass without the firmware.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relayd.testing.meshtasticd import (
    MeshtasticdCluster,
    MeshtasticdNode,
    MeshtasticdUnavailable,
    meshtasticd_binary,
    under_ci,
)


def require_meshtasticd() -> Path:
    try:
        return meshtasticd_binary()
    except MeshtasticdUnavailable as exc:
        if under_ci():
            pytest.fail(f"CI=true and the real firmware is missing: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def meshtasticd_path() -> Path:
    return require_meshtasticd()


@pytest.fixture(scope="module")
def fw_cluster(
    meshtasticd_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MeshtasticdCluster]:
    """Nodes started by the tests of one module; every one is stopped (by PID) at its end. Their
    state folders and logs stay in pytest's temporary directory for a post-mortem."""
    with MeshtasticdCluster(binary=meshtasticd_path, root=tmp_path_factory.mktemp("meshtasticd")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def fw_node(fw_cluster: MeshtasticdCluster) -> MeshtasticdNode:
    """One firmware node shared by a module's tests (each test opens its own client)."""
    return fw_cluster.add("node")
