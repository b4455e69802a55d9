"""The JSON form of an alert on MQTT.

It always carries `onair`, the exact on-air text, so any consumer can re-verify the
signature itself; the other fields are a convenience for display. Ingest trusts `onair`
only and ignores the rest (see docs/mqtt.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from relayd.core.model import SignedAlert
from relayd.core.timefmt import iso_utc

JSON_FORMAT_VERSION: Final = 1
# MQTT messages larger than this are dropped before parsing: the biggest real message is a
# report of 512 on-air bytes plus its envelope.
MAX_MESSAGE_BYTES: Final = 8 * 1024


class MalformedMessage(ValueError):  # noqa: N818 - reads as a verdict, like MalformedFrame
    """An MQTT payload that is not a usable alert message; `detail` says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who passed the alert on, and how; not signed, informational."""

    relay: str | None = None
    via: str | None = None  # "rf" or "mqtt"
    received_at_s: float | None = None
    signer_name: str | None = None
    signer_role: str | None = None


def alert_to_dict(alert: SignedAlert, envelope: Envelope | None = None) -> dict[str, object]:
    f = alert.fields
    doc: dict[str, object] = {
        "v": JSON_FORMAT_VERSION,
        "id": alert.id_hex,
        "kind": f.kind.value,
        "severity": f.severity.value,
        "key_id": f.key_id.hex(),
        "issued_at": iso_utc(f.issued_at_s),
        "issued_at_s": f.issued_at_s,
        "seq": f.seq,
        "expires_at": iso_utc(f.expires_at_s),
        "expires_at_s": f.expires_at_s,
        "ref": f.ref.hex() if f.ref else None,
        "area": f.area,
        "origin_node": f"!{f.origin_node:08x}" if f.origin_node is not None else None,
        "text": f.text,
        "signature": alert.signature.hex(),
        "onair": alert.onair,
    }
    if envelope is not None:
        doc["relay"] = envelope.relay
        doc["via"] = envelope.via
        doc["received_at"] = iso_utc(envelope.received_at_s) if envelope.received_at_s is not None else None
        doc["signer"] = (
            {"name": envelope.signer_name, "role": envelope.signer_role} if envelope.signer_name else None
        )
    return doc


def encode_alert(alert: SignedAlert, envelope: Envelope | None = None) -> bytes:
    return json.dumps(alert_to_dict(alert, envelope), ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )


def onair_from_message(payload: bytes) -> str:
    """Extract the on-air text from an MQTT alert message. Raises MalformedMessage.

    A bare on-air text (not JSON) is accepted too, so a minimal dispatcher can publish the
    output of `relayd alert compose` as is.
    """
    if len(payload) > MAX_MESSAGE_BYTES:
        raise MalformedMessage(f"message is {len(payload)} bytes, over {MAX_MESSAGE_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage("message is not UTF-8") from None
    if not text.lstrip().startswith("{"):
        return text
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # ValueError: also an integer over Python's digit limit
        raise MalformedMessage("message is not valid JSON") from None
    if not isinstance(doc, dict):
        raise MalformedMessage("message is not a JSON object")
    onair = doc.get("onair")
    if not isinstance(onair, str):
        raise MalformedMessage("message has no 'onair' string")
    try:
        # JSON's \ud800 escapes decode to lone surrogates, which no on-air text can hold.
        onair.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedMessage("'onair' is not valid Unicode (a lone surrogate)") from None
    return onair
