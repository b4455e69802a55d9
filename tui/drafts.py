"""Composing alerts: the draft an operator edits, its byte budget, and signing it.

Pure except for `Signer.sign`, which reserves a sequence number on disk (keystore).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relayd.core.codec import (
    ALERT_ID_BYTES,
    ComposeError,
    compose,
    display_prefix,
    text_budget_bytes,
    validate_fields,
)
from relayd.core.identity import Identity
from relayd.core.model import AlertFields, Kind, Role, Severity, SignedAlert, role_may_sign
from relayd.core.timefmt import parse_duration_s
from relayd.errors import KeyFileError
from relayd.keystore import load_private_key, next_sequence

# Roles that may issue broadcast alerts from the console (design brief §2).
COMPOSER_ROLES = (Role.DISPATCHER, Role.VERIFIER)
DEFAULT_LIFETIME = "30m"


class SignerRefused(KeyFileError):  # noqa: N818 - reads as the outcome: "signer refused"
    """A key that loads fine but may not be used to compose alerts."""


@dataclass(frozen=True, slots=True)
class Draft:
    kind: Kind = Kind.ALERT
    severity: Severity = Severity.URGENT
    lifetime: str = DEFAULT_LIFETIME
    area: str = ""
    ref: str = ""  # alert id hex
    text: str = ""

    @property
    def area_or_none(self) -> str | None:
        return self.area.strip() or None

    @property
    def ref_bytes(self) -> bytes | None:
        if not self.ref:
            return None
        try:
            raw = bytes.fromhex(self.ref)
        except ValueError:
            return None
        return raw if len(raw) == ALERT_ID_BYTES else None

    @property
    def budget_bytes(self) -> int:
        return text_budget_bytes(self.kind, self.severity, has_ref=bool(self.ref), area=self.area_or_none)

    @property
    def text_bytes(self) -> int:
        return len(self.text.encode("utf-8"))

    @property
    def bytes_left(self) -> int:
        return self.budget_bytes - self.text_bytes

    def preview(self) -> str:
        """What a handheld shows: the prefix (BEL rings, shown as ␇) and the text.

        The token line that follows is also displayed by stock firmware; it is summarised.
        """
        prefix = display_prefix(self.kind, self.severity).replace("\x07", "\u2407")
        return prefix + self.text

    def lifetime_s(self) -> int:
        return parse_duration_s(self.lifetime)

    def fields(self, key_id: bytes, issued_at_s: int, seq: int) -> AlertFields:
        return AlertFields(
            kind=self.kind,
            severity=self.severity,
            key_id=key_id,
            issued_at_s=issued_at_s,
            seq=seq,
            expires_at_s=issued_at_s + self.lifetime_s(),
            text=self.text,
            ref=self.ref_bytes,
            area=self.area_or_none,
        )


def problems(draft: Draft, role: Role | None) -> list[str]:
    """Everything that blocks sending this draft, each with what to change. Empty: ready."""
    out: list[str] = []
    if role is None:
        out.append("no signing key loaded: restart with --key DISPATCHER.key")
    elif not role_may_sign(role, draft.kind):
        out.append(f"a {role.value} key may not sign a {draft.kind.value}")
    if draft.bytes_left < 0:
        out.append(f"text is {-draft.bytes_left} bytes too long for one LoRa frame: cut {-draft.bytes_left}")
    if draft.ref and draft.ref_bytes is None:
        out.append("reference must be an alert id of 16 hex digits")
    try:
        lifetime = draft.lifetime_s()
    except ValueError:
        out.append(f"expiry {draft.lifetime!r} is not a duration: use 30m, 2h or 1d")
        lifetime = 0
    if out:
        return out
    if lifetime <= 0:
        return ["expiry must be longer than zero"]
    try:
        validate_fields(draft.fields(b"\0" * 4, 0, 1))
    except ComposeError as exc:
        out.append(str(exc))
    return out


@dataclass(frozen=True, slots=True)
class Signer:
    """A loaded private key that may compose alerts."""

    identity: Identity
    key_path: Path

    @property
    def role(self) -> Role:
        return self.identity.role

    @property
    def name(self) -> str:
        return self.identity.name

    def sign(self, draft: Draft, now_s: float) -> SignedAlert:
        """Validate, reserve a sequence number and sign. Raises ComposeError."""
        found = problems(draft, self.role)
        if found:
            raise ComposeError("; ".join(found))
        seq = next_sequence(self.key_path)
        fields = draft.fields(self.identity.key_id, int(now_s), seq)
        return compose(fields, self.identity.sign).to_signed_alert()


def load_signer(path: Path) -> Signer:
    """Load a private key for composing. Raises KeyFileError (incl. SignerRefused) with the fix."""
    identity = load_private_key(path)
    if identity.role not in COMPOSER_ROLES:
        raise SignerRefused(
            f"{path} is a {identity.role.value} key ({identity.name}); composing alerts needs a "
            "dispatcher or verifier key. Run without --key to watch only."
        )
    return Signer(identity, path)
