"""Ed25519 identities and key ids."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from relayd.core.identity import Identity, key_id_of, signature_is_valid
from relayd.core.model import Role
from tests.core.protocol_support import seeded_identity

ALICE = seeded_identity("alice", Role.DISPATCHER)
MALLORY = seeded_identity("mallory", Role.DISPATCHER)


def test_key_id_is_the_first_four_bytes_of_sha256_of_the_public_key() -> None:
    assert ALICE.key_id == hashlib.sha256(ALICE.public_key).digest()[:4]
    assert key_id_of(ALICE.public_key) == ALICE.key_id
    assert ALICE.public.key_id == ALICE.key_id


@settings(max_examples=50, deadline=None)
@given(message=st.binary(max_size=300))
def test_signatures_verify_only_for_the_signing_key_and_message(message: bytes) -> None:
    signature = ALICE.sign(message)
    assert len(signature) == 64
    assert signature_is_valid(ALICE.public_key, message, signature)
    assert not signature_is_valid(MALLORY.public_key, message, signature)
    assert not signature_is_valid(ALICE.public_key, message + b"\x00", signature)


def test_signing_is_deterministic() -> None:
    assert ALICE.sign(b"x") == ALICE.sign(b"x")


def test_malformed_keys_and_signatures_are_invalid_not_errors() -> None:
    signature = ALICE.sign(b"x")
    assert not signature_is_valid(b"short", b"x", signature)
    assert not signature_is_valid(ALICE.public_key, b"x", signature[:63])
    assert not signature_is_valid(ALICE.public_key, b"x", b"")


def test_repr_never_shows_the_seed() -> None:
    text = repr(ALICE)
    assert ALICE.seed.hex() not in text
    assert ALICE.key_id.hex() in text


def test_generated_identities_are_distinct() -> None:
    assert Identity.generate("a", Role.RELAY).seed != Identity.generate("a", Role.RELAY).seed
