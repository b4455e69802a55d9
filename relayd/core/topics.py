"""The MQTT topic layout (docs/mqtt.md). One place, so the daemon and the TUI agree."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_ROOT = "relayd"
_RELAY_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def valid_relay_id(relay_id: str) -> bool:
    """Relay ids become topic levels, so no '/', '+', '#' or spaces."""
    return bool(_RELAY_ID_RE.fullmatch(relay_id))


class TopicKind(enum.Enum):
    """Which part of the layout a topic is in: malformed messages are counted by this."""

    OUTBOX = "outbox"
    ALERTS = "alerts"
    ACTIVE = "active"
    REPORTS = "reports"
    TRUST = "trust"
    STATUS = "status"
    EVENTS = "events"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Topics:
    root: str = DEFAULT_ROOT

    @property
    def alerts(self) -> str:
        """Accepted alerts as JSON, published by relays (QoS 1, not retained)."""
        return f"{self.root}/alerts"

    @property
    def reports(self) -> str:
        """Field reports (relay-wrapped handheld texts and reporter-signed reports)."""
        return f"{self.root}/reports"

    @property
    def outbox(self) -> str:
        """Dispatchers publish signed alerts here for relays to put on air."""
        return f"{self.root}/outbox"

    @property
    def trust(self) -> str:
        """The retained, root-signed trust bundle."""
        return f"{self.root}/trust"

    def active(self, alert_id_hex: str) -> str:
        """Retained while an alert is active; cleared (empty retained) on expiry/cancel/all-clear."""
        return f"{self.root}/active/{alert_id_hex}"

    @property
    def active_wildcard(self) -> str:
        return f"{self.root}/active/+"

    def status(self, relay_id: str) -> str:
        """Retained relay status, with a last will of state "offline"."""
        return f"{self.root}/relays/{relay_id}/status"

    def events(self, relay_id: str) -> str:
        """Per-alert events from one relay: heard, queued, transmitted, suppressed, dropped."""
        return f"{self.root}/relays/{relay_id}/events"

    @property
    def status_wildcard(self) -> str:
        return f"{self.root}/relays/+/status"

    @property
    def events_wildcard(self) -> str:
        return f"{self.root}/relays/+/events"

    def relay_subscriptions(self, event_peers: Iterable[str]) -> list[str]:
        """What a relay subscribes to: the outbox, alerts, reports, the trust bundle, every
        relay's (retained) status, and the events of only `event_peers`, the relays whose
        frames can reach its area. An alert's events then reach the relays near its sender,
        not every relay in the city: broker deliveries grow with relays x neighbours, not
        with the square of the relays. Consoles subscribe to `events_wildcard` themselves."""
        fixed = [self.outbox, self.alerts, self.reports, self.trust, self.status_wildcard]
        return fixed + [self.events(r) for r in sorted(set(event_peers)) if valid_relay_id(r)]

    def relay_of(self, topic: str) -> str | None:
        """The relay id in a status/events topic, or None."""
        parts = topic.split("/")
        root_parts = self.root.split("/")
        n = len(root_parts)
        if len(parts) == n + 3 and parts[:n] == root_parts and parts[n] == "relays":
            return parts[n + 1]
        return None

    def kind_of(self, topic: str) -> TopicKind:
        fixed = {
            self.outbox: TopicKind.OUTBOX,
            self.alerts: TopicKind.ALERTS,
            self.reports: TopicKind.REPORTS,
            self.trust: TopicKind.TRUST,
        }
        if topic in fixed:
            return fixed[topic]
        relay = self.relay_of(topic)
        if relay is not None:
            if topic == self.status(relay):
                return TopicKind.STATUS
            if topic == self.events(relay):
                return TopicKind.EVENTS
        prefix = f"{self.root}/active/"
        if topic.startswith(prefix) and "/" not in topic[len(prefix) :]:
            return TopicKind.ACTIVE
        return TopicKind.OTHER
