"""The trust bundle: which keys may sign what, signed by the network's offline root key.

Wire form (a file, and the retained `<root>/trust` MQTT payload) is JSON:

    {"format": "relayd-trust/1", "body": "<canonical JSON string>", "signature": "<hex>"}

The signature covers `TRUST_DOMAIN + body` (the exact body bytes, so no JSON
re-canonicalisation is ever needed to verify). See docs/protocol.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Final

from relayd.core.identity import PUBLIC_KEY_BYTES, key_id_of, signature_is_valid
from relayd.core.model import Role

TRUST_FORMAT: Final = "relayd-trust/1"
TRUST_DOMAIN: Final = b"relayd-trust/1\x00"
MAX_BUNDLE_BYTES: Final = 256 * 1024


class TrustBundleError(ValueError):
    """A bundle that cannot be used. The message says what is wrong and what to do."""


class KeyIdCollisionError(TrustBundleError):
    """A different public key whose 4-byte key id is already listed.

    Frames name their key by this id only, so both keys could not be told apart; replacing
    the listed key silently would hand its authority to whoever found the collision
    (about 2**32 key generations, a day of one computer).
    """

    def __init__(self, listed: TrustedKey) -> None:
        super().__init__(
            f"key id {listed.key_id.hex()} is already used by a different key, {listed.name!r} "
            f"({listed.role.value}); generate a new key with `relayd keys new` and add that one"
        )
        self.listed = listed


@dataclass(frozen=True, slots=True)
class TrustedKey:
    public_key: bytes
    name: str
    role: Role
    expires_at_s: int | None = None

    @property
    def key_id(self) -> bytes:
        return key_id_of(self.public_key)

    def is_expired(self, now_s: float) -> bool:
        return self.expires_at_s is not None and now_s >= self.expires_at_s


@dataclass(frozen=True, slots=True)
class TrustBundle:
    version: int
    issued_at_s: int
    expires_at_s: int
    root_public_key: bytes
    keys: tuple[TrustedKey, ...] = ()
    revoked: frozenset[bytes] = frozenset()
    # Key id -> key, built once: every frame (forged ones included) looks its key up, and a
    # linear scan hashing every public key made each lookup cost O(keys) SHA-256 calls.
    _by_id: dict[bytes, TrustedKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id: dict[bytes, TrustedKey] = {}
        for k in self.keys:
            by_id.setdefault(k.key_id, k)  # first wins, as the scan did
        object.__setattr__(self, "_by_id", by_id)

    @property
    def root_key_id(self) -> bytes:
        return key_id_of(self.root_public_key)

    def key(self, key_id: bytes) -> TrustedKey | None:
        return self._by_id.get(key_id)

    def is_revoked(self, key_id: bytes) -> bool:
        return key_id in self.revoked

    def is_expired(self, now_s: float) -> bool:
        return now_s >= self.expires_at_s

    def with_key(self, key: TrustedKey) -> TrustBundle:
        """Add a key, or replace the entry of the same public key (new role, name or expiry).

        Raises KeyIdCollisionError for a different public key with a listed key id.
        """
        if key.public_key == self.root_public_key:
            raise TrustBundleError("the root key signs bundles only; it cannot be listed as a signing key")
        if key.key_id == self.root_key_id:
            raise KeyIdCollisionError(TrustedKey(self.root_public_key, "root", Role.ROOT))
        listed = self.key(key.key_id)
        if listed is not None and listed.public_key != key.public_key:
            raise KeyIdCollisionError(listed)
        others = tuple(k for k in self.keys if k.key_id != key.key_id)
        return replace(self, keys=(*others, key))

    def with_revoked(self, key_id: bytes) -> TrustBundle:
        return replace(self, revoked=self.revoked | {key_id})


@dataclass(frozen=True, slots=True)
class SignedBundle:
    bundle: TrustBundle
    body: str
    signature: bytes

    def to_bytes(self) -> bytes:
        doc = {"format": TRUST_FORMAT, "body": self.body, "signature": self.signature.hex()}
        return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def _body_json(bundle: TrustBundle) -> str:
    doc = {
        "format": TRUST_FORMAT,
        "version": bundle.version,
        "issued_at": bundle.issued_at_s,
        "expires_at": bundle.expires_at_s,
        "root": bundle.root_public_key.hex(),
        "keys": [
            {
                "id": k.key_id.hex(),
                "public_key": k.public_key.hex(),
                "name": k.name,
                "role": k.role.value,
                "expires_at": k.expires_at_s,
            }
            for k in sorted(bundle.keys, key=lambda k: k.key_id)
        ],
        "revoked": sorted(r.hex() for r in bundle.revoked),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sign_bundle(bundle: TrustBundle, sign: Callable[[bytes], bytes]) -> SignedBundle:
    _check_consistent(bundle)
    body = _body_json(bundle)
    return SignedBundle(bundle, body, sign(TRUST_DOMAIN + body.encode("ascii")))


def _check_consistent(bundle: TrustBundle) -> None:
    ids = [k.key_id for k in bundle.keys]
    if len(set(ids)) != len(ids):
        raise TrustBundleError("two keys in the bundle share a key id; generate a new key for one of them")
    if bundle.root_key_id in ids:
        raise TrustBundleError("the root key must not be listed as a signing key")
    if bundle.version < 1:
        raise TrustBundleError("bundle version must be 1 or more")


def _field(doc: dict[str, object], key: str, where: str) -> object:
    if key not in doc:
        raise TrustBundleError(f"{where}: missing {key!r}")
    return doc[key]


def _int_field(doc: dict[str, object], key: str, where: str) -> int:
    value = _field(doc, key, where)
    # bool is an int in Python; a version of `true` is still malformed.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TrustBundleError(f"{where}: {key!r} must be an integer")
    return value


def _str_field(doc: dict[str, object], key: str, where: str) -> str:
    value = _field(doc, key, where)
    if not isinstance(value, str):
        raise TrustBundleError(f"{where}: {key!r} must be a string")
    return value


def _list_field(doc: dict[str, object], key: str, where: str) -> list[object]:
    value = _field(doc, key, where)
    if not isinstance(value, list):
        raise TrustBundleError(f"{where}: {key!r} must be a list")
    return value


def _hex_field(value: object, n: int, what: str) -> bytes:
    if not isinstance(value, str):
        raise TrustBundleError(f"{what} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise TrustBundleError(f"{what} is not hex") from None
    if len(raw) != n:
        raise TrustBundleError(f"{what} must be {n} bytes")
    return raw


def _parse_body(body: str) -> TrustBundle:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # ValueError: also an integer over Python's digit limit
        raise TrustBundleError("bundle body is not JSON") from None
    if not isinstance(doc, dict):
        raise TrustBundleError("bundle body is not a JSON object")
    if doc.get("format") != TRUST_FORMAT:
        raise TrustBundleError(f"bundle body format is not {TRUST_FORMAT}")
    version = _int_field(doc, "version", "bundle")
    issued = _int_field(doc, "issued_at", "bundle")
    expires = _int_field(doc, "expires_at", "bundle")
    root = _hex_field(_str_field(doc, "root", "bundle"), PUBLIC_KEY_BYTES, "root")
    raw_keys = _list_field(doc, "keys", "bundle")
    raw_revoked = _list_field(doc, "revoked", "bundle")
    keys: list[TrustedKey] = []
    for i, entry in enumerate(raw_keys):
        where = f"keys[{i}]"
        if not isinstance(entry, dict):
            raise TrustBundleError(f"{where} is not an object")
        pub = _hex_field(_str_field(entry, "public_key", where), PUBLIC_KEY_BYTES, f"{where}.public_key")
        name = _str_field(entry, "name", where)
        role_s = _str_field(entry, "role", where)
        try:
            role = Role(role_s)
        except ValueError:
            raise TrustBundleError(f"{where}.role {role_s!r} is not a known role") from None
        exp = entry.get("expires_at")
        if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int)):
            raise TrustBundleError(f"{where}.expires_at must be an integer or null")
        key = TrustedKey(pub, name, role, exp)
        if entry.get("id") != key.key_id.hex():
            raise TrustBundleError(f"{where}.id does not match its public key")
        keys.append(key)
    revoked = frozenset(_hex_field(r, 4, "revoked key id") for r in raw_revoked)
    bundle = TrustBundle(version, issued, expires, root, tuple(keys), revoked)
    _check_consistent(bundle)
    return bundle


def parse_signed_bundle(data: bytes, *, pinned_root: bytes | None = None) -> SignedBundle:
    """Parse and verify a bundle. Raises TrustBundleError with the reason; never anything else.

    `pinned_root` is the network's root public key as configured on this relay; without it
    the bundle is checked against the root key it names (fine for display, not for trust).
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise TrustBundleError(f"bundle is over {MAX_BUNDLE_BYTES} bytes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # ValueError: bad UTF-8, bad JSON, an over-long integer
        raise TrustBundleError("not a trust bundle: the data is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != TRUST_FORMAT:
        raise TrustBundleError(f"not a trust bundle: expected format {TRUST_FORMAT!r}")
    body = doc.get("body")
    sig_hex = doc.get("signature")
    if not isinstance(body, str) or not isinstance(sig_hex, str):
        raise TrustBundleError("trust bundle needs a string 'body' and a hex 'signature'")
    signature = _hex_field(sig_hex, 64, "signature")
    try:
        body_bytes = body.encode("ascii")
    except UnicodeEncodeError:
        raise TrustBundleError("bundle body must be ASCII JSON") from None
    bundle = _parse_body(body)
    if pinned_root is not None and bundle.root_public_key != pinned_root:
        raise TrustBundleError(
            f"bundle is signed by root {bundle.root_key_id.hex()}, not by this network's root "
            f"{key_id_of(pinned_root).hex()}: get the bundle from your network admin"
        )
    if not signature_is_valid(bundle.root_public_key, TRUST_DOMAIN + body_bytes, signature):
        raise TrustBundleError("bundle signature does not verify against its root key: it was altered")
    return SignedBundle(bundle, body, signature)


def should_replace(current: TrustBundle, candidate: TrustBundle) -> str | None:
    """None if `candidate` may replace `current`; otherwise why not (monotonic versions)."""
    if candidate.root_public_key != current.root_public_key:
        return "bundle is signed by a different root"
    if candidate.version <= current.version:
        return f"bundle version {candidate.version} is not newer than {current.version}"
    return None


def new_bundle(
    root_public_key: bytes, issued_at_s: int, lifetime_s: int, keys: Iterable[TrustedKey] = ()
) -> TrustBundle:
    return TrustBundle(1, issued_at_s, issued_at_s + lifetime_s, root_public_key, tuple(keys))
