"""The on-air codec: round trips, frame budget, visible prefix, strict canonical decoding."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relayd.core.airtime import MAX_BROADCAST_PAYLOAD_BYTES
from relayd.core.codec import (
    BEL,
    MAX_REPORT_PAYLOAD_BYTES,
    SIGNING_DOMAIN,
    TEST_PREFIX,
    ComposeError,
    MalformedFrame,
    alert_id_of,
    compose,
    decode,
    render,
    signed_bytes_of,
    text_budget_bytes,
)
from relayd.core.model import Kind, Severity
from tests.core.protocol_support import NOW_S, AlertOptions, Net, alert_options


def _token_blob(onair: str) -> bytes:
    return base64.b85decode(onair.rpartition("\n")[2])


def _with_token(onair: str, blob: bytes) -> str:
    return onair.rpartition("\n")[0] + "\n" + base64.b85encode(blob).decode()


# --- round trips --------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(options=alert_options(), seq=st.integers(0, 2**24 - 1), lifetime_s=st.integers(1, 2**24 - 1))
def test_compose_then_decode_reproduces_every_field(
    net: Net, options: AlertOptions, seq: int, lifetime_s: int
) -> None:
    frame = net.frame("dispatcher", seq=seq, lifetime_s=lifetime_s, **options)
    decoded = decode(frame.onair)
    assert decoded.fields == frame.fields
    assert decoded.signature == frame.signature
    assert decoded.signed_bytes == frame.signed_bytes
    assert decoded.alert_id == frame.alert_id
    assert decoded.onair == frame.onair
    # bytes and str payloads decode alike
    assert decode(frame.onair.encode("utf-8")) == decoded


@settings(max_examples=100, deadline=None)
@given(options=alert_options())
def test_every_broadcast_frame_fits_one_lora_frame(net: Net, options: AlertOptions) -> None:
    frame = net.frame("dispatcher", **options)
    assert len(frame.onair.encode("utf-8")) <= (
        MAX_REPORT_PAYLOAD_BYTES if options["kind"] is Kind.REPORT else MAX_BROADCAST_PAYLOAD_BYTES
    )


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("severity", list(Severity))
@pytest.mark.parametrize("char", ["x", "é", "→", "🚨"])
def test_120_byte_text_fits_one_frame_with_its_signature(
    net: Net, kind: Kind, severity: Severity, char: str
) -> None:
    text = char * (120 // len(char.encode()))
    assert len(text.encode()) == 120
    frame = net.frame("dispatcher", text, kind=kind, severity=severity)
    assert len(frame.onair.encode("utf-8")) <= MAX_BROADCAST_PAYLOAD_BYTES
    assert decode(frame.onair).fields.text == text


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("severity", list(Severity))
@pytest.mark.parametrize(
    ("has_ref", "area"), [(False, None), (True, None), (False, "9q8yyk"), (True, "zone-12")]
)
def test_text_of_exactly_the_budget_fits_and_one_byte_more_is_refused(
    net: Net, kind: Kind, severity: Severity, has_ref: bool, area: str | None
) -> None:
    if kind.needs_reference and not has_ref:
        return
    budget = text_budget_bytes(kind, severity, has_ref=has_ref, area=area)
    ref = bytes(8) if has_ref else None
    limit = MAX_REPORT_PAYLOAD_BYTES if kind is Kind.REPORT else MAX_BROADCAST_PAYLOAD_BYTES
    frame = net.frame("dispatcher", "a" * budget, kind=kind, severity=severity, ref=ref, area=area)
    # An ASCII text of exactly the budget fills the frame to the last byte.
    assert len(frame.onair.encode()) == limit
    with pytest.raises(ComposeError, match="cut 1 bytes"):
        net.frame("dispatcher", "a" * (budget + 1), kind=kind, severity=severity, ref=ref, area=area)


def test_oversize_text_error_says_how_many_bytes_to_cut(net: Net) -> None:
    budget = text_budget_bytes(Kind.ALERT, Severity.URGENT)
    with pytest.raises(ComposeError) as info:
        net.frame("dispatcher", "é" * 100, kind=Kind.ALERT, severity=Severity.URGENT)
    message = str(info.value)
    assert f"text is 200 bytes but only {budget} fit in one LoRa frame" in message
    assert f"cut {200 - budget} bytes" in message


def test_multibyte_text_counts_bytes_not_characters(net: Net) -> None:
    budget = text_budget_bytes(Kind.ALERT, Severity.WARNING)
    fits = "🚨" * (budget // 4)
    assert decode(net.frame("dispatcher", fits, severity=Severity.WARNING).onair).fields.text == fits
    with pytest.raises(ComposeError, match="cut"):
        net.frame("dispatcher", "🚨" * (budget // 4 + 1), severity=Severity.WARNING)


# --- the visible prefix -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in Kind if k is not Kind.REPORT])
def test_urgent_broadcast_alert_starts_with_bel(net: Net, kind: Kind) -> None:
    frame = net.frame("dispatcher", "Raid at 5th & Main", kind=kind, severity=Severity.URGENT)
    assert frame.onair.startswith(BEL)
    assert not frame.onair[1:].startswith(BEL)


@pytest.mark.parametrize("severity", [s for s in Severity if s is not Severity.URGENT])
def test_non_urgent_alert_has_no_bel(net: Net, severity: Severity) -> None:
    assert not net.frame("dispatcher", "x", severity=severity).onair.startswith(BEL)


def test_urgent_report_has_no_bel_because_reports_never_ring_handhelds(net: Net) -> None:
    frame = net.frame("reporter", "smoke on Elm", kind=Kind.REPORT, severity=Severity.URGENT)
    assert frame.onair.startswith("smoke on Elm\n")


@pytest.mark.parametrize("severity", list(Severity))
def test_test_kind_is_shown_as_test(net: Net, severity: Severity) -> None:
    frame = net.frame("dispatcher", "drill", kind=Kind.TEST, severity=severity)
    expected = (BEL if severity is Severity.URGENT else "") + TEST_PREFIX + "drill\n"
    assert frame.onair.startswith(expected)
    assert decode(frame.onair).fields.text == "drill"


def test_onair_is_text_then_one_base85_token_line(net: Net) -> None:
    frame = net.frame("dispatcher", "line one\nline two", severity=Severity.INFO, area="9q8yyk")
    visible, _, token = frame.onair.rpartition("\n")
    assert visible == "line one\nline two"
    assert token.isascii()
    assert base64.b85encode(base64.b85decode(token)).decode() == token


def test_signed_bytes_cover_domain_body_length_and_text(net: Net) -> None:
    frame = net.frame("dispatcher", "héllo", severity=Severity.INFO)
    text = "héllo".encode()
    assert frame.signed_bytes.startswith(SIGNING_DOMAIN)
    assert frame.signed_bytes.endswith(struct.pack(">H", len(text)) + text)
    body = frame.signed_bytes[len(SIGNING_DOMAIN) : -(2 + len(text))]
    assert _token_blob(frame.onair) == body + frame.signature
    assert frame.signed_bytes == signed_bytes_of(frame.fields)
    assert frame.alert_id == alert_id_of(frame.signed_bytes)


def test_alert_id_does_not_depend_on_the_signature(net: Net) -> None:
    fields = net.fields("dispatcher", "x")
    a = compose(fields, net.ids["dispatcher"].sign)
    b = compose(fields, lambda _: bytes(64))
    assert a.alert_id == b.alert_id


# --- compose refuses what cannot be a valid frame -----------------------------------------------


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"text": ""}, "text is empty"),
        ({"text": " \n "}, "text is empty"),
        ({"text": "a\x07b"}, "control character"),
        ({"text": "a\rb"}, "control character"),
        ({"text": "a\ud800"}, "not valid Unicode"),
        ({"seq": 2**24}, "out of range"),
        ({"seq": -1}, "out of range"),
        ({"expires_at_s": NOW_S}, "expiry must be between"),
        ({"expires_at_s": NOW_S + 2**24}, "expiry must be between"),
        ({"area": "9q8yyk near the park"}, "area"),
        ({"area": ""}, "area"),
        ({"area": "ümlaut"}, "area"),
        ({"ref": b"1234"}, "reference"),
        ({"key_id": b"123"}, "key id"),
        ({"origin_node": 2**32}, "origin node"),
        ({"issued_at_s": 2**32}, "issue time"),
    ],
)
def test_compose_refuses_invalid_fields_with_a_reason(
    net: Net, change: dict[str, object], phrase: str
) -> None:
    fields = dataclasses.replace(net.fields("dispatcher", "ok", severity=Severity.INFO), **change)  # type: ignore[arg-type] # one field, well typed, per case
    with pytest.raises(ComposeError, match=phrase):
        compose(fields, net.ids["dispatcher"].sign)


@pytest.mark.parametrize("kind", [Kind.UPDATE, Kind.CANCEL, Kind.ALLCLEAR])
def test_update_cancel_and_allclear_must_reference_an_alert(net: Net, kind: Kind) -> None:
    fields = dataclasses.replace(net.fields("dispatcher", "over", kind=kind), ref=None)
    with pytest.raises(ComposeError, match="--ref"):
        compose(fields, net.ids["dispatcher"].sign)


def test_report_may_exceed_one_lora_frame_because_it_only_travels_on_mqtt(net: Net) -> None:
    budget = text_budget_bytes(Kind.REPORT, Severity.INFO, origin_node=0x1234ABCD)
    frame = net.frame("relay", "r" * budget, kind=Kind.REPORT, severity=Severity.INFO, origin_node=0x1234ABCD)
    assert len(frame.onair.encode()) == MAX_REPORT_PAYLOAD_BYTES
    assert decode(frame.onair).fields.origin_node == 0x1234ABCD


# --- strict decoding ----------------------------------------------------------------------------


def test_decode_rejects_plain_text_without_a_token() -> None:
    with pytest.raises(MalformedFrame, match="no token line"):
        decode("just a message from a handheld")


def test_decode_rejects_an_unknown_protocol_version(net: Net) -> None:
    frame = net.frame("dispatcher", "x", severity=Severity.INFO)
    blob = bytearray(_token_blob(frame.onair))
    for version in (0, 2, 15):
        blob[0] = (version << 4) | (blob[0] & 0x0F)
        with pytest.raises(MalformedFrame, match=f"unsupported protocol version {version}"):
            decode(_with_token(frame.onair, bytes(blob)))


def test_decode_rejects_unknown_flags_kind_and_severity_codes(net: Net) -> None:
    frame = net.frame("dispatcher", "x", severity=Severity.INFO)
    blob = _token_blob(frame.onair)
    for flag in (0x8,):
        with pytest.raises(MalformedFrame, match="unknown flags"):
            decode(_with_token(frame.onair, bytes([blob[0] | flag]) + blob[1:]))
    for kind_sev in (0x63, 0x14, 0xF0):
        with pytest.raises(MalformedFrame, match="unknown kind or severity"):
            decode(_with_token(frame.onair, blob[:1] + bytes([kind_sev]) + blob[2:]))


def test_decode_rejects_a_truncated_or_extended_token(net: Net) -> None:
    frame = net.frame("dispatcher", "x", severity=Severity.INFO, area="9q8yyk", ref=bytes(8))
    blob = _token_blob(frame.onair)
    for cut in (1, 4, 10, 64, len(blob) - 1):
        with pytest.raises(MalformedFrame):
            decode(_with_token(frame.onair, blob[:-cut]))
    with pytest.raises(MalformedFrame):
        decode(_with_token(frame.onair, blob + b"\x00"))


def test_decode_rejects_a_non_canonical_base85_token(net: Net) -> None:
    # A body of 16 + 1 + 6 bytes + 64 signature bytes = 87 bytes: the last base85 group is
    # partial, so several final characters decode to the same bytes; only one is canonical.
    frame = net.frame("dispatcher", "x", severity=Severity.INFO, area="9q8yyk")
    visible, _, token = frame.onair.rpartition("\n")
    blob = base64.b85decode(token)
    assert len(blob) % 4 == 3
    alphabet = base64.b85encode(bytes(range(256))).decode() + "~"
    variants = [
        token[:-1] + c
        for c in sorted(set(alphabet))
        if c != token[-1] and _b85decode_or_none(token[:-1] + c) == blob
    ]
    assert variants, "expected an alternative spelling of the last group"
    for variant in variants:
        with pytest.raises(MalformedFrame, match="canonical"):
            decode(visible + "\n" + variant)


def _b85decode_or_none(token: str) -> bytes | None:
    try:
        return base64.b85decode(token)
    except ValueError:
        return None


def test_decode_rejects_a_visible_prefix_that_does_not_match_the_kind(net: Net) -> None:
    urgent = net.frame("dispatcher", "raid", severity=Severity.URGENT)
    with pytest.raises(MalformedFrame, match="prefix"):
        decode(urgent.onair.removeprefix(BEL))
    drill = net.frame("dispatcher", "drill", kind=Kind.TEST, severity=Severity.INFO)
    with pytest.raises(MalformedFrame, match="prefix"):
        decode(drill.onair.removeprefix(TEST_PREFIX))
    # A BEL in front of a non-urgent alert is a control character in its text.
    info = net.frame("dispatcher", "calm", severity=Severity.INFO)
    with pytest.raises(MalformedFrame, match="control character"):
        decode(BEL + info.onair)


def test_decode_rejects_a_broadcast_frame_over_232_bytes(net: Net) -> None:
    fields = net.fields("dispatcher", "a" * 200, severity=Severity.INFO)
    onair = render(fields, bytes(64))
    with pytest.raises(MalformedFrame, match="232-byte limit"):
        decode(onair)


def test_decode_rejects_any_frame_over_512_bytes() -> None:
    with pytest.raises(MalformedFrame, match="512-byte limit"):
        decode("a" * 600 + "\n" + "0" * 100)


def test_decode_rejects_invalid_utf8_and_lone_surrogates() -> None:
    with pytest.raises(MalformedFrame, match="not UTF-8"):
        decode(b"\xff\xfe\n00000")
    with pytest.raises(MalformedFrame, match="not valid Unicode"):
        decode("\ud800\n00000")


def test_decode_rejects_a_token_that_is_not_base85() -> None:
    for token in ("hello world", "é", "\x00\x00\x00\x00\x00", "~~~~~"):
        with pytest.raises(MalformedFrame):
            decode("text\n" + token)


@settings(max_examples=400)
@given(payload=st.binary(max_size=600))
def test_random_bytes_never_raise_anything_but_malformed_frame(payload: bytes) -> None:
    with pytest.raises(MalformedFrame) as info:
        decode(payload)
    assert info.value.detail


@settings(max_examples=400)
@given(payload=st.text(max_size=300))
def test_random_strings_never_raise_anything_but_malformed_frame(payload: str) -> None:
    with pytest.raises(MalformedFrame):
        decode(payload)


@settings(max_examples=300)
@given(
    text=st.text(max_size=120),
    blob=st.binary(min_size=80, max_size=120),
)
def test_random_tokens_after_a_text_never_raise_anything_but_malformed_frame(text: str, blob: bytes) -> None:
    # Random tokens of plausible length get past base85 and reach the field checks.
    # Some do decode (a valid text over 80 random bytes can be a well-formed unsigned frame).
    with contextlib.suppress(MalformedFrame):
        decode(text + "\n" + base64.b85encode(blob).decode())


@settings(max_examples=150, deadline=None)
@given(options=alert_options(), data=st.data())
def test_random_body_bytes_under_a_valid_text_never_raise_anything_but_malformed_frame(
    net: Net, options: AlertOptions, data: st.DataObject
) -> None:
    frame = net.frame("dispatcher", **options)
    blob = bytearray(_token_blob(frame.onair))
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    try:
        decoded = decode(_with_token(frame.onair, bytes(blob)))
    except MalformedFrame:
        return
    # Whatever decodes re-encodes to itself: decoding is canonical.
    assert decoded.onair == render(decoded.fields, decoded.signature)
