"""The MQTT link (aiomqtt): persistent session, QoS 1, retained status with a last will,
reconnects by itself, and acknowledges a message only after the daemon has stored it.

aiomqtt wraps paho-mqtt. paho acknowledges a QoS 1 PUBLISH as soon as its callback
returns, which is before our handler has committed the alert to SQLite; a `kill -9` in
between would lose it. We switch paho to manual acknowledgement (its `manual_ack_set`,
reached through aiomqtt's client) and ack after the handler returns, so the broker
redelivers anything we had not stored.

When the state disk has failed, storing is not possible: the handler then returns a
future (relayd/daemon/ackgate.py) and the acknowledgement waits until it is done, which is
once the alert's outcome is known (on air, suppressed, expired...). Meanwhile the broker
keeps the message, and redelivers it if we crash or reconnect. The broker sends at most its
in-flight limit of unacknowledged messages (Mosquitto: `max_inflight_messages`, 20), so a
relay with a failed disk is paced by its radio: the broker holds the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import aiomqtt
import paho.mqtt.client as paho

from relayd.core.linkhints import broker_failure, errno_of, retry_line
from relayd.core.status import LinkState
from relayd.daemon.config import MqttConfig
from relayd.daemon.intake_queue import IntakeStats, intake_queue_type
from relayd.daemon.linkstate import LinkStateTracker

log = logging.getLogger("relayd.mqtt")

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
PUBLISH_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    retain: bool


# None: acknowledge now. A future: acknowledge once it is done (not if it is cancelled).
Handler = Callable[[Incoming], Awaitable[asyncio.Future[None] | None]]


# Nagle's algorithm off (TCP_NODELAY), set by aiomqtt on the socket it connects. With Nagle
# on, a small PUBLISH or PUBACK written while an earlier one is unacknowledged waits for the
# broker's delayed ACK (40 ms on Linux): measured by bench/bench_latency.py as 40 ms latency
# spikes and, under a steady stream, a publisher that fell seconds behind. Mosquitto's side
# is `set_tcp_nodelay true` (local.conf).
SOCKET_OPTIONS = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


class MqttLibraryError(RuntimeError):
    """The installed aiomqtt no longer wraps paho the way relayd's manual ack needs."""


def paho_client(client: aiomqtt.Client) -> paho.Client:
    """The paho client inside an aiomqtt client: relayd's only reach into aiomqtt's internals.

    aiomqtt (2.x) has no manual-acknowledgement API, so relayd acks through the paho client
    it wraps, in its private `_client`. aiomqtt 3 drops paho (pyproject bounds it below 3);
    if a release changes this anyway, the relay must fail at startup, loudly, rather than
    let paho auto-ack messages it has not stored (tests/daemon/test_mqtt_seam.py).
    """
    inner = getattr(client, "_client", None)
    if not isinstance(inner, paho.Client) or not callable(getattr(inner, "manual_ack_set", None)):
        raise MqttLibraryError(
            f"aiomqtt {getattr(aiomqtt, '__version__', '?')} does not wrap a paho client with manual "
            "acknowledgement; install the versions in constraints.txt (aiomqtt>=2.3,<3)"
        )
    return inner


class MqttLink(LinkStateTracker):
    def __init__(
        self,
        config: MqttConfig,
        *,
        subscriptions: list[str],
        handler: Handler,
        will_topic: str,
        will_payload: Callable[[], bytes],
        on_state: Callable[[LinkStateTracker], None] | None = None,
        on_connect: Callable[[], Awaitable[None]] | None = None,
        retired: Iterable[str] = (),
    ) -> None:
        super().__init__(on_state)
        self.config = config
        self._subscriptions = list(subscriptions)
        # Subscribed earlier (this run, or a persistent session of an older relayd) and no
        # longer wanted: unsubscribed at the next connect, or at once if connected.
        self._unwanted: set[str] = set(retired)
        self._handler = handler
        # Built at each connect: the will is a signed status, and its signature covers a time.
        self._will_topic = will_topic
        self._will_payload = will_payload
        self._on_connect = on_connect
        self._client: aiomqtt.Client | None = None
        self._deferred: set[asyncio.Task[None]] = set()
        self._deferred_tasks: set[asyncio.Task[None]] = set()
        self.connects = 0
        self.delivered = 0  # messages the broker delivered to us (benchmarks count traffic)
        self.delivered_by_leaf: Counter[str] = Counter()  # ... by the topic's last level
        self._pinned = False
        self.last_error: str | None = None
        self.intake = IntakeStats()  # QoS 0 deliveries shed under overload

    def _tls(self) -> aiomqtt.TLSParameters | None:
        if not self.config.tls:
            return None
        return aiomqtt.TLSParameters(
            ca_certs=str(self.config.ca_file) if self.config.ca_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )

    def _make_client(self) -> aiomqtt.Client:
        client = aiomqtt.Client(
            self.config.host,
            self.config.port,
            username=self.config.username,
            password=self.config.password,
            identifier=self.config.client_id,
            # A persistent session: the broker queues QoS 1 messages while we are away.
            clean_session=False,
            protocol=aiomqtt.ProtocolVersion.V311,
            keepalive=self.config.keepalive_s,
            will=aiomqtt.Will(self._will_topic, self._will_payload(), qos=1, retain=True),
            tls_params=self._tls(),
            # Bounds QoS 0 only; QoS 1 is taken first (relayd/daemon/intake_queue.py).
            max_queued_incoming_messages=10_000,
            queue_type=intake_queue_type(self.intake),
            timeout=10,
            socket_options=SOCKET_OPTIONS,
        )
        # Events are fire-and-forget publishes; a burst of them is normal, not a leak.
        client.pending_calls_threshold = 1000
        paho_client(client).manual_ack_set(True)  # see module docstring
        return client

    async def run(self) -> None:
        backoff = BACKOFF_INITIAL_S
        rng = random.Random()
        attempt = 0  # failures since the last good connection
        while True:
            failure: str | None = None
            self._set_state(LinkState.CONNECTING)
            client = self._make_client()
            try:
                async with client:
                    self._client = client
                    # The session is persistent: what it was subscribed to before stays until
                    # unsubscribed, and unsubscribing what it never had is harmless.
                    for topic in sorted(self._unwanted):
                        await client.unsubscribe(topic)
                    self._unwanted.clear()
                    for topic in self._subscriptions:
                        await client.subscribe(topic, qos=1)
                    self.connects += 1
                    self.last_error = None
                    # Said before the state changes, so the relay's "ready" line comes after it.
                    log.info("broker %s:%d connected", self.config.host, self.config.port)
                    self._set_state(LinkState.CONNECTED)
                    backoff = BACKOFF_INITIAL_S
                    attempt = 0
                    if self._on_connect is not None:
                        await self._on_connect()
                    async for message in client.messages:
                        self.delivered += 1
                        self.delivered_by_leaf[message.topic.value.rsplit("/", 1)[-1][:16]] += 1
                        payload = message.payload
                        data = payload if isinstance(payload, bytes) else str(payload or "").encode()
                        after = await self._handler(Incoming(message.topic.value, data, bool(message.retain)))
                        if message.qos == 0:
                            continue
                        if after is None:
                            paho_client(client).ack(message.mid, message.qos)
                        else:
                            self._ack_later(client, message.mid, message.qos, after)
            except aiomqtt.MqttError as exc:
                failure = str(exc)
                diagnosis = broker_failure(failure, errno_of(exc))
            finally:
                self._client = None
                self._set_state(LinkState.DISCONNECTED)
            delay = backoff * rng.uniform(0.5, 1.5)
            if failure is not None:
                attempt += 1
                where = f"broker {self.config.host}:{self.config.port}"
                text = f"{where} unavailable: {failure}"
                # Every retry is logged, with its backoff and what to check; a new kind of
                # failure is a warning, the same one again is INFO.
                level = logging.INFO if text == self.last_error else logging.WARNING
                log.log(level, "%s", retry_line(where, f"unavailable: {failure}", diagnosis, attempt, delay))
                self.last_error = text
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    @property
    def subscriptions(self) -> list[str]:
        return list(self._subscriptions)

    def set_subscriptions(self, topics: list[str]) -> None:
        """Subscribe to exactly `topics` from now on (at once if connected, else at the next
        connect): a relay scopes its event subscriptions to its RF neighbours this way."""
        if self._pinned:
            return
        new = list(dict.fromkeys(topics))
        added = [t for t in new if t not in self._subscriptions]
        removed = [t for t in self._subscriptions if t not in new]
        self._subscriptions = new
        if not added and not removed:
            return
        self._unwanted |= set(removed)
        self._unwanted -= set(new)
        client = self._client
        if client is None or not self.connected:
            return

        async def apply() -> None:
            try:
                for topic in removed:
                    await client.unsubscribe(topic)
                    self._unwanted.discard(topic)
                for topic in added:
                    await client.subscribe(topic, qos=1)
            except aiomqtt.MqttError as exc:
                # The connection is going; the next connect subscribes from the lists.
                log.debug("subscription change failed: %s", exc)

        task = asyncio.get_running_loop().create_task(apply())
        self._deferred_tasks.add(task)
        task.add_done_callback(self._deferred_tasks.discard)

    def pin_subscriptions(self, topics: list[str]) -> None:
        """Subscribe to exactly `topics` and ignore later changes: how relays subscribed
        before event scoping (bench/bench_city.py measures both in one run)."""
        self._pinned = False
        self.set_subscriptions(topics)
        self._pinned = True

    @property
    def unacknowledged(self) -> int:
        """Deliveries held unacknowledged until their alert's outcome is known."""
        return len(self._deferred)

    def _ack_later(self, client: aiomqtt.Client, mid: int, qos: int, after: asyncio.Future[None]) -> None:
        async def ack() -> None:
            await asyncio.shield(after)
            # A message id belongs to one connection: after a reconnect the broker has
            # redelivered the message under a new id, and that delivery is acked instead.
            if self._client is client and self.connected:
                paho_client(client).ack(mid, qos)

        task = asyncio.get_running_loop().create_task(ack())
        self._deferred.add(task)
        task.add_done_callback(self._deferred.discard)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """Publish at QoS 1 and wait for the broker's PUBACK. False if not connected/failed."""
        client = self._client
        if client is None or not self.connected:
            return False
        try:
            await asyncio.wait_for(client.publish(topic, payload, qos=1, retain=retain), PUBLISH_TIMEOUT_S)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.debug("publish to %s failed: %s", topic, exc)
            return False
        return True

    async def disconnect(self) -> None:
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                paho_client(client).disconnect()  # a clean DISCONNECT: the broker drops the last will
