"""Hostile MQTT payloads: what one broker account can publish to crash a reader.

Used by the daemon, console and fuzz tests. Each is a kind of payload a careless parser
mishandles; together they cover every way a JSON number, string or structure can lie.
"""

from __future__ import annotations

import json

HUGE_INT = "9" * 400  # json.loads accepts it; float() raises OverflowError


def _status_with(field: str, raw: str, relay: str) -> bytes:
    """A plausible status document with one field replaced by raw JSON text."""
    doc = {
        "v": 1,
        "relay": relay,
        "state": "online",
        "ts": 1.0,
        "radio": {"state": "connected", "device": "tcp:x", "node": "!a1b2c3d4"},
        "broker": {"state": "connected"},
        "queue_depth": 0,
        "airtime": {"last_hour_s": 0.0, "budget_per_hour_s": 360.0, "history_s": [0.0]},
        "counters": {"transmitted": 0, "suppressed": 0, "heard": 0, "published": 0},
        "drops": {},
        "last_heard": None,
    }
    marker = "__HOSTILE__"
    doc[field] = marker
    return json.dumps(doc).replace(f'"{marker}"', raw).encode()


def _event_with(field: str, raw: str, relay: str) -> bytes:
    doc: dict[str, object] = {
        "v": 1,
        "relay": relay,
        "event": "transmitted",
        "alert_id": "e70f58add945c0e0",
        "ts": 1.0,
        "via": "rf",
        "reason": None,
    }
    marker = "__HOSTILE__"
    doc[field] = marker
    return json.dumps(doc).replace(f'"{marker}"', raw).encode()


def hostile_payloads(relay: str = "mallory") -> dict[str, bytes]:
    """Name -> payload. `relay` is the relay id the status/event-shaped ones claim."""
    return {
        "not_json": b"{not json",
        "json_array": b"[]",
        "json_null": b"null",
        "json_string": b'"online"',
        "nan_ts": _status_with("ts", "NaN", relay),
        "infinity_airtime": _status_with("queue_depth", "Infinity", relay),
        "huge_int_ts": _status_with("ts", HUGE_INT, relay),
        "huge_float_ts": _status_with("ts", "1e308", relay),
        "huge_event_ts": _event_with("ts", HUGE_INT, relay),
        "negative_queue": _status_with("queue_depth", "-5", relay),
        "negative_ts": _event_with("ts", "-1", relay),
        "wrong_type_state": _status_with("state", '["online"]', relay),
        "wrong_type_radio": _status_with("radio", '"connected"', relay),
        "wrong_type_relay": _status_with("relay", "5", relay),
        "wrong_type_event": _event_with("event", "{}", relay),
        "surrogate_onair": b'{"onair": "\\ud800"}',
        "surrogate_status": _status_with("version", '"\\ud800"', relay),
        "surrogate_event": _event_with("alert_id", '"\\udfff"', relay),
        "surrogate_report": b'{"relay": "x", "origin_node": "!\\ud800", "origin_packet": 1}',
        "huge_report_packet": ('{"origin_node": "!a1b2c3d4", "origin_packet": ' + HUGE_INT + "}").encode(),
        "oversized": b'{"onair": "' + b"x" * 20_000 + b'"}',
        "empty": b"",
        "invalid_utf8": b"\xff\xfe\x00binary",
        "deep_nesting": b"[" * 5000,
        "over_digit_limit": b'{"v": 1, "ts": ' + b"1" * 5000 + b"}",
    }
