"""`relayd cap`: the alerts the network accepted, as CAP 1.2 documents and an Atom index,
over HTTP, the way public alert feeds are consumed.

It subscribes to the broker like the dispatcher console does (outbox, alerts, active/+,
trust), verifies every frame against the trust bundle the same way (signature, key, role,
revocation, time; an alert seen after expiry is judged as of just before it), and keeps only
verified ones (relayd.core.capfeed). Nothing unverified is ever served.

    GET /alerts.atom           Atom 1.0 index of the active alerts (also /)
    GET /alerts/<id>.xml       one alert as a CAP 1.2 document (application/cap+xml)

One asyncio loop runs the MQTT subscription and the HTTP server, so the feed's state has a
single owner and needs no locks. Listen on loopback (the default) and publish it through a
reverse proxy if it must be reachable from elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt

from relayd.core.capfeed import CAP_CONTENT_TYPE, CapFeed
from relayd.core.codec import MalformedFrame, decode
from relayd.core.jsonform import MalformedMessage, onair_from_message
from relayd.core.model import DropReason, Kind
from relayd.core.topics import Topics
from relayd.core.trust import SignedBundle, TrustBundleError, parse_signed_bundle, should_replace
from relayd.core.verify import Verifier
from relayd.daemon.config import MqttConfig

log = logging.getLogger("relayd.cap")

REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 16 * 1024
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
_DOC_PATH = re.compile(r"/alerts/([0-9a-f]{16})\.xml")


@dataclass(frozen=True, slots=True)
class CapFeedConfig:
    mqtt: MqttConfig
    listen_host: str = "127.0.0.1"
    listen_port: int = 8089
    sender: str = "relayd"
    public_url: str | None = None  # how consumers reach the feed; default http://HOST:PORT


class CapFeedService:
    def __init__(
        self, config: CapFeedConfig, signed_bundle: SignedBundle, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.clock = clock
        self.topics = Topics(config.mqtt.topic_root)
        self.bundle = signed_bundle.bundle
        self.verifier = Verifier(self.bundle)
        self.feed = CapFeed(sender=config.sender)
        self.rejected: Counter[str] = Counter()
        self.connected = False
        self.port = config.listen_port
        self._active_prefix = self.topics.active_wildcard[:-1]

    @property
    def base_url(self) -> str:
        return self.config.public_url or f"http://{self.config.listen_host}:{self.port}"

    # -- from MQTT --------------------------------------------------------------------

    def ingest(self, topic: str, payload: bytes) -> None:
        """One MQTT message. Never raises on bad input: it is counted instead."""
        if topic == self.topics.trust:
            self._ingest_trust(payload)
            return
        if topic.startswith(self._active_prefix):
            if not payload:
                # An emptied active topic is unsigned: only expiry or a verified cancel or
                # all-clear ends an alert here (relayd.core.capfeed).
                return
        elif topic not in (self.topics.outbox, self.topics.alerts):
            return
        try:
            frame = decode(onair_from_message(payload))
        except (MalformedMessage, MalformedFrame):
            self.rejected[DropReason.MALFORMED.value] += 1
            return
        if frame.alert_id in self.feed or frame.fields.kind is Kind.REPORT:
            return
        now = self.clock()
        verdict = self.verifier.authenticate(frame, now)
        if verdict.reason is DropReason.EXPIRED:
            # Expired is not forged: kept (it threads later messages) but never active.
            verdict = self.verifier.authenticate(frame, frame.fields.expires_at_s - 1)
        if not verdict.ok:
            reason = verdict.reason or DropReason.MALFORMED
            self.rejected[reason.value] += 1
            log.debug("refused %s: %s (%s)", frame.alert_id.hex(), reason.value, verdict.detail)
            return
        signer = verdict.signer.name if verdict.signer is not None else None
        if self.feed.add(frame.to_signed_alert(), signer, now):
            log.info("feed: %s %s accepted", frame.fields.kind.value, frame.alert_id.hex())

    def _ingest_trust(self, payload: bytes) -> None:
        if not payload:
            return
        try:
            signed = parse_signed_bundle(payload, pinned_root=self.bundle.root_public_key)
        except TrustBundleError as exc:
            log.warning("ignored the trust bundle on MQTT: %s", exc)
            return
        why_not = should_replace(self.bundle, signed.bundle)
        if why_not is None:
            self.bundle = signed.bundle
            self.verifier = Verifier(self.bundle)
            log.info("trust bundle updated to version %d from MQTT", self.bundle.version)

    def _client(self) -> aiomqtt.Client:
        m = self.config.mqtt
        tls = None
        if m.tls:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(m.ca_file) if m.ca_file else None, cert_reqs=ssl.CERT_REQUIRED
            )
        return aiomqtt.Client(
            m.host,
            m.port,
            username=m.username,
            password=m.password,
            identifier=m.client_id,
            keepalive=m.keepalive_s,
            tls_params=tls,
            timeout=10,
        )

    async def run_mqtt(self) -> None:
        """Subscribe and ingest, reconnecting forever with jittered backoff."""
        m = self.config.mqtt
        backoff = BACKOFF_INITIAL_S
        rng = random.Random()
        topics = [self.topics.trust, self.topics.outbox, self.topics.alerts, self.topics.active_wildcard]
        while True:
            try:
                async with self._client() as client:
                    for topic in topics:
                        await client.subscribe(topic, qos=1)
                    self.connected = True
                    backoff = BACKOFF_INITIAL_S
                    log.info("broker %s:%d connected", m.host, m.port)
                    async for message in client.messages:
                        payload = message.payload
                        data = payload if isinstance(payload, bytes) else str(payload or "").encode()
                        self.ingest(message.topic.value, data)
            except aiomqtt.MqttError as exc:
                log.warning("broker %s:%d unavailable: %s", m.host, m.port, exc)
            finally:
                self.connected = False
            await asyncio.sleep(backoff * rng.uniform(0.5, 1.5))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    # -- HTTP -------------------------------------------------------------------------

    def respond(self, method: str, path: str) -> tuple[str, str, bytes]:
        """(status, content type, body) for a request."""
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain; charset=utf-8", b"GET only\n"
        if path in ("/", "/alerts.atom"):
            body = self.feed.atom(self.clock(), self.base_url).encode()
            return "200 OK", "application/atom+xml; charset=utf-8", body
        match = _DOC_PATH.fullmatch(path)
        if match is not None:
            document = self.feed.document(bytes.fromhex(match.group(1)))
            if document is not None:
                return "200 OK", f"{CAP_CONTENT_TYPE}; charset=utf-8", document.encode()
        return "404 Not Found", "text/plain; charset=utf-8", b"not found\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            method, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", "/")
            status, content_type, body = self.respond(method, target.split("?", 1)[0])
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: max-age=10\r\nConnection: close\r\n\r\n".encode()
                + (b"" if method == "HEAD" else body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception:
            # A bug while rendering costs one request, never the feed.
            log.exception("cap feed request failed")
        finally:
            writer.close()

    async def start_http(self) -> asyncio.Server:
        server = await asyncio.start_server(
            self._handle, self.config.listen_host, self.config.listen_port, limit=MAX_REQUEST_BYTES
        )
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def run(self, stop: asyncio.Event, *, on_ready: Callable[[], None] | None = None) -> None:
        server = await self.start_http()
        mqtt = asyncio.create_task(self.run_mqtt(), name="cap-mqtt")
        try:
            if on_ready is not None:
                on_ready()
            await stop.wait()
        finally:
            mqtt.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await mqtt
            server.close()
            await server.wait_closed()
