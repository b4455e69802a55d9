"""The trust bundle: signed by the root, pinned, monotonic, consistent, and robust to junk."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relayd.core.identity import Identity, key_id_of
from relayd.core.model import Role
from relayd.core.trust import (
    TRUST_DOMAIN,
    TRUST_FORMAT,
    SignedBundle,
    TrustBundle,
    TrustBundleError,
    TrustedKey,
    new_bundle,
    parse_signed_bundle,
    should_replace,
    sign_bundle,
)
from tests.core.protocol_support import NOW_S, Net, seeded_identity


def _signed(net: Net, bundle: TrustBundle | None = None) -> SignedBundle:
    return sign_bundle(bundle or net.bundle, net.root.sign)


def _doc(signed: SignedBundle) -> dict[str, object]:
    doc: dict[str, object] = json.loads(signed.to_bytes())
    return doc


def _resign_body(net: Net, body: str, root: Identity | None = None) -> bytes:
    """A bundle file whose body is `body`, correctly signed by `root` (default: the network's)."""
    signer = root or net.root
    signature = signer.sign(TRUST_DOMAIN + body.encode("ascii"))
    return json.dumps({"format": TRUST_FORMAT, "body": body, "signature": signature.hex()}).encode()


# --- round trip ---------------------------------------------------------------------------------


def test_signed_bundle_round_trips(net: Net) -> None:
    signed = _signed(net)
    parsed = parse_signed_bundle(signed.to_bytes(), pinned_root=net.root.public_key)
    # Keys come back sorted by key id (the canonical body order); the set is the same.
    assert set(parsed.bundle.keys) == set(net.bundle.keys)
    assert parsed.bundle == dataclasses.replace(net.bundle, keys=parsed.bundle.keys)
    assert parsed.body == signed.body
    assert parsed.signature == signed.signature


@settings(max_examples=40, deadline=None)
@given(
    names=st.lists(st.text(max_size=30), min_size=0, max_size=5),
    roles=st.lists(st.sampled_from([r for r in Role if r is not Role.ROOT]), min_size=5, max_size=5),
    version=st.integers(1, 2**53),
    expiries=st.lists(st.none() | st.integers(0, 2**40), min_size=5, max_size=5),
)
def test_any_bundle_round_trips_through_its_signed_form(
    net: Net, names: list[str], roles: list[Role], version: int, expiries: list[int | None]
) -> None:
    keys = tuple(
        TrustedKey(seeded_identity(f"k{i}", roles[i]).public_key, name, roles[i], expiries[i])
        for i, name in enumerate(names)
    )
    bundle = TrustBundle(
        version, NOW_S, NOW_S + 1, net.root.public_key, keys, frozenset({b"\x01\x02\x03\x04"})
    )
    parsed = parse_signed_bundle(_signed(net, bundle).to_bytes(), pinned_root=net.root.public_key).bundle
    assert parsed.version == version
    assert {(k.public_key, k.name, k.role, k.expires_at_s) for k in parsed.keys} == {
        (k.public_key, k.name, k.role, k.expires_at_s) for k in keys
    }
    assert parsed.revoked == bundle.revoked


def test_bundle_lookups(net: Net) -> None:
    dispatcher = net.ids["dispatcher"]
    key = net.bundle.key(dispatcher.key_id)
    assert key is not None
    assert key.role is Role.DISPATCHER
    assert key.key_id == key_id_of(dispatcher.public_key)
    assert net.bundle.key(net.ids["stranger"].key_id) is None
    assert net.bundle.is_revoked(net.ids["revoked"].key_id)
    assert not net.bundle.is_revoked(dispatcher.key_id)
    assert not net.bundle.is_expired(NOW_S)
    assert net.bundle.is_expired(net.bundle.expires_at_s)


# --- tampering and the pinned root --------------------------------------------------------------


def test_any_change_to_the_body_breaks_the_signature(net: Net) -> None:
    signed = _signed(net)
    doc = _doc(signed)
    body = signed.body
    for pos in range(0, len(body), 7):
        for replacement in ("0", "9", "a", " "):
            if body[pos] == replacement:
                continue
            doc["body"] = body[:pos] + replacement + body[pos + 1 :]
            with pytest.raises(TrustBundleError):
                parse_signed_bundle(json.dumps(doc).encode(), pinned_root=net.root.public_key)


def test_raising_the_version_without_the_root_is_detected(net: Net) -> None:
    signed = _signed(net)
    doc = _doc(signed)
    doc["body"] = signed.body.replace('"version":1', '"version":99')
    assert doc["body"] != signed.body
    with pytest.raises(TrustBundleError, match="does not verify against its root key: it was altered"):
        parse_signed_bundle(json.dumps(doc).encode())


def test_tampered_signature_is_rejected(net: Net) -> None:
    signed = _signed(net)
    doc = _doc(signed)
    sig = bytearray(signed.signature)
    for pos in range(0, 64, 5):
        sig[pos] ^= 0x01
        doc["signature"] = sig.hex()
        with pytest.raises(TrustBundleError, match="altered"):
            parse_signed_bundle(json.dumps(doc).encode())
        sig[pos] ^= 0x01


def test_bundle_from_another_root_is_rejected_by_the_pinned_root(net: Net) -> None:
    other_root = seeded_identity("other root", Role.ROOT)
    foreign = new_bundle(other_root.public_key, NOW_S, 86400, net.bundle.keys)
    data = sign_bundle(foreign, other_root.sign).to_bytes()
    # It is internally consistent (fine for display) ...
    assert parse_signed_bundle(data).bundle.root_public_key == other_root.public_key
    # ... but not this network's.
    with pytest.raises(TrustBundleError, match="not by this network's root") as info:
        parse_signed_bundle(data, pinned_root=net.root.public_key)
    assert "get the bundle from your network admin" in str(info.value)


def test_bundle_naming_our_root_but_signed_by_another_key_is_rejected(net: Net) -> None:
    impostor = seeded_identity("impostor", Role.ROOT)
    data = _resign_body(net, _signed(net).body, root=impostor)
    with pytest.raises(TrustBundleError, match="altered"):
        parse_signed_bundle(data, pinned_root=net.root.public_key)


# --- monotonic versions -------------------------------------------------------------------------


@given(current=st.integers(1, 10**6), candidate=st.integers(1, 10**6))
def test_only_a_higher_version_from_the_same_root_may_replace_a_bundle(
    net: Net, current: int, candidate: int
) -> None:
    a = TrustBundle(current, NOW_S, NOW_S + 86400, net.root.public_key)
    b = TrustBundle(candidate, NOW_S, NOW_S + 86400, net.root.public_key)
    reason = should_replace(a, b)
    if candidate > current:
        assert reason is None
    else:
        assert reason == f"bundle version {candidate} is not newer than {current}"


def test_bundle_from_a_different_root_never_replaces_ours(net: Net) -> None:
    other = seeded_identity("other root", Role.ROOT)
    a = TrustBundle(1, NOW_S, NOW_S + 1, net.root.public_key)
    b = TrustBundle(1000, NOW_S, NOW_S + 1, other.public_key)
    assert should_replace(a, b) == "bundle is signed by a different root"


# --- consistency --------------------------------------------------------------------------------


def test_two_keys_with_the_same_key_id_are_refused_when_signing(net: Net) -> None:
    d = net.ids["dispatcher"]
    bundle = TrustBundle(
        1,
        NOW_S,
        NOW_S + 1,
        net.root.public_key,
        (TrustedKey(d.public_key, "a", Role.DISPATCHER), TrustedKey(d.public_key, "b", Role.REPORTER)),
    )
    with pytest.raises(TrustBundleError, match="share a key id"):
        sign_bundle(bundle, net.root.sign)


def test_two_keys_with_the_same_key_id_are_refused_when_parsing(net: Net) -> None:
    body = json.loads(_signed(net).body)
    body["keys"].append(dict(body["keys"][0], name="twin"))
    data = _resign_body(net, json.dumps(body, sort_keys=True, separators=(",", ":")))
    with pytest.raises(TrustBundleError, match="share a key id"):
        parse_signed_bundle(data, pinned_root=net.root.public_key)


def test_with_key_replaces_a_key_with_the_same_id(net: Net) -> None:
    d = net.ids["dispatcher"]
    updated = net.bundle.with_key(TrustedKey(d.public_key, "demoted", Role.REPORTER))
    assert len(updated.keys) == len(net.bundle.keys)
    key = updated.key(d.key_id)
    assert key is not None
    assert key.role is Role.REPORTER


def test_root_key_cannot_be_listed_as_a_signing_key(net: Net) -> None:
    with pytest.raises(TrustBundleError, match="root key"):
        net.bundle.with_key(TrustedKey(net.root.public_key, "root", Role.DISPATCHER))


def test_key_id_that_does_not_match_its_public_key_is_refused(net: Net) -> None:
    body = json.loads(_signed(net).body)
    body["keys"][0]["id"] = "00000000"
    data = _resign_body(net, json.dumps(body))
    with pytest.raises(TrustBundleError, match="id does not match its public key"):
        parse_signed_bundle(data, pinned_root=net.root.public_key)


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"version": 0}, "version must be 1 or more"),
        ({"version": True}, "'version' must be an integer"),
        ({"version": "2"}, "'version' must be an integer"),
        ({"expires_at": 1.5}, "'expires_at' must be an integer"),
        ({"root": "abcd"}, "root must be 32 bytes"),
        ({"root": "zz"}, "root is not hex"),
        ({"keys": {}}, "'keys' must be a list"),
        ({"revoked": ["0102"]}, "revoked key id must be 4 bytes"),
        ({"format": "relayd-trust/2"}, "format is not relayd-trust/1"),
    ],
)
def test_malformed_body_fields_are_named_in_the_error(
    net: Net, change: dict[str, object], phrase: str
) -> None:
    body = json.loads(_signed(net).body)
    body.update(change)
    with pytest.raises(TrustBundleError, match=phrase):
        parse_signed_bundle(_resign_body(net, json.dumps(body)))


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"role": "admin"}, "not a known role"),
        ({"expires_at": "never"}, "expires_at must be an integer or null"),
        ({"public_key": 5}, "'public_key' must be a string"),
        ({"name": None}, "'name' must be a string"),
    ],
)
def test_malformed_key_entries_are_named_in_the_error(
    net: Net, change: dict[str, object], phrase: str
) -> None:
    body = json.loads(_signed(net).body)
    body["keys"][0].update(change)
    with pytest.raises(TrustBundleError, match=phrase):
        parse_signed_bundle(_resign_body(net, json.dumps(body)))


def test_missing_body_field_is_named(net: Net) -> None:
    body = json.loads(_signed(net).body)
    del body["expires_at"]
    with pytest.raises(TrustBundleError, match="missing 'expires_at'"):
        parse_signed_bundle(_resign_body(net, json.dumps(body)))


# --- junk never raises anything but TrustBundleError ---------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)


def _parse_or_bundle_error(data: bytes) -> None:
    error: TrustBundleError | None = None
    try:
        parse_signed_bundle(data)
    except TrustBundleError as exc:
        error = exc
    assert error is None or str(error)


@settings(max_examples=200)
@given(data=st.binary(max_size=400))
def test_random_bytes_raise_only_trust_bundle_error(data: bytes) -> None:
    _parse_or_bundle_error(data)


@settings(max_examples=200)
@given(value=_json_values)
def test_random_json_raises_only_trust_bundle_error(value: object) -> None:
    _parse_or_bundle_error(json.dumps(value).encode())


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_valid_bundle_with_any_field_replaced_raises_only_trust_bundle_error(
    net: Net, data: st.DataObject
) -> None:
    signed = _signed(net)
    body = json.loads(signed.body)
    where = data.draw(st.sampled_from(["outer", "body", "key"]))
    if where == "outer":
        outer = _doc(signed)
        outer[data.draw(st.sampled_from(["format", "body", "signature", "extra"]))] = data.draw(_json_values)
        _parse_or_bundle_error(json.dumps(outer).encode())
        return
    target = body if where == "body" else body["keys"][data.draw(st.integers(0, len(body["keys"]) - 1))]
    field = data.draw(st.sampled_from(sorted(target)))
    if data.draw(st.booleans()):
        target[field] = data.draw(_json_values)
    else:
        del target[field]
    # Signed correctly, so parsing gets past the signature to the field checks.
    _parse_or_bundle_error(_resign_body(net, json.dumps(body, ensure_ascii=True)))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"null",
        b"[]",
        b"{}",
        b'{"format": "relayd-trust/1"}',
        b'{"format": "relayd-trust/1", "body": "{}", "signature": "00"}',
        b"[" * 100_000,
        b'{"format": 1' + b"1" * 5000 + b"}",
        b"1" * 5000,
        b"\xff\xfe",
        b" " * (256 * 1024 + 1),
    ],
)
def test_hostile_inputs_raise_only_trust_bundle_error(data: bytes) -> None:
    with pytest.raises(TrustBundleError):
        parse_signed_bundle(data)


def test_key_lookup_finds_every_listed_key_and_nothing_else(net: Net) -> None:
    for identity in net.ids.values():
        key = net.bundle.key(identity.key_id)
        if identity.name == "stranger":
            assert key is None
        else:
            assert key is not None
            assert key.public_key == identity.public_key
    updated = net.bundle.with_key(TrustedKey(net.ids["stranger"].public_key, "new", Role.RELAY))
    assert updated.key(net.ids["stranger"].key_id) is not None
    assert net.bundle.key(net.ids["stranger"].key_id) is None  # the old bundle is unchanged
