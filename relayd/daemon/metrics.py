"""Prometheus metrics on a loopback port, read from the relay's counters at scrape time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from relayd.core.control import ControlRejection
from relayd.core.model import DropReason
from relayd.core.status import LinkState
from relayd.core.topics import TopicKind

if TYPE_CHECKING:
    from relayd.daemon.relay import Relay


log = logging.getLogger("relayd.metrics")


class RelayCollector(Collector):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def collect(self) -> Iterator[Metric]:
        status = self.relay.status()
        drops = CounterMetricFamily("relayd_dropped_frames", "Frames dropped, by reason", labels=["reason"])
        for reason in DropReason:
            drops.add_metric([reason.value], status.drops.get(reason.value, 0))
        yield drops
        malformed = CounterMetricFamily(
            "relayd_malformed_messages", "MQTT messages that could not be used, by topic", labels=["topic"]
        )
        for kind in TopicKind:
            malformed.add_metric([kind.value], status.malformed.get(kind.value, 0))
        yield malformed
        unverified = CounterMetricFamily(
            "relayd_unverified_control_messages",
            "Peers' status, events and report notes not believed, by reason",
            labels=["reason"],
        )
        for rejection in ControlRejection:
            unverified.add_metric([rejection.value], status.unverified.get(rejection.value, 0))
        yield unverified
        for name, value, help_text in (
            ("relayd_transmitted_alerts", status.transmitted, "Alerts put on air"),
            (
                "relayd_suppressed_alerts",
                status.suppressed,
                "Transmissions cancelled: another relay was heard",
            ),
            ("relayd_heard_alerts", status.heard, "Alerts accepted from RF"),
            ("relayd_published_messages", status.published, "MQTT messages published"),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        yield GaugeMetricFamily("relayd_queue_depth", "Alerts waiting for airtime", value=status.queue_depth)
        yield GaugeMetricFamily(
            "relayd_airtime_last_hour_seconds",
            "Seconds on air in the last hour",
            value=status.airtime_last_hour_s,
        )
        yield GaugeMetricFamily(
            "relayd_radio_connected",
            "1 if the radio link is up",
            value=int(status.radio is LinkState.CONNECTED),
        )
        yield GaugeMetricFamily(
            "relayd_broker_connected",
            "1 if the broker link is up",
            value=int(status.broker is LinkState.CONNECTED),
        )
        yield GaugeMetricFamily(
            "relayd_clock_warning", "1 if the clock is implausible", value=int(bool(status.clock_warning))
        )
        yield GaugeMetricFamily(
            "relayd_storage_error", "1 if the state disk fails", value=int(bool(status.storage_error))
        )


async def start_metrics(relay: Relay, host: str, port: int) -> asyncio.Server | None:
    """Serve /metrics from the event loop (no exporter thread touching relay state)."""
    registry = CollectorRegistry()
    registry.register(RelayCollector(relay))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
            if path.split(b"?")[0] in (b"/", b"/metrics"):
                body = generate_latest(registry)
                head = f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\n"
            else:
                body = b"not found\n"
                head = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
            writer.write(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    try:
        return await asyncio.start_server(handle, host, port)
    except OSError as exc:
        # A busy metrics port must not stop alerts.
        log.warning("metrics disabled: cannot listen on %s:%d: %s", host, port, exc.strerror)
        return None
