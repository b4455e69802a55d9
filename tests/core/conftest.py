"""Fixtures for the protocol-core tests; the helpers live in protocol_support.py."""

from __future__ import annotations

import pytest

from tests.core.protocol_support import Net, make_net


@pytest.fixture(scope="session")
def net() -> Net:
    """Session-scoped because hypothesis refuses function-scoped fixtures; see Net."""
    return make_net()
