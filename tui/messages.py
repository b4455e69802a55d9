"""Messages the background workers post to the app (worker -> UI, never the other way)."""

from __future__ import annotations

import enum

from textual.message import Message


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RETRYING = "retrying"
    DISABLED = "disabled"  # no broker configured


class MqttReceived(Message):
    """One MQTT message, exactly as received."""

    def __init__(self, topic: str, payload: bytes, received_s: float) -> None:
        super().__init__()
        self.topic = topic
        self.payload = payload
        self.received_s = received_s


class BrokerState(Message):
    """The broker link changed state. `detail` is shown in the banner."""

    def __init__(self, state: LinkState, detail: str = "", retry_in_s: float | None = None) -> None:
        super().__init__()
        self.state = state
        self.detail = detail
        self.retry_in_s = retry_in_s
