"""Relay status and event messages: written by the daemon, read by the TUI.

Both sides use these typed values; `parse_*` raise MalformedMessage on anything unexpected
so a reader can count and show bad messages instead of crashing.
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass, field
from typing import Final, TypeVar

from relayd.core.jsonform import MAX_MESSAGE_BYTES, MalformedMessage
from relayd.core.topics import valid_relay_id

STATUS_FORMAT_VERSION = 1
# Status and events travel sealed (relayd/core/control.py); `parse_*` unwrap the seal without
# checking it, for tools that only display. Whatever decides anything verifies it first.
CONTROL_FORMAT: Final = "relayd-control/1"
_ALERT_ID_RE = re.compile(r"[0-9a-f]{16}")
_COUNTER_NAME_RE = re.compile(r"[a-z_]{1,32}")
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
    # The relay's radio took the frame and will put it on air next; the relay keeps it until
    # the firmware confirms (a neighbour's repeat, or MAX_RETRANSMIT). Peers stand down on it.
    TAKEN = "taken"
    TRANSMITTED = "transmitted"  # the firmware confirmed it was on air
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
    # Messages this relay could not use, by topic kind (outbox, status, events, ...).
    malformed: dict[str, int] = field(default_factory=dict)
    # Control messages (peers' status, events, report notes) not believed, by ControlRejection.
    unverified: dict[str, int] = field(default_factory=dict)
    # Radio nodes of other relays that this relay's radio has heard ("!0a1b2c3d"): how a
    # peer learns that its frames reach us (suppression among RF neighbours). Relay radios
    # only, never handhelds.
    rf_heard: tuple[str, ...] = ()
    # Texts its radio heard before relayd connected, by what became of them
    # (relayd/core/backlog.py BacklogOutcome: late_report, old_report, ...).
    backlog: dict[str, int] = field(default_factory=dict)

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
        "malformed": dict(sorted(s.malformed.items())),
        "unverified": dict(sorted(s.unverified.items())),
        "last_heard": s.last_heard_s,
        "clock_warning": s.clock_warning,
        "storage_error": s.storage_error,
        "trust_version": s.trust_version,
        "rf_heard": list(s.rf_heard),
        "backlog": dict(sorted(s.backlog.items())),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


# Bounds on numbers read from MQTT. A retained status is read by every relay and every
# console, so a value Python cannot turn into a float (a 400-digit integer), a NaN, or a
# time past year 9999 (which datetime cannot show) must be malformed, not a crash later.
MAX_TIMESTAMP_S: Final = 253_402_300_799.0  # 9999-12-31T23:59:59Z
MAX_COUNT: Final = 2**53  # integers a JSON reader in any language keeps exactly
MAX_SECONDS: Final = 10.0 * 366 * 86400  # airtime figures: ten years is already absurd
MAX_HISTORY_POINTS: Final = 1440  # a day of per-minute airtime


def _reject_constant(name: str) -> float:
    raise MalformedMessage(f"{name} is not a number JSON allows")


def load_json_object(payload: bytes) -> dict[str, object]:
    """Decode one MQTT JSON payload: size-capped, strict UTF-8, no NaN/Infinity, an object.

    Raises MalformedMessage and nothing else.
    """
    if len(payload) > MAX_MESSAGE_BYTES:
        raise MalformedMessage("message too large")
    if not payload:
        raise MalformedMessage("empty message")
    try:
        doc = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except MalformedMessage:
        raise
    except (ValueError, RecursionError):  # ValueError: bad UTF-8, bad JSON, an over-long integer
        raise MalformedMessage("not UTF-8 JSON") from None
    if not isinstance(doc, dict):
        raise MalformedMessage("not a JSON object")
    return doc


def _load(payload: bytes) -> dict[str, object]:
    doc = load_json_object(payload)
    if doc.get("format") == CONTROL_FORMAT:
        body = doc.get("body")
        if not isinstance(body, str):
            raise MalformedMessage("sealed message without a body")
        doc = load_json_object(checked_str(body, "body", MAX_MESSAGE_BYTES).encode("utf-8"))
    if doc.get("v") != STATUS_FORMAT_VERSION:
        raise MalformedMessage("unsupported message version")
    return doc


def _obj(doc: dict[str, object], key: str) -> dict[str, object]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise MalformedMessage(f"{key!r} must be an object")
    return value


def _finite(value: object, what: str, maximum: float) -> float:
    """A JSON number as a float in [0, maximum]; anything else is malformed."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedMessage(f"{what!r} must be a number")
    if isinstance(value, int) and not 0 <= value <= maximum:  # before float(): it may overflow
        raise MalformedMessage(f"{what!r} is out of range")
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= maximum:
        raise MalformedMessage(f"{what!r} is out of range")
    return number


def _num(doc: dict[str, object], key: str, maximum: float = MAX_SECONDS) -> float:
    return _finite(doc.get(key, 0.0), key, maximum)


def _int(doc: dict[str, object], key: str) -> int:
    value = doc.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedMessage(f"{key!r} must be an integer")
    if not 0 <= value <= MAX_COUNT:
        raise MalformedMessage(f"{key!r} is out of range")
    return value


def checked_str(value: str, what: str, max_chars: int = 256) -> str:
    """A string that can be shown and re-encoded: UTF-8-encodable (no lone surrogates), bounded."""
    if len(value) > max_chars:
        raise MalformedMessage(f"{what!r} is too long")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedMessage(f"{what!r} is not valid Unicode") from None
    return value


def _opt_str(doc: dict[str, object], key: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedMessage(f"{key!r} must be a string or null")
    return checked_str(value, key)


def _enum(cls: type[_E], value: object, what: str) -> _E:
    try:
        return cls(value)
    except (ValueError, TypeError):  # TypeError: an unhashable value such as a list
        raise MalformedMessage(f"unknown {what}") from None


def _relay_id(doc: dict[str, object]) -> str:
    relay = doc.get("relay")
    if not isinstance(relay, str) or not valid_relay_id(relay):
        raise MalformedMessage("'relay' must be a relay id")
    return relay


# A relay hears at most a few hundred other relays' radios; a longer list is an attack.
MAX_RF_HEARD = 256


def parse_status(payload: bytes) -> RelayStatus:
    doc = _load(payload)
    relay = _relay_id(doc)
    state = _enum(RelayState, doc.get("state"), "relay state")
    radio = _obj(doc, "radio")
    broker = _obj(doc, "broker")
    airtime = _obj(doc, "airtime")
    counters = _obj(doc, "counters")
    # Drop reasons, and the radio's own refusals (relay.REFUSED_BY_RADIO): plain words.
    drops = _counts(_obj(doc, "drops"), "drops", None)
    malformed = _counts(_obj(doc, "malformed"), "malformed", None)
    unverified = _counts(_obj(doc, "unverified"), "unverified", None)
    backlog = _counts(_obj(doc, "backlog"), "backlog", None)
    history = airtime.get("history_s", [])
    if not isinstance(history, list) or len(history) > MAX_HISTORY_POINTS:
        raise MalformedMessage("'airtime.history_s' must be a list of numbers")
    last_heard = doc.get("last_heard")
    trust_version = doc.get("trust_version")
    if trust_version is not None and (
        isinstance(trust_version, bool)
        or not isinstance(trust_version, int)
        or not 0 <= trust_version <= MAX_COUNT
    ):
        raise MalformedMessage("'trust_version' must be an integer or null")
    rf_heard = doc.get("rf_heard", [])
    if (
        not isinstance(rf_heard, list)
        or len(rf_heard) > MAX_RF_HEARD
        or not all(isinstance(n, str) and len(n) <= 16 for n in rf_heard)
    ):
        raise MalformedMessage("'rf_heard' must be a list of node ids")
    return RelayStatus(
        relay=relay,
        state=state,
        ts_s=_num(doc, "ts", MAX_TIMESTAMP_S),
        version=_opt_str(doc, "version") or "",
        radio=_enum(LinkState, radio.get("state", "disconnected"), "radio state"),
        radio_device=_opt_str(radio, "device") or "",
        radio_node=_opt_str(radio, "node") or "",
        broker=_enum(LinkState, broker.get("state", "disconnected"), "broker state"),
        queue_depth=_int(doc, "queue_depth"),
        airtime_last_hour_s=_num(airtime, "last_hour_s"),
        airtime_budget_per_hour_s=_num(airtime, "budget_per_hour_s"),
        airtime_history_s=tuple(_finite(x, "airtime.history_s", MAX_SECONDS) for x in history),
        transmitted=_int(counters, "transmitted"),
        suppressed=_int(counters, "suppressed"),
        heard=_int(counters, "heard"),
        published=_int(counters, "published"),
        drops=drops,
        malformed=malformed,
        unverified=unverified,
        last_heard_s=_finite(last_heard, "last_heard", MAX_TIMESTAMP_S) if last_heard is not None else None,
        clock_warning=_opt_str(doc, "clock_warning"),
        storage_error=_opt_str(doc, "storage_error"),
        trust_version=trust_version,
        rf_heard=tuple(rf_heard),
        backlog=backlog,
    )


def _counts(doc: dict[str, object], what: str, known: set[str] | None) -> dict[str, int]:
    """A {name: count} object; names from `known` (or short plain words when None)."""
    out: dict[str, int] = {}
    if len(doc) > 64:
        raise MalformedMessage(f"too many {what} counters")
    for name, count in doc.items():
        ok_name = name in known if known is not None else bool(_COUNTER_NAME_RE.fullmatch(name))
        if (
            not ok_name
            or isinstance(count, bool)
            or not isinstance(count, int)
            or not 0 <= count <= MAX_COUNT
        ):
            raise MalformedMessage(f"bad {what} counter")
        out[name] = count
    return out


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
    relay = _relay_id(doc)
    alert_id = doc.get("alert_id")
    if not isinstance(alert_id, str) or not _ALERT_ID_RE.fullmatch(alert_id):
        raise MalformedMessage("'alert_id' must be 16 hex digits")
    reason = _opt_str(doc, "reason")
    # A drop reason, or a radio's own refusal ("refused_by_radio"): a short plain word.
    if reason is not None and not _COUNTER_NAME_RE.fullmatch(reason):
        raise MalformedMessage("'reason' must be a short word")
    return RelayEvent(
        relay=relay,
        event=_enum(EventKind, doc.get("event"), "event"),
        alert_id=alert_id,
        ts_s=_num(doc, "ts", MAX_TIMESTAMP_S),
        via=_opt_str(doc, "via"),
        reason=reason,
    )


_NODE_ID_RE = re.compile(r"![0-9a-f]{8}")


def parse_node_id(value: object) -> int | None:
    """A Meshtastic node id as written in status and reports ("!a1b2c3d4"), or None."""
    if not isinstance(value, str) or not _NODE_ID_RE.fullmatch(value):
        return None
    return int(value[1:], 16)


@dataclass(frozen=True, slots=True)
class ReportNote:
    """ "I have published the report of this handheld packet": peers then skip their copy."""

    relay: str
    report_id: str  # the relay-signed report frame's alert id
    origin_node: int
    origin_packet: int


def encode_report_note(n: ReportNote) -> bytes:
    doc = {
        "v": STATUS_FORMAT_VERSION,
        "relay": n.relay,
        "report_id": n.report_id,
        "origin_node": f"!{n.origin_node:08x}",
        "origin_packet": n.origin_packet,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def parse_report_note(payload: bytes) -> ReportNote:
    doc = _load(payload)
    report_id = doc.get("report_id")
    if not isinstance(report_id, str) or not _ALERT_ID_RE.fullmatch(report_id):
        raise MalformedMessage("'report_id' must be 16 hex digits")
    origin = parse_node_id(doc.get("origin_node"))
    packet = doc.get("origin_packet")
    if origin is None:
        raise MalformedMessage("'origin_node' must be a node id")
    if isinstance(packet, bool) or not isinstance(packet, int) or not 0 <= packet < 2**32:
        raise MalformedMessage("'origin_packet' must be a packet id")
    return ReportNote(_relay_id(doc), report_id, origin, packet)
