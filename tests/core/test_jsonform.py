"""The MQTT JSON form: `onair` is the authority and survives the round trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relayd.core.codec import decode
from relayd.core.jsonform import (
    JSON_FORMAT_VERSION,
    MAX_MESSAGE_BYTES,
    Envelope,
    MalformedMessage,
    alert_to_dict,
    encode_alert,
    onair_from_message,
)
from relayd.core.model import Kind, Severity
from relayd.core.timefmt import iso_utc
from tests.core.protocol_support import NOW_S, AlertOptions, Net, alert_options


@settings(max_examples=100, deadline=None)
@given(options=alert_options(), with_envelope=st.booleans())
def test_json_form_round_trips_through_onair(net: Net, options: AlertOptions, with_envelope: bool) -> None:
    alert = net.frame("dispatcher", **options).to_signed_alert()
    envelope = (
        Envelope("relay-north", "rf", NOW_S + 0.5, "dispatcher", "dispatcher") if with_envelope else None
    )
    message = encode_alert(alert, envelope)
    onair = onair_from_message(message)
    assert onair == alert.onair
    decoded = decode(onair)
    assert decoded.fields == alert.fields
    assert decoded.alert_id == alert.alert_id


def test_json_form_fields_describe_the_alert(net: Net) -> None:
    alert = net.frame(
        "relay",
        "smoke on Elm",
        kind=Kind.REPORT,
        severity=Severity.WARNING,
        area="9q8yyk",
        origin_node=0xA1B2C3D4,
    ).to_signed_alert()
    doc = json.loads(
        encode_alert(
            alert,
            Envelope(
                relay="relay-north", via="rf", received_at_s=NOW_S, signer_name="relay", signer_role="relay"
            ),
        )
    )
    f = alert.fields
    assert doc["v"] == JSON_FORMAT_VERSION
    assert doc["id"] == alert.id_hex
    assert doc["kind"] == "report"
    assert doc["severity"] == "warning"
    assert doc["key_id"] == f.key_id.hex()
    assert doc["issued_at"] == iso_utc(f.issued_at_s)
    assert doc["issued_at_s"] == f.issued_at_s
    assert doc["expires_at_s"] == f.expires_at_s
    assert doc["seq"] == f.seq
    assert doc["ref"] is None
    assert doc["area"] == "9q8yyk"
    assert doc["origin_node"] == "!a1b2c3d4"
    assert doc["text"] == "smoke on Elm"
    assert doc["signature"] == alert.signature.hex()
    assert doc["relay"] == "relay-north"
    assert doc["via"] == "rf"
    assert doc["received_at"] == iso_utc(NOW_S)
    assert doc["signer"] == {"name": "relay", "role": "relay"}


def test_json_form_without_envelope_has_no_envelope_keys(net: Net) -> None:
    doc = alert_to_dict(net.frame("dispatcher", "x").to_signed_alert())
    assert not {"relay", "via", "received_at", "signer"} & set(doc)


def test_only_onair_is_authoritative(net: Net) -> None:
    alert = net.frame("dispatcher", "real text").to_signed_alert()
    doc = alert_to_dict(alert)
    doc["text"] = "forged text"
    doc["kind"] = "cancel"
    assert onair_from_message(json.dumps(doc).encode()) == alert.onair


def test_a_bare_onair_text_is_accepted_as_is(net: Net) -> None:
    onair = net.frame("dispatcher", "bare").onair
    assert onair_from_message(onair.encode()) == onair


@pytest.mark.parametrize(
    ("payload", "phrase"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b'{"onair": 5}', "no 'onair' string"),
        (b"{}", "no 'onair' string"),
        (b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "over"),
        (b'{"a":' + b"1" * 5000 + b"}", "not valid JSON"),
        (b"{" * 5000, "not valid JSON"),
    ],
)
def test_unusable_messages_are_malformed_with_a_reason(payload: bytes, phrase: str) -> None:
    with pytest.raises(MalformedMessage, match=phrase):
        onair_from_message(payload)


@settings(max_examples=300)
@given(
    payload=st.binary(max_size=300)
    | st.text(max_size=200).map(lambda t: ("{" + t).encode("utf-8", "replace"))
)
def test_random_messages_yield_text_or_malformed_message(payload: bytes) -> None:
    error: MalformedMessage | None = None
    try:
        onair = onair_from_message(payload)
    except MalformedMessage as exc:
        error = exc
    if error is None:
        assert isinstance(onair, str)
    else:
        assert error.detail
