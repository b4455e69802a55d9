"""The signed control plane (relayd/core/control.py): who may speak for a relay."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relayd.core.control import (
    MAX_PEERS,
    ControlKind,
    ControlRejection,
    PeerTable,
    open_sealed,
    relay_ids,
    seal,
)
from relayd.core.identity import Identity
from relayd.core.model import Role
from relayd.core.status import (
    EventKind,
    RelayEvent,
    RelayState,
    RelayStatus,
    encode_event,
    encode_status,
    offline_status,
    parse_status,
)
from relayd.core.trust import TrustedKey, new_bundle

NOW_S = 1_795_266_848.0
ROOT = Identity.generate("root", Role.ROOT)
NORTH = Identity.generate("relay-north", Role.RELAY)
SOUTH = Identity.generate("relay-south", Role.RELAY)
DISPATCHER = Identity.generate("relay-east", Role.DISPATCHER)  # named like a relay, on purpose
REVOKED = Identity.generate("relay-west", Role.RELAY)
BUNDLE = new_bundle(
    ROOT.public_key,
    int(NOW_S) - 60,
    86400,
    [TrustedKey(i.public_key, i.name, i.role) for i in (NORTH, SOUTH, DISPATCHER, REVOKED)],
).with_revoked(REVOKED.key_id)


def _status(relay: str = "relay-north", ts_s: float = NOW_S, state: RelayState = RelayState.ONLINE) -> bytes:
    return encode_status(RelayStatus(relay=relay, state=state, ts_s=ts_s, radio_node="!a1b2c3d4"))


def _seal(
    ident: Identity, body: bytes, kind: ControlKind = ControlKind.STATUS, relay: str | None = None
) -> bytes:
    return seal(kind, relay or ident.name, body, ident.key_id, ident.sign)


def _open(
    payload: bytes, kind: ControlKind = ControlKind.STATUS, topic_relay: str = "relay-north"
) -> ControlRejection | None:
    return open_sealed(payload, kind=kind, topic_relay=topic_relay, bundle=BUNDLE, now_s=NOW_S).rejection


def test_a_relays_own_signed_status_is_believed_and_unwraps_for_display() -> None:
    payload = _seal(NORTH, _status())
    verdict = open_sealed(
        payload, kind=ControlKind.STATUS, topic_relay="relay-north", bundle=BUNDLE, now_s=NOW_S
    )
    assert verdict.ok
    assert parse_status(verdict.body).relay == "relay-north"
    assert parse_status(payload).relay == "relay-north"  # display tools read it without the key


@pytest.mark.parametrize(
    ("payload", "kind", "topic_relay", "expected"),
    [
        (_status(), ControlKind.STATUS, "relay-north", ControlRejection.UNSIGNED),
        (
            _seal(SOUTH, _status("relay-south")),
            ControlKind.STATUS,
            "relay-north",
            ControlRejection.WRONG_RELAY,
        ),
        # relay-south's key signing a message that claims to be relay-north's
        (
            _seal(SOUTH, _status(), relay="relay-north"),
            ControlKind.STATUS,
            "relay-north",
            ControlRejection.WRONG_RELAY,
        ),
        (
            _seal(DISPATCHER, _status("relay-east")),
            ControlKind.STATUS,
            "relay-east",
            ControlRejection.NOT_A_RELAY_KEY,
        ),
        (_seal(REVOKED, _status("relay-west")), ControlKind.STATUS, "relay-west", ControlRejection.REVOKED),
        (
            _seal(Identity.generate("relay-north", Role.RELAY), _status()),
            ControlKind.STATUS,
            "relay-north",
            ControlRejection.UNKNOWN_KEY,
        ),
        (_seal(NORTH, _status()), ControlKind.EVENT, "relay-north", ControlRejection.WRONG_KIND),
        (
            _seal(NORTH, _status()).replace(b'\\"online\\"', b'\\"offline\\"'),
            ControlKind.STATUS,
            "relay-north",
            ControlRejection.BAD_SIGNATURE,
        ),
        (b"\xff", ControlKind.STATUS, "relay-north", ControlRejection.MALFORMED),
    ],
    # Named, not derived from the payloads: those carry fresh keys, and parallel workers must
    # collect the same test ids.
    ids=[
        "unsigned",
        "another-relays-status",
        "claims-another-relay",
        "dispatcher-key",
        "revoked-key",
        "unknown-key",
        "wrong-kind",
        "tampered",
        "malformed",
    ],
)
def test_anything_but_the_relays_own_signature_is_rejected(
    payload: bytes, kind: ControlKind, topic_relay: str, expected: ControlRejection
) -> None:
    assert _open(payload, kind, topic_relay) is expected


def test_an_expired_relay_key_is_not_believed() -> None:
    key = TrustedKey(NORTH.public_key, "relay-north", Role.RELAY, expires_at_s=int(NOW_S) - 1)
    bundle = dataclasses.replace(BUNDLE, keys=(key,))
    verdict = open_sealed(
        _seal(NORTH, _status()),
        kind=ControlKind.STATUS,
        topic_relay="relay-north",
        bundle=bundle,
        now_s=NOW_S,
    )
    assert verdict.rejection is ControlRejection.KEY_EXPIRED


def test_a_signed_event_opens_only_as_an_event_of_its_relay() -> None:
    body = encode_event(RelayEvent("relay-north", EventKind.TRANSMITTED, "e70f58add945c0e0", NOW_S, "rf"))
    payload = _seal(NORTH, body, ControlKind.EVENT)
    assert _open(payload, ControlKind.EVENT) is None
    assert _open(payload, ControlKind.EVENT, "relay-south") is ControlRejection.WRONG_RELAY
    assert _open(payload, ControlKind.STATUS) is ControlRejection.WRONG_KIND


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_open_sealed_never_raises_and_never_believes_noise(noise: bytes) -> None:
    assert _open(noise) is not None


def test_peer_table_refuses_replayed_online_after_offline_and_stays_bounded() -> None:
    table = PeerTable(max_peers=3)
    online = parse_status(_status(ts_s=NOW_S))
    assert table.update(online) is None
    assert table.update(parse_status(_status(ts_s=NOW_S + 5))) is None
    assert table.update(dataclasses.replace(offline_status("relay-north"), ts_s=NOW_S - 100)) is None
    assert dict(table.items()) == {"relay-north": RelayState.OFFLINE}
    # An old "online" copy (a replay) cannot bring it back; a newer one can.
    assert table.update(online) is ControlRejection.STALE
    assert table.update(parse_status(_status(ts_s=NOW_S + 6))) is None
    for i in range(5):
        table.update(parse_status(_status(f"relay-{i}")))
    assert len(table) == 3
    assert table.update(parse_status(_status("relay-new"))) is ControlRejection.TABLE_FULL
    assert PeerTable().max_peers == MAX_PEERS


def test_a_revoked_relay_leaves_the_peer_table_with_the_new_bundle() -> None:
    table = PeerTable()
    for relay in ("relay-north", "relay-south"):
        table.update(parse_status(_status(relay)))
    newer = BUNDLE.with_revoked(SOUTH.key_id)
    assert relay_ids(newer, NOW_S) == {"relay-north"}
    assert table.retain(relay_ids(newer, NOW_S)) == ["relay-south"]
    assert dict(table.items()) == {"relay-north": RelayState.ONLINE}
