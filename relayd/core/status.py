"""Relay status and event messages: written by the daemon, read by the TUI.

Both sides use these typed values; `parse_*` raise MalformedMessage on anything unexpected
so a reader can count and show bad messages instead of crashing.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import TypeVar

from relayd.core.jsonform import MAX_MESSAGE_BYTES, MalformedMessage
from relayd.core.model import DropReason

STATUS_FORMAT_VERSION = 1
_E = TypeVar("_E", bound=enum.Enum)


class LinkState(enum.Enum):
    CONNECTED = "connected"
    CONNECTING = "connecting"
    DISCONNECTED = "disconnected"


class RelayState(enum.Enum):
    ONLINE = "online"
    DRAINING = "draining"
    OFFLINE = "offline"  # the broker publishes this as the relay's last will


class EventKind(enum.Enum):
    HEARD = "heard"  # accepted from RF
    RECEIVED = "received"  # accepted from MQTT (outbox or another relay)
    QUEUED = "queued"
    TRANSMITTED = "transmitted"
    SUPPRESSED = "suppressed"  # another relay's transmission was heard first
    DROPPED = "dropped"  # rejected or expired; `reason` says why
    REPORT = "report"  # a handheld's text wrapped into a signed report


@dataclass(frozen=True, slots=True)
class RelayStatus:
    relay: str
    state: RelayState
    ts_s: float = 0.0
    version: str = ""
    radio: LinkState = LinkState.DISCONNECTED
    radio_device: str = ""
    radio_node: str = ""
    broker: LinkState = LinkState.DISCONNECTED
    queue_depth: int = 0
    airtime_last_hour_s: float = 0.0
    airtime_budget_per_hour_s: float = 0.0
    # Seconds on air per minute, oldest first, for the last 60 minutes (a sparkline).
    airtime_history_s: tuple[float, ...] = ()
    transmitted: int = 0
    suppressed: int = 0
    heard: int = 0
    published: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    last_heard_s: float | None = None
    clock_warning: str | None = None
    storage_error: str | None = None
    trust_version: int | None = None
    # Radio nodes of other relays that this relay's radio has heard ("!0a1b2c3d"): how a
    # peer learns that its frames reach us (suppression among RF neighbours). Relay radios
    # only, never handhelds.
    rf_heard: tuple[str, ...] = ()

    @property
    def alarming(self) -> bool:
        """Red in the TUI: offline, clock not trustworthy, or storage failing."""
        return (
            self.state is RelayState.OFFLINE
            or self.clock_warning is not None
            or self.storage_error is not None
        )


def offline_status(relay: str) -> RelayStatus:
    return RelayStatus(relay=relay, state=RelayState.OFFLINE)


def encode_status(s: RelayStatus) -> bytes:
    doc = {
        "v": STATUS_FORMAT_VERSION,
        "relay": s.relay,
        "state": s.state.value,
        "ts": s.ts_s,
        "version": s.version,
        "radio": {"state": s.radio.value, "device": s.radio_device, "node": s.radio_node},
        "broker": {"state": s.broker.value},
        "queue_depth": s.queue_depth,
        "airtime": {
            "last_hour_s": round(s.airtime_last_hour_s, 3),
            "budget_per_hour_s": round(s.airtime_budget_per_hour_s, 3),
            "history_s": [round(x, 3) for x in s.airtime_history_s],
        },
        "counters": {
            "transmitted": s.transmitted,
            "suppressed": s.suppressed,
            "heard": s.heard,
            "published": s.published,
        },
        "drops": dict(sorted(s.drops.items())),
        "last_heard": s.last_heard_s,
        "clock_warning": s.clock_warning,
        "storage_error": s.storage_error,
        "trust_version": s.trust_version,
        "rf_heard": list(s.rf_heard),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _load(payload: bytes) -> dict[str, object]:
    if len(payload) > MAX_MESSAGE_BYTES:
        raise MalformedMessage("message too large")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):  # ValueError: bad UTF-8, bad JSON, an over-long integer
        raise MalformedMessage("not UTF-8 JSON") from None
    if not isinstance(doc, dict):
        raise MalformedMessage("not a JSON object")
    if doc.get("v") != STATUS_FORMAT_VERSION:
        raise MalformedMessage(f"unsupported message version {doc.get('v')!r}")
    return doc


def _obj(doc: dict[str, object], key: str) -> dict[str, object]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise MalformedMessage(f"{key!r} must be an object")
    return value


def _num(doc: dict[str, object], key: str, default: float = 0.0) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedMessage(f"{key!r} must be a number")
    return float(value)


def _int(doc: dict[str, object], key: str) -> int:
    value = doc.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedMessage(f"{key!r} must be an integer")
    return value


def _opt_str(doc: dict[str, object], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedMessage(f"{key!r} must be a string or null")
    return value


def _enum(cls: type[_E], value: object, what: str) -> _E:
    try:
        return cls(value)
    except ValueError:
        raise MalformedMessage(f"unknown {what} {value!r}") from None


def parse_status(payload: bytes) -> RelayStatus:
    doc = _load(payload)
    relay = doc.get("relay")
    if not isinstance(relay, str) or not relay:
        raise MalformedMessage("'relay' must be a non-empty string")
    state = _enum(RelayState, doc.get("state"), "relay state")
    radio = _obj(doc, "radio")
    broker = _obj(doc, "broker")
    airtime = _obj(doc, "airtime")
    counters = _obj(doc, "counters")
    drops_doc = _obj(doc, "drops")
    drops: dict[str, int] = {}
    known = {r.value for r in DropReason}
    for reason, count in drops_doc.items():
        if reason not in known or isinstance(count, bool) or not isinstance(count, int):
            raise MalformedMessage(f"bad drop counter {reason!r}")
        drops[reason] = count
    history = airtime.get("history_s", [])
    if not isinstance(history, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in history
    ):
        raise MalformedMessage("'airtime.history_s' must be a list of numbers")
    last_heard = doc.get("last_heard")
    if last_heard is not None and (isinstance(last_heard, bool) or not isinstance(last_heard, int | float)):
        raise MalformedMessage("'last_heard' must be a number or null")
    trust_version = doc.get("trust_version")
    if trust_version is not None and (isinstance(trust_version, bool) or not isinstance(trust_version, int)):
        raise MalformedMessage("'trust_version' must be an integer or null")
    rf_heard = doc.get("rf_heard", [])
    if not isinstance(rf_heard, list) or not all(isinstance(n, str) for n in rf_heard):
        raise MalformedMessage("'rf_heard' must be a list of node ids")
    return RelayStatus(
        relay=relay,
        state=state,
        ts_s=_num(doc, "ts"),
        version=_opt_str(doc, "version") or "",
        radio=_enum(LinkState, radio.get("state", "disconnected"), "radio state"),
        radio_device=_opt_str(radio, "device") or "",
        radio_node=_opt_str(radio, "node") or "",
        broker=_enum(LinkState, broker.get("state", "disconnected"), "broker state"),
        queue_depth=_int(doc, "queue_depth"),
        airtime_last_hour_s=_num(airtime, "last_hour_s"),
        airtime_budget_per_hour_s=_num(airtime, "budget_per_hour_s"),
        airtime_history_s=tuple(float(x) for x in history),
        transmitted=_int(counters, "transmitted"),
        suppressed=_int(counters, "suppressed"),
        heard=_int(counters, "heard"),
        published=_int(counters, "published"),
        drops=drops,
        last_heard_s=float(last_heard) if last_heard is not None else None,
        clock_warning=_opt_str(doc, "clock_warning"),
        storage_error=_opt_str(doc, "storage_error"),
        trust_version=trust_version,
        rf_heard=tuple(rf_heard),
    )


@dataclass(frozen=True, slots=True)
class RelayEvent:
    relay: str
    event: EventKind
    alert_id: str
    ts_s: float
    via: str | None = None  # "rf" or "mqtt"
    reason: str | None = None  # DropReason value for DROPPED


def encode_event(e: RelayEvent) -> bytes:
    doc = {
        "v": STATUS_FORMAT_VERSION,
        "relay": e.relay,
        "event": e.event.value,
        "alert_id": e.alert_id,
        "ts": e.ts_s,
        "via": e.via,
        "reason": e.reason,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def parse_event(payload: bytes) -> RelayEvent:
    doc = _load(payload)
    relay = doc.get("relay")
    alert_id = doc.get("alert_id")
    if not isinstance(relay, str) or not isinstance(alert_id, str):
        raise MalformedMessage("'relay' and 'alert_id' must be strings")
    return RelayEvent(
        relay=relay,
        event=_enum(EventKind, doc.get("event"), "event"),
        alert_id=alert_id,
        ts_s=_num(doc, "ts"),
        via=_opt_str(doc, "via"),
        reason=_opt_str(doc, "reason"),
    )
