"""Prometheus metrics on a loopback port, read from the relay's state at scrape time.

The exposition and its content negotiation are prometheus-client's own: a scraper that asks
for OpenMetrics (`Accept: application/openmetrics-text`, as Prometheus does) gets it, any
other client the 0.0.4 text format, each with the content type that matches the body.

Served from the relay's event loop, not from prometheus-client's exporter thread: the
collector reads the relay's counters, links and queues, which only the loop mutates, so a
scrape sees one consistent moment and needs no locks.

Names (config/grafana-relayd.json is built on them):

    relayd_build_info{version,python}                 1
    relayd_<event>_total                               counters from Relay.counters
    relayd_dropped_frames_total{reason}                refused frames by DropReason, and
                                                       reason="intake_overload": peer messages
                                                       the MQTT intake shed under a flood
    relayd_malformed_frames_total{source,radio}        unparseable input: source="radio_api"
                                                       (device API frames, per radio) or
                                                       "message" (MQTT/RF alert or peer message)
    relayd_reconnects_total{link,radio}                link="mqtt" or "radio"
    relayd_late_repeats_given_up_total{reason}         expired, inactive, history, restart,
                                                       overflow (relayd/core/repeat.py)
    relayd_airtime_seconds_total{radio}                seconds on air since start
    relayd_radio_connected{radio}, relayd_broker_connected, relayd_queue_depth{radio},
    relayd_suppression_held, relayd_last_heard_timestamp_seconds, ...  gauges
"""

from __future__ import annotations

import asyncio
import logging
import platform
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from relayd import __version__
from relayd.core.backlog import BacklogOutcome
from relayd.core.control import ControlRejection
from relayd.core.model import DropReason
from relayd.core.repeat import GONE_REASONS
from relayd.core.status import LinkState
from relayd.core.topics import TopicKind
from relayd.daemon.intake_queue import SHED_REASON

if TYPE_CHECKING:
    from relayd.daemon.relay import Relay


log = logging.getLogger("relayd.metrics")

REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 16 * 1024

# Relay.counters fields exported as counters: (field, metric name, help).
_EVENT_COUNTERS = (
    ("transmitted", "relayd_transmitted_alerts", "Broadcasts the radio's firmware confirmed on air"),
    ("suppressed", "relayd_suppressed_alerts", "Transmissions cancelled: another relay was heard"),
    ("heard", "relayd_heard_alerts", "Alerts accepted from RF"),
    ("received", "relayd_received_alerts", "Alerts accepted from MQTT"),
    ("published", "relayd_published_messages", "MQTT messages published"),
    ("reports", "relayd_reports", "Field reports published for dispatchers"),
    ("ignored_text", "relayd_ignored_texts", "Texts that were neither alerts nor reports"),
    ("trust_refused", "relayd_trust_refused", "Trust bundles refused"),
    ("storage_errors", "relayd_storage_errors", "Failed writes to the state database"),
    ("send_retries", "relayd_send_retries", "Frames queued again after the radio refused them"),
    ("unconfirmed", "relayd_unconfirmed_frames", "Frames a radio kept but never confirmed on air"),
    ("forgery_notices", "relayd_forgery_notices", "Notices broadcast about forgeries heard on RF"),
    ("catchup_dms", "relayd_catchup_messages", "Active alerts sent by DM to handhelds back on air"),
    ("late_repeats", "relayd_late_repeats", "Urgent alerts handed to a radio again under their packet id"),
)


class _Monotonic:
    """Counter values as Prometheus requires them: never lower than already exposed.

    A counter only resets when the process restarts (Prometheus detects that). relayd's
    tallies only grow today, but one corrected downwards (as `transmitted` once was, when the
    radio reported a counted frame unsent) would read as a counter reset and a burst of
    phantom increases in `rate()`; the value is held until the tally passes it again.
    """

    def __init__(self) -> None:
        self._high: dict[tuple[str, tuple[str, ...]], float] = {}

    def __call__(self, name: str, labels: tuple[str, ...], value: float) -> float:
        key = (name, labels)
        high = max(self._high.get(key, 0.0), value)
        self._high[key] = high
        return high


class RelayCollector(Collector):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self._monotonic = _Monotonic()

    def _counter(self, name: str, help_text: str, labels: list[str] | None = None) -> CounterMetricFamily:
        return CounterMetricFamily(name, help_text, labels=labels or [])

    def _add(self, family: CounterMetricFamily, labels: tuple[str, ...], value: float) -> None:
        family.add_metric(list(labels), self._monotonic(family.name, labels, value))

    def collect(self) -> Iterator[Metric]:
        relay = self.relay
        now = relay.clock()
        scale = relay.time_scale

        build = InfoMetricFamily("relayd_build", "relayd version and the Python it runs on")
        build.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield build

        counters = relay.counters
        for field, name, help_text in _EVENT_COUNTERS:
            family = self._counter(name, help_text)
            self._add(family, (), float(getattr(counters, field)))
            yield family

        drops = self._counter("relayd_dropped_frames", "Frames dropped, by reason", ["reason"])
        for reason in DropReason:
            self._add(drops, (reason.value,), float(counters.drops.get(reason.value, 0)))
        # Peer traffic (QoS 0) the MQTT intake shed under a flood, before any verification.
        self._add(drops, (SHED_REASON,), float(relay.mqtt.intake.shed))
        yield drops

        backlog = self._counter(
            "relayd_backlog_texts",
            "Texts the radio heard before relayd connected, by what became of them",
            ["outcome"],
        )
        for outcome in BacklogOutcome:
            self._add(backlog, (outcome.value,), float(counters.backlog.get(outcome.value, 0)))
        yield backlog

        given_up = self._counter(
            "relayd_late_repeats_given_up",
            "Late repeats not sent, by why (relayd/core/repeat.py)",
            ["reason"],
        )
        for gone in GONE_REASONS:
            self._add(given_up, (gone,), float(relay.late_repeats.given_up.get(gone, 0)))
        yield given_up

        replies = self._counter("relayd_replies", "Responders' answers wrapped for dispatchers")
        self._add(replies, (), float(relay.replies.wrapped))
        yield replies

        malformed_messages = self._counter(
            "relayd_malformed_messages", "MQTT messages that could not be used, by topic", ["topic"]
        )
        for kind in TopicKind:
            self._add(malformed_messages, (kind.value,), float(counters.malformed.get(kind.value, 0)))
        yield malformed_messages

        unverified = self._counter(
            "relayd_unverified_control_messages",
            "Peers' status, events and report notes not believed, by reason",
            ["reason"],
        )
        for rejection in ControlRejection:
            self._add(unverified, (rejection.value,), float(counters.unverified.get(rejection.value, 0)))
        yield unverified

        malformed = self._counter(
            "relayd_malformed_frames", "Input that could not be parsed, by source", ["source", "radio"]
        )
        self._add(malformed, ("message", ""), float(counters.drops.get(DropReason.MALFORMED.value, 0)))
        for radio in relay.radios:
            self._add(malformed, ("radio_api", radio.name), float(radio.malformed_frames))
        yield malformed

        reconnects = self._counter(
            "relayd_reconnects", "Connections after the first, by link", ["link", "radio"]
        )
        self._add(reconnects, ("mqtt", ""), float(max(relay.mqtt.connects - 1, 0)))
        for radio in relay.radios:
            self._add(reconnects, ("radio", radio.name), float(max(radio.connects - 1, 0)))
        yield reconnects

        airtime = self._counter(
            "relayd_airtime_seconds", "Estimated seconds on air of frames handed to the radio", ["radio"]
        )
        duplicates = self._counter(
            "relayd_radio_duplicate_packets", "Packets the radio delivered twice", ["radio"]
        )
        backlog = self._counter(
            "relayd_radio_skipped_backlog", "Old packets skipped when the radio reconnected", ["radio"]
        )
        for radio in relay.radios:
            scheduler = relay.schedulers[radio.name]
            self._add(airtime, (radio.name,), scheduler.airtime_total_s * scale)
            self._add(duplicates, (radio.name,), float(radio.duplicate_packets))
            self._add(backlog, (radio.name,), float(radio.skipped_backlog))
        yield airtime
        yield duplicates
        yield backlog

        # What the firmware said, and what the link refused to believe.
        radio_counters = (
            (
                "relayd_radio_unresponsive",
                "Radio hangs found (reconnected)",
                "unresponsive",
            ),
            (
                "relayd_radio_foreign_routing",
                "Routing packets not from our radio",
                "foreign_routing",
            ),
            ("relayd_radio_notifications", "Client notifications the firmware sent", "notifications"),
        )
        for name, help_text, attribute in radio_counters:
            family = self._counter(name, help_text, ["radio"])
            for radio in relay.radios:
                self._add(family, (radio.name,), float(getattr(radio, attribute)))
            yield family
        yield GaugeMetricFamily(
            "relayd_frames_in_flight",
            "Frames a radio has taken but not yet confirmed on air",
            value=len(relay.in_flight),
        )

        connected = GaugeMetricFamily("relayd_radio_connected", "1 if the radio link is up", labels=["radio"])
        depth = GaugeMetricFamily("relayd_queue_depth", "Alerts waiting for airtime", labels=["radio"])
        window = GaugeMetricFamily(
            "relayd_airtime_window_seconds", "Seconds on air in the duty-cycle window", labels=["radio"]
        )
        budget = GaugeMetricFamily(
            "relayd_airtime_budget_seconds", "Airtime allowed per duty-cycle window", labels=["radio"]
        )
        tx_free = GaugeMetricFamily(
            "relayd_radio_tx_queue_free", "Free slots in the radio's transmit queue", labels=["radio"]
        )
        for radio in relay.radios:
            scheduler = relay.schedulers[radio.name]
            connected.add_metric([radio.name], int(radio.state is LinkState.CONNECTED))
            depth.add_metric([radio.name], len(scheduler))
            window.add_metric([radio.name], scheduler.airtime_used_s(now) * scale)
            budget.add_metric([radio.name], scheduler.budget_s * scale)
            if radio.tx_queue_free is not None:
                tx_free.add_metric([radio.name], radio.tx_queue_free)
        yield from (connected, depth, window, budget, tx_free)

        status = relay.status()
        yield GaugeMetricFamily(
            "relayd_suppression_held",
            "Alerts held back while a relay ranked ahead may send them",
            value=len(relay.suppressor),
        )
        yield GaugeMetricFamily(
            "relayd_broker_connected",
            "1 if the broker link is up",
            value=int(status.broker is LinkState.CONNECTED),
        )
        if status.last_heard_s is not None:
            yield GaugeMetricFamily(
                "relayd_last_heard_timestamp_seconds",
                "When an alert was last heard on RF (Unix time)",
                value=status.last_heard_s,
            )
        yield GaugeMetricFamily(
            "relayd_clock_warning", "1 if the clock is implausible", value=int(bool(status.clock_warning))
        )
        yield GaugeMetricFamily(
            "relayd_storage_error", "1 if the state disk fails", value=int(bool(status.storage_error))
        )
        yield GaugeMetricFamily(
            "relayd_trust_bundle_version", "Version of the trust bundle in force", value=status.trust_version
        )


def _parse_request(request: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, path, headers with lower-case names) of an HTTP/1.x request head."""
    lines = request.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    method, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", "/")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            headers[key] = f"{headers[key]},{value.strip()}" if key in headers else value.strip()
    return method, target.split("?", 1)[0], headers


def render(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The exposition the Accept header asks for, and its content type (prometheus-client's)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def registry_for(relay: Relay) -> CollectorRegistry:
    """A registry holding the relay's collector alone (no process or platform collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RelayCollector(relay))
    return registry


async def start_metrics(relay: Relay, host: str, port: int) -> asyncio.Server | None:
    """Serve /metrics from the event loop (no exporter thread touching relay state)."""
    registry = registry_for(relay)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            method, path, headers = _parse_request(head[:MAX_REQUEST_BYTES])
            extra = ""
            if path not in ("/", "/metrics"):
                status, body, content_type = "404 Not Found", b"not found\n", "text/plain; charset=utf-8"
            elif method not in ("GET", "HEAD"):
                status, body, content_type = (
                    "405 Method Not Allowed",
                    b"GET only\n",
                    "text/plain; charset=utf-8",
                )
                extra = "Allow: GET, HEAD\r\n"
            else:
                status = "200 OK"
                body, content_type = render(registry, headers.get("accept", ""))
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (b"" if method == "HEAD" else body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception:
            # A bug in a collector must cost a scrape, never the relay.
            log.exception("metrics scrape failed")
        finally:
            writer.close()

    try:
        return await asyncio.start_server(handle, host, port, limit=MAX_REQUEST_BYTES)
    except OSError as exc:
        # A busy metrics port must not stop alerts.
        log.warning("metrics disabled: cannot listen on %s:%d: %s", host, port, exc.strerror)
        return None
