"""The alert model: kinds, severities, roles, drop reasons and the alert value itself."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    """What an alert says about the world (design brief §2)."""

    REPORT = "report"
    ALERT = "alert"
    UPDATE = "update"
    CANCEL = "cancel"
    ALLCLEAR = "allclear"
    TEST = "test"

    @property
    def needs_reference(self) -> bool:
        """Update, cancel and all-clear only make sense about an earlier alert."""
        return self in (Kind.UPDATE, Kind.CANCEL, Kind.ALLCLEAR)

    @property
    def is_broadcast(self) -> bool:
        """Reports go to dispatchers only and are never transmitted to handhelds."""
        return self is not Kind.REPORT


class Severity(enum.Enum):
    URGENT = "urgent"
    WARNING = "warning"
    ADVISORY = "advisory"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Scheduling rank: lower goes on air first."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.URGENT: 0, Severity.WARNING: 1, Severity.ADVISORY: 2, Severity.INFO: 3}


class Role(enum.Enum):
    ROOT = "root"
    DISPATCHER = "dispatcher"
    VERIFIER = "verifier"
    REPORTER = "reporter"
    RELAY = "relay"


# Who may sign what (design brief §2). Root signs bundles only; it is kept offline.
ROLE_MAY_SIGN: dict[Role, frozenset[Kind]] = {
    Role.ROOT: frozenset({Kind.TEST}),
    Role.DISPATCHER: frozenset(Kind),
    Role.VERIFIER: frozenset({Kind.ALERT, Kind.UPDATE, Kind.ALLCLEAR, Kind.TEST}),
    Role.REPORTER: frozenset({Kind.REPORT, Kind.TEST}),
    Role.RELAY: frozenset({Kind.REPORT, Kind.TEST}),
}


def role_may_sign(role: Role, kind: Kind) -> bool:
    return kind in ROLE_MAY_SIGN[role]


class DropReason(enum.Enum):
    """Why a frame was not accepted. Every drop is counted under exactly one of these."""

    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    REVOKED = "revoked"
    KEY_EXPIRED = "key_expired"
    ROLE_NOT_ALLOWED = "role_not_allowed"
    REPLAY = "replay"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    MALFORMED = "malformed"
    RATE_LIMITED = "rate_limited"
    DUPLICATE = "duplicate"
    # An update, cancel or all-clear naming an alert this relay does not know (held a
    # while first, in case that alert is on its way).
    UNKNOWN_REFERENCE = "unknown_reference"


@dataclass(frozen=True, slots=True)
class AlertFields:
    """Everything an author signs. Times are whole Unix seconds.

    `key_id` is the 4-byte id of the author's Ed25519 key; `ref` is the 8-byte id of an
    earlier alert; `area` is a coarse area (a geohash prefix or a zone name), never a
    position fine enough to locate a person. `origin_node` is the Meshtastic node number of
    the handheld whose text a relay wrapped into a report.
    """

    kind: Kind
    severity: Severity
    key_id: bytes
    issued_at_s: int
    seq: int
    expires_at_s: int
    text: str
    ref: bytes | None = None
    area: str | None = None
    origin_node: int | None = None


@dataclass(frozen=True, slots=True)
class SignedAlert:
    """An alert with its signature, its exact on-air text and its id."""

    fields: AlertFields
    signature: bytes
    onair: str
    alert_id: bytes

    @property
    def id_hex(self) -> str:
        return self.alert_id.hex()

    @property
    def key_id_hex(self) -> str:
        return self.fields.key_id.hex()

    @property
    def kind(self) -> Kind:
        return self.fields.kind

    @property
    def severity(self) -> Severity:
        return self.fields.severity

    def is_expired(self, now_s: float) -> bool:
        return now_s >= self.fields.expires_at_s
