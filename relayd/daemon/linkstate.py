"""Connection state shared by the radio and MQTT links."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from relayd.core.status import LinkState


class LinkStateTracker:
    """A link's state, an awaitable "connected", and a callback on every change."""

    def __init__(self, on_state: Callable[[LinkStateTracker], None] | None = None) -> None:
        self.state = LinkState.DISCONNECTED
        self._on_state = on_state
        self._connected = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.state is LinkState.CONNECTED

    async def wait_connected(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        return self.connected

    def _set_state(self, state: LinkState) -> None:
        self.state = state
        if state is LinkState.CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()
        if self._on_state is not None:
            self._on_state(self)
