"""An embedded MQTT broker (amqtt) on a free loopback port, for `relayd demo` only.

Production uses Mosquitto (docs/deployment.md); the demo must run from a bare
`pip install`, so it embeds amqtt in its own event loop. Two amqtt behaviours matter here:

* amqtt marks every client accepted by its `AnonymousAuthPlugin` as *anonymous* and then
  neither queues QoS 1 messages for it while it is offline nor keeps its session
  (broker.py, `_broadcast_loop` and `_session_monitor`). Relays rely on persistent
  sessions, so we install `LoopbackAuthPlugin` instead: it accepts every client (the
  listener is bound to 127.0.0.1 only) without marking it anonymous.
* It does not close the server side of a connection whose client sent DISCONNECT with a
  persistent session, and `shutdown()` does not close open connections either (the sockets
  leak until garbage collection, with ResourceWarnings). We wrap its connection handler
  and close every server-side stream ourselves.
* Its default plugins add `$SYS` topics and per-packet logging; we load none of them.

Harmless for relayd, so not worked around: a message queued for an offline persistent
session is delivered with the retain flag set, and a retained message can arrive twice on
subscribe. Relays ignore the retain flag and deduplicate by alert id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from relayd.errors import RelaydError


class DemoBrokerMissingError(RelaydError):
    """amqtt is not installed: a relay install leaves the demo's broker out."""


try:
    from amqtt.broker import Broker
    from amqtt.plugins.base import BaseAuthPlugin
    from amqtt.session import Session
except ModuleNotFoundError as exc:
    if not (exc.name or "").startswith("amqtt"):
        raise
    raise DemoBrokerMissingError(
        "relayd demo needs its embedded MQTT broker (amqtt), which a relay install leaves out; "
        "install the demo extra: pip install 'relayd[demo]' (from a checkout: pip install -e '.[demo]')"
    ) from None

LOOPBACK = "127.0.0.1"
_PLUGIN_PATH = f"{__name__}.LoopbackAuthPlugin"


class LoopbackAuthPlugin(BaseAuthPlugin):  # type: ignore[misc] # amqtt is untyped
    """Accept every client on the loopback listener, as a named (non-anonymous) session."""

    @dataclass
    class Config:
        """No options."""

    async def authenticate(self, *, session: Session) -> bool | None:
        return True


class EmbeddedBroker:
    """``async with EmbeddedBroker() as broker: broker.port``: MQTT 3.1.1 on 127.0.0.1."""

    def __init__(self, port: int = 0) -> None:
        self._requested_port = port
        self._broker: Broker | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"

    async def start(self) -> None:
        # amqtt logs every connection at INFO and its shutdown at WARNING; the demo's own
        # output (or the TUI's screen) must not be interleaved with that.
        logging.getLogger("amqtt").setLevel(logging.ERROR)
        logging.getLogger("transitions").setLevel(logging.ERROR)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{self._requested_port}"}},
            "plugins": {_PLUGIN_PATH: {}},
        }
        broker = Broker(config, loop=asyncio.get_running_loop())
        handle = broker.stream_connected

        async def tracked(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
        ) -> None:
            self._writers.add(writer)
            try:
                await handle(reader, writer, listener_name)
            finally:
                self._writers.discard(writer)
                writer.close()

        # Looked up when the listener starts (amqtt binds it with functools.partial then).
        broker.stream_connected = tracked
        await broker.start()
        self._broker = broker
        self.port = _bound_port(broker) or self._requested_port

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()
        for writer in list(self._writers):
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
        self._writers.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def _bound_port(broker: Broker) -> int | None:
    """The port the listener got (we ask for port 0). amqtt has no public API for it."""
    server = broker._servers.get("default")  # private: see the docstring
    instance = getattr(server, "instance", None)
    sockets = getattr(instance, "sockets", None) or ()
    for sock in sockets:
        port = sock.getsockname()[1]
        if isinstance(port, int):
            return port
    return None
