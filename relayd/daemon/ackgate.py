"""Broker deliveries that must not be acknowledged yet.

The broker forgets a QoS 1 message once we acknowledge it. Normally that happens once the
alert is committed to the state database. When that commit fails (full disk, read-only
filesystem) the alert lives only in this process's memory, so its acknowledgement waits
until the alert's outcome is known (on air, suppressed, expired, cancelled, refused): a
crash before then and the broker, not our disk, still holds it and delivers it again.
"""

from __future__ import annotations

import asyncio


class UnsafeAlerts:
    """Alert ids accepted but not stored, each until its terminal outcome.

    `after(alert_id)` is what the MQTT link waits on before acknowledging a delivery of
    that alert (the first one, and a redelivery after a reconnect, which the verifier
    calls a duplicate). Futures are made lazily, in the event loop that waits on them.
    """

    def __init__(self) -> None:
        self._waiting: dict[bytes, asyncio.Future[None] | None] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._waiting

    def hold(self, alert_id: bytes) -> None:
        self._waiting.setdefault(alert_id, None)

    def settle(self, alert_id: bytes) -> None:
        """The alert's outcome is known: deliveries of it may be acknowledged."""
        future = self._waiting.pop(alert_id, None)
        if future is not None and not future.done():
            future.set_result(None)

    def after(self, alert_id: bytes | None) -> asyncio.Future[None] | None:
        """What an acknowledgement of this alert waits for; None: acknowledge now."""
        if alert_id is None or alert_id not in self._waiting:
            return None
        future = self._waiting[alert_id]
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[alert_id] = future
        return future
