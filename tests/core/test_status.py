"""Relay status and event messages: hostile payloads are MalformedMessage, never a crash."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relayd.core.jsonform import MalformedMessage
from relayd.core.status import (
    EventKind,
    RelayEvent,
    RelayState,
    RelayStatus,
    encode_event,
    encode_status,
    parse_event,
    parse_status,
)
from relayd.daemon.relay import REFUSED_BY_RADIO

HOSTILE = [
    b'{"v": 1, "relay": ' + b"1" * 5000 + b"}",  # an integer over Python's digit limit
    b"[" * 5000,
    b"\xff",
    b"null",
]


@pytest.mark.parametrize("payload", HOSTILE)
@pytest.mark.parametrize("parse", [parse_status, parse_event])
def test_hostile_payloads_are_malformed_messages(parse: Callable[[bytes], object], payload: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse(payload)


@settings(max_examples=200)
@given(payload=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: ('{"v":1,' + t).encode()))
def test_random_payloads_raise_only_malformed_message(payload: bytes) -> None:
    for parse in (parse_status, parse_event):
        try:
            parse(payload)
        except MalformedMessage:
            continue


def test_every_event_the_relay_sends_parses() -> None:
    for kind in EventKind:
        for reason in (None, "expired", REFUSED_BY_RADIO):
            event = RelayEvent("relay-north", kind, "e70f58add945c0e0", 1.0, "radio:main", reason)
            assert parse_event(encode_event(event)) == event


def test_a_status_with_every_counter_the_relay_keeps_parses() -> None:
    drops = {"bad_signature": 3, REFUSED_BY_RADIO: 1}
    status = RelayStatus("relay-north", RelayState.ONLINE, 1.0, drops=drops, malformed={"status": 1})
    assert parse_status(encode_status(status)) == status


def test_rf_heard_round_trips_and_is_optional() -> None:
    from relayd.core.status import RelayState, RelayStatus, encode_status  # noqa: PLC0415

    status = RelayStatus(relay="relay-north", state=RelayState.ONLINE, rf_heard=("!00000020", "!00000030"))
    assert parse_status(encode_status(status)).rf_heard == ("!00000020", "!00000030")
    older = b'{"v":1,"relay":"relay-north","state":"online"}'
    assert parse_status(older).rf_heard == ()
    with pytest.raises(MalformedMessage):
        parse_status(b'{"v":1,"relay":"relay-north","state":"online","rf_heard":[32]}')
