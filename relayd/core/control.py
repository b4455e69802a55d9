"""The signed control plane: relay status, events and report notes, sealed by the relay's key.

Relays steer each other through these messages (a peer's "transmitted" makes a relay stand
down; peers' statuses set the suppression order) and dispatchers read them in the console,
so a message is believed only when the relay it speaks for signed it. Wire form (JSON):

    {"format": "relayd-control/1", "kind": "status", "relay": "relay-north",
     "key_id": "<8 hex>", "body": "<the status/event/note JSON as a string>",
     "signature": "<128 hex>"}

The signature covers `CONTROL_DOMAIN + kind + NUL + relay + NUL + body` (the body's exact
UTF-8 bytes, so no re-canonicalisation). The signing key must be listed in the trust bundle
with role `relay` and a name equal to the relay id: the bundle entry binds the key to one
relay, and the topic (`<root>/relays/<relay-id>/...`), the envelope and the body must all
name that relay. See docs/mqtt.md for the threat model.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from relayd.core.identity import SIGNATURE_BYTES, signature_is_valid
from relayd.core.jsonform import MAX_MESSAGE_BYTES, MalformedMessage
from relayd.core.model import Role
from relayd.core.status import (
    CONTROL_FORMAT,
    RelayState,
    RelayStatus,
    checked_str,
    load_json_object,
    parse_node_id,
)
from relayd.core.topics import valid_relay_id
from relayd.core.trust import TrustBundle, TrustedKey

CONTROL_DOMAIN: Final = b"relayd-control/1\x00"
# Verified peers a relay keeps: only relay keys listed in the bundle can be peers at all, so
# this bounds memory (and the fsync'd neighbour table) even against a bundle with too many.
MAX_PEERS: Final = 256


class ControlKind(enum.Enum):
    STATUS = "status"
    EVENT = "event"
    REPORT_NOTE = "report-note"
    SYNC = "sync"  # catch-up after a gap (relayd/core/reconcile.py)


class ControlRejection(enum.Enum):
    """Why a control message was not believed; counted under exactly one of these."""

    UNSIGNED = "unsigned"  # a plain status/event (an old relay, or anyone with broker access)
    MALFORMED = "malformed"
    WRONG_KIND = "wrong_kind"  # e.g. a signed event replayed on a status topic
    WRONG_RELAY = "wrong_relay"  # topic, envelope, body or key name disagree on the relay
    UNKNOWN_KEY = "unknown_key"
    REVOKED = "revoked"
    KEY_EXPIRED = "key_expired"
    NOT_A_RELAY_KEY = "not_a_relay_key"
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale"  # older than a status already accepted from that relay (a replay)
    TABLE_FULL = "table_full"


@dataclass(frozen=True, slots=True)
class ControlVerdict:
    rejection: ControlRejection | None
    detail: str = ""
    body: bytes = b""
    signer: TrustedKey | None = None

    @property
    def ok(self) -> bool:
        return self.rejection is None


def _signed_bytes(kind: ControlKind, relay: str, body: bytes) -> bytes:
    return CONTROL_DOMAIN + kind.value.encode() + b"\x00" + relay.encode() + b"\x00" + body


def seal(kind: ControlKind, relay: str, body: bytes, key_id: bytes, sign: Callable[[bytes], bytes]) -> bytes:
    """The wire form of `body` (UTF-8 JSON) signed as `relay`'s `kind` message."""
    doc = {
        "format": CONTROL_FORMAT,
        "kind": kind.value,
        "relay": relay,
        "key_id": key_id.hex(),
        "body": body.decode("utf-8"),
        "signature": sign(_signed_bytes(kind, relay, body)).hex(),
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _reject(rejection: ControlRejection, detail: str, signer: TrustedKey | None = None) -> ControlVerdict:
    return ControlVerdict(rejection, detail, signer=signer)


def open_sealed(
    payload: bytes, *, kind: ControlKind, topic_relay: str, bundle: TrustBundle, now_s: float
) -> ControlVerdict:
    """Verify a sealed control message that arrived on `topic_relay`'s topic.

    Returns the body bytes on success; never raises. Cheap checks first: a flood of unsigned
    or unknown-key messages costs no signature check.
    """
    if len(payload) > MAX_MESSAGE_BYTES:
        return _reject(ControlRejection.MALFORMED, "message too large")
    try:
        doc = load_json_object(payload)
    except MalformedMessage as exc:
        return _reject(ControlRejection.MALFORMED, exc.detail)
    if doc.get("format") != CONTROL_FORMAT:
        return _reject(ControlRejection.UNSIGNED, "not a signed control message")
    relay, body, key_hex, sig_hex = doc.get("relay"), doc.get("body"), doc.get("key_id"), doc.get("signature")
    if not (isinstance(relay, str) and isinstance(body, str) and isinstance(key_hex, str)):
        return _reject(ControlRejection.MALFORMED, "'relay', 'body' and 'key_id' must be strings")
    if not isinstance(sig_hex, str) or len(sig_hex) != 2 * SIGNATURE_BYTES:
        return _reject(ControlRejection.MALFORMED, "'signature' must be 128 hex digits")
    try:
        key_id, signature = bytes.fromhex(key_hex), bytes.fromhex(sig_hex)
        body_bytes = checked_str(body, "body", MAX_MESSAGE_BYTES).encode("utf-8")
    except ValueError:  # MalformedMessage is a ValueError too
        return _reject(ControlRejection.MALFORMED, "bad hex or body")
    if doc.get("kind") != kind.value:
        return _reject(ControlRejection.WRONG_KIND, f"not a {kind.value} message")
    if relay != topic_relay or not valid_relay_id(relay):
        return _reject(ControlRejection.WRONG_RELAY, "the message speaks for another relay than its topic")
    if bundle.is_revoked(key_id):
        return _reject(ControlRejection.REVOKED, f"key {key_hex} is revoked")
    signer = bundle.key(key_id)
    if signer is None:
        return _reject(ControlRejection.UNKNOWN_KEY, f"key {key_hex} is not in the trust bundle")
    if signer.role is not Role.RELAY:
        return _reject(ControlRejection.NOT_A_RELAY_KEY, f"key {signer.name} is a {signer.role.value} key")
    if signer.name != relay:
        return _reject(ControlRejection.WRONG_RELAY, f"key {signer.name} is not relay {relay}'s key", signer)
    if signer.is_expired(now_s):
        return _reject(ControlRejection.KEY_EXPIRED, f"key {signer.name} expired", signer)
    if not signature_is_valid(signer.public_key, _signed_bytes(kind, relay, body_bytes), signature):
        return _reject(ControlRejection.BAD_SIGNATURE, f"signature does not match key {signer.name}", signer)
    return ControlVerdict(None, "", body_bytes, signer)


def relay_ids(bundle: TrustBundle, now_s: float) -> frozenset[str]:
    """The relay ids a bundle lets speak: names of its unrevoked, unexpired relay keys."""
    return frozenset(
        k.name
        for k in bundle.keys
        if k.role is Role.RELAY and not bundle.is_revoked(k.key_id) and not k.is_expired(now_s)
    )


# --- the peer table ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peer:
    state: RelayState
    ts_s: float  # the newest accepted online/draining status's own timestamp
    node: int | None  # its radio's node number, as its signed status says


@dataclass
class PeerTable:
    """Verified peer relays: state and radio node, from signed statuses only. Bounded.

    Replays: an online/draining status must be newer (by its signed `ts`) than every status
    accepted from that relay, so a copy of an old "online" cannot bring back a relay that went
    offline. An "offline" status (the pre-signed last will) is always taken: it only ever
    makes a relay transmit sooner.
    """

    max_peers: int = MAX_PEERS
    _peers: dict[str, Peer] = field(default_factory=dict)

    def update(self, status: RelayStatus) -> ControlRejection | None:
        """Apply a verified status; None if taken, or why not."""
        known = self._peers.get(status.relay)
        if known is None and len(self._peers) >= self.max_peers:
            return ControlRejection.TABLE_FULL
        node = parse_node_id(status.radio_node)
        if status.state is RelayState.OFFLINE:
            # The will carries no radio details: keep what the relay last said.
            ts = known.ts_s if known is not None else 0.0
            self._peers[status.relay] = Peer(RelayState.OFFLINE, ts, known.node if known else None)
            return None
        if known is not None and status.ts_s <= known.ts_s:
            return ControlRejection.STALE
        self._peers[status.relay] = Peer(status.state, status.ts_s, node)
        return None

    def remove(self, relay: str) -> None:
        self._peers.pop(relay, None)

    def retain(self, relays: frozenset[str]) -> list[str]:
        """Forget peers not in `relays` (their key was revoked or removed); returns them."""
        gone = [r for r in self._peers if r not in relays]
        for relay in gone:
            del self._peers[relay]
        return gone

    def get(self, relay: str) -> Peer | None:
        return self._peers.get(relay)

    def items(self) -> Iterator[tuple[str, RelayState]]:
        """(relay, state) for every verified peer, like the dict it replaces."""
        for relay, peer in self._peers.items():
            yield relay, peer.state

    def __contains__(self, relay: object) -> bool:
        return relay in self._peers

    def __len__(self) -> int:
        return len(self._peers)
