"""The broker link: an aiomqtt client run as a Textual worker, posting Messages to the app.

It reconnects by itself with jittered exponential backoff and never raises into the UI:
every failure becomes a `BrokerState` message with a human-readable reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable

import aiomqtt
from textual.message import Message

from relayd.core.topics import Topics
from tui.config import MqttConfig
from tui.messages import BrokerState, LinkState, MqttReceived

log = logging.getLogger(__name__)

Post = Callable[[Message], object]


class NotConnected(RuntimeError):  # noqa: N818 - reads as the condition
    """Publishing needs a live broker connection."""


def subscriptions(topics: Topics) -> list[str]:
    return [
        topics.alerts,
        topics.outbox,
        topics.reports,
        topics.trust,
        topics.active_wildcard,
        topics.status_wildcard,
        topics.events_wildcard,
    ]


def backoff_s(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Full-jitter-ish backoff: base doubles per attempt, then 50-100 % of it (never a thundering herd)."""
    base: float = min(max_s, initial_s * (2 ** min(attempt, 16)))
    return base * (0.5 + rng.random() / 2)


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """For mqtts://: verify the broker's certificate and name (system CAs, or the given CA)."""
    if not cfg.tls:
        return None
    return ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiomqtt.MqttCodeError) and exc.rc is not None:
        text = f"{text} (code {exc.rc})"
    return text


class MqttLink:
    """Connect, subscribe, forward messages; reconnect forever until cancelled."""

    def __init__(self, config: MqttConfig, post: Post, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.topics = Topics(config.root)
        self._post = post
        self._client: aiomqtt.Client | None = None
        self._rng = rng or random.Random()

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, timeout_s: float = 10.0) -> None:
        """Publish and wait for the broker's acknowledgement (PUBACK for QoS 1)."""
        client = self._client
        if client is None:
            raise NotConnected("not connected to the broker; the alert was not sent")
        try:
            await client.publish(topic, payload, qos=qos, timeout=timeout_s)
        except aiomqtt.MqttError as exc:
            raise NotConnected(f"publish failed: {describe(exc)}") from exc

    async def run(self) -> None:
        cfg = self.config
        attempt = 0
        while True:
            self._post(BrokerState(LinkState.CONNECTING, f"connecting to {cfg.display}"))
            try:
                async with aiomqtt.Client(
                    cfg.host,
                    cfg.port,
                    identifier=cfg.client_id,
                    username=cfg.username,
                    password=cfg.password,
                    keepalive=cfg.keepalive_s,
                    timeout=10,
                    tls_context=tls_context(cfg),
                ) as client:
                    for topic in subscriptions(self.topics):
                        await client.subscribe(topic, qos=1)
                    self._client = client
                    attempt = 0
                    self._post(BrokerState(LinkState.CONNECTED, f"connected to {cfg.display}"))
                    async for message in client.messages:
                        payload = message.payload
                        data = (
                            bytes(payload)
                            if isinstance(payload, bytes | bytearray)
                            else str(payload).encode()
                        )
                        self._post(MqttReceived(message.topic.value, data, time.time()))
            except aiomqtt.MqttError as exc:
                reason = describe(exc)
            except OSError as exc:  # DNS failures and the like surface as OSError
                reason = exc.strerror or str(exc)
            finally:
                self._client = None
            delay = backoff_s(attempt, cfg.retry_initial_s, cfg.retry_max_s, self._rng)
            attempt += 1
            log.warning("broker %s unreachable: %s; retrying in %.1f s", cfg.display, reason, delay)
            self._post(BrokerState(LinkState.RETRYING, f"broker {cfg.display} unreachable: {reason}", delay))
            await asyncio.sleep(delay)
