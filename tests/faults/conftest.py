"""The end-to-end site (simulator, broker, relay daemons) for the fault tests."""

from __future__ import annotations

from tests.daemon.conftest import site_factory

__all__ = ["site_factory"]
