"""A small trusted network (root, dispatcher, verifier, reporter, relay keys + bundle) in a
temporary directory, for tests, benchmarks and the demo."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from relayd.core.codec import compose
from relayd.core.control import ControlKind, seal
from relayd.core.identity import Identity
from relayd.core.model import AlertFields, Kind, Role, Severity, SignedAlert
from relayd.core.trust import SignedBundle, TrustBundle, TrustedKey, new_bundle, sign_bundle
from relayd.keystore import write_private_key, write_public_key
from relayd.trustfile import save_bundle

BUNDLE_LIFETIME_S = 365 * 86400


@dataclass
class TestNetwork:
    """Keys on disk (0600) and a signed bundle, plus helpers to sign alerts."""

    __test__ = False  # not a pytest test class

    directory: Path
    root: Identity
    identities: dict[str, Identity]
    bundle: TrustBundle
    signed_bundle: SignedBundle
    _seq: dict[str, int]

    @property
    def bundle_path(self) -> Path:
        return self.directory / "trust.json"

    def key_path(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def pub_path(self, name: str) -> Path:
        return self.directory / f"{name}.pub"

    def next_seq(self, name: str) -> int:
        self._seq[name] = self._seq.get(name, 0) + 1
        return self._seq[name]

    def sign(
        self,
        name: str,
        text: str,
        *,
        kind: Kind = Kind.ALERT,
        severity: Severity = Severity.URGENT,
        lifetime_s: int = 1800,
        now_s: float | None = None,
        ref: bytes | None = None,
        area: str | None = None,
        seq: int | None = None,
        origin_node: int | None = None,
    ) -> SignedAlert:
        identity = self.identities[name] if name != "root" else self.root
        issued = int(time.time() if now_s is None else now_s)
        fields = AlertFields(
            kind=kind,
            severity=severity,
            key_id=identity.key_id,
            issued_at_s=issued,
            seq=self.next_seq(name) if seq is None else seq,
            expires_at_s=issued + lifetime_s,
            text=text,
            ref=ref,
            area=area,
            origin_node=origin_node,
        )
        return compose(fields, identity.sign).to_signed_alert()

    def seal(self, name: str, kind: ControlKind, body: bytes) -> bytes:
        """`body` (a status or event) signed by relay `name`'s key, as that relay sends it."""
        identity = self.identities[name]
        return seal(kind, name, body, identity.key_id, identity.sign)

    def add_member(self, name: str, role: Role) -> Identity:
        """Generate a key for `name`, write it, and list it in a re-signed, newer bundle."""
        ident = Identity.generate(name, role)
        write_private_key(ident, self.key_path(name))
        write_public_key(ident.public, self.pub_path(name))
        self.identities[name] = ident
        bumped = TrustBundle(
            self.bundle.version + 1,
            self.bundle.issued_at_s,
            self.bundle.expires_at_s,
            self.bundle.root_public_key,
            self.bundle.keys,
            self.bundle.revoked,
        )
        self.resign(bumped.with_key(TrustedKey(ident.public_key, name, role)))
        return ident

    def resign(self, bundle: TrustBundle) -> SignedBundle:
        signed = sign_bundle(bundle, self.root.sign)
        save_bundle(signed, self.bundle_path)
        self.bundle = bundle
        self.signed_bundle = signed
        return signed


DEFAULT_MEMBERS: dict[str, Role] = {
    "dispatcher": Role.DISPATCHER,
    "dispatcher2": Role.DISPATCHER,
    "verifier": Role.VERIFIER,
    "reporter": Role.REPORTER,
    "relay-north": Role.RELAY,
    "relay-center": Role.RELAY,
    "relay-south": Role.RELAY,
}


def make_network(
    directory: Path,
    members: dict[str, Role] | None = None,
    *,
    now_s: float | None = None,
    rng: Callable[[str], Identity] | None = None,
) -> TestNetwork:
    """Generate keys for `members` (name -> role), write them, and sign a bundle listing them."""
    directory.mkdir(parents=True, exist_ok=True)
    make = rng or (lambda name: Identity.generate(name, Role.ROOT))
    root = make("root")
    root = Identity("root", Role.ROOT, root.seed)
    write_private_key(root, directory / "root.key")
    write_public_key(root.public, directory / "root.pub")
    identities: dict[str, Identity] = {}
    for name, role in (members or DEFAULT_MEMBERS).items():
        ident = Identity(name, role, make(name).seed)
        identities[name] = ident
        write_private_key(ident, directory / f"{name}.key")
        write_public_key(ident.public, directory / f"{name}.pub")
    issued = int(time.time() if now_s is None else now_s) - 60
    bundle = new_bundle(
        root.public_key,
        issued,
        BUNDLE_LIFETIME_S,
        [TrustedKey(i.public_key, i.name, i.role) for i in identities.values()],
    )
    signed = sign_bundle(bundle, root.sign)
    save_bundle(signed, directory / "trust.json")
    return TestNetwork(directory, root, identities, bundle, signed, {})
