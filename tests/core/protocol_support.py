"""Deterministic keys, a trust bundle and alert strategies for the protocol-core tests.

Keys come from fixed seeds, so a failing hypothesis example replays exactly. The network is
immutable apart from its sequence counters; each test builds its own `Verifier`, so no test
sees another's replay, dedup or rate-limit state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TypedDict, Unpack

from hypothesis import strategies as st

from relayd.core.codec import DecodedFrame, compose, text_budget_bytes
from relayd.core.identity import Identity
from relayd.core.model import AlertFields, Kind, Role, Severity
from relayd.core.ratelimit import RateLimit
from relayd.core.trust import TrustBundle, TrustedKey, new_bundle
from relayd.core.verify import Verifier, VerifyPolicy

# 2026-11-21T13:14:08Z: an arbitrary "now" after relayd.BUILD_EPOCH_S.
NOW_S = 1_795_266_848
BUNDLE_LIFETIME_S = 365 * 86400
# An alert id to reference from update/cancel/allclear frames.
SOME_ALERT_ID = bytes.fromhex("e70f58add945c0e0")


def seeded_identity(name: str, role: Role) -> Identity:
    return Identity(name, role, hashlib.sha256(f"relayd core tests {name}".encode()).digest())


# name -> role; `expired` has a key expiry in the past, `revoked` is listed and revoked,
# `stranger` is not in the bundle at all.
MEMBERS: dict[str, Role] = {
    "dispatcher": Role.DISPATCHER,
    "dispatcher2": Role.DISPATCHER,
    "verifier": Role.VERIFIER,
    "reporter": Role.REPORTER,
    "relay": Role.RELAY,
    "expired": Role.DISPATCHER,
    "revoked": Role.DISPATCHER,
    "stranger": Role.DISPATCHER,
}
KEY_EXPIRES_AT_S = NOW_S - 3600  # the `expired` key's expiry


class FrameOptions(TypedDict, total=False):
    """`Net.fields`'s keyword arguments, for passing them on."""

    kind: Kind
    severity: Severity
    issued_at_s: int
    lifetime_s: int
    seq: int | None
    ref: bytes | None
    area: str | None
    origin_node: int | None


class AlertOptions(TypedDict):
    """What `alert_options` draws: `Net.frame`'s text and some of its keyword arguments."""

    kind: Kind
    severity: Severity
    ref: bytes | None
    area: str | None
    text: str


@dataclass
class Net:
    """A small trusted network: identities by name and the bundle listing them."""

    root: Identity
    ids: dict[str, Identity]
    bundle: TrustBundle
    _seq: dict[str, int] = field(default_factory=dict)

    def fields(
        self,
        name: str = "dispatcher",
        text: str = "Police at 5th & Main, observers needed",
        *,
        kind: Kind = Kind.ALERT,
        severity: Severity = Severity.URGENT,
        issued_at_s: int = NOW_S,
        lifetime_s: int = 1800,
        seq: int | None = None,
        ref: bytes | None = None,
        area: str | None = None,
        origin_node: int | None = None,
    ) -> AlertFields:
        if seq is None:
            self._seq[name] = seq = self._seq.get(name, 0) + 1
        if ref is None and kind.needs_reference:
            ref = SOME_ALERT_ID
        return AlertFields(
            kind=kind,
            severity=severity,
            key_id=self.ids[name].key_id,
            issued_at_s=issued_at_s,
            seq=seq,
            expires_at_s=issued_at_s + lifetime_s,
            text=text,
            ref=ref,
            area=area,
            origin_node=origin_node,
        )

    def frame(
        self, name: str = "dispatcher", text: str = "Police at 5th & Main", **kw: Unpack[FrameOptions]
    ) -> DecodedFrame:
        """A frame signed by `name` (keyword arguments as for `fields`)."""
        return compose(self.fields(name, text, **kw), self.ids[name].sign)

    def verifier(self, policy: VerifyPolicy | None = None) -> Verifier:
        return Verifier(self.bundle, policy)


def unlimited_policy() -> VerifyPolicy:
    """No practical rate limit, for tests that push many alerts from one key."""
    return VerifyPolicy(rate_limits={role: RateLimit(burst=10**9, per_s=10**9) for role in Role})


def make_net() -> Net:
    root = seeded_identity("root", Role.ROOT)
    ids = {name: seeded_identity(name, role) for name, role in MEMBERS.items()}
    keys = [
        TrustedKey(i.public_key, i.name, i.role, KEY_EXPIRES_AT_S if i.name == "expired" else None)
        for i in ids.values()
        if i.name != "stranger"
    ]
    bundle = new_bundle(root.public_key, NOW_S - 86400, BUNDLE_LIFETIME_S, keys).with_revoked(
        ids["revoked"].key_id
    )
    return Net(root, ids, bundle)


# --- strategies ---------------------------------------------------------------------------------

# What an author may type: any Unicode scalar value except control characters (newline is
# allowed). Surrogates are not text; Cc covers C0, DEL and C1.
_TEXT_CHARS = st.characters(exclude_categories=("Cs", "Cc"), include_characters="\n")

kinds = st.sampled_from(list(Kind))
severities = st.sampled_from(list(Severity))
areas = st.none() | st.from_regex(r"[0-9A-Za-z_-]{1,12}", fullmatch=True)


def cut_to_bytes(text: str, limit: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding fits in `limit` bytes."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


@st.composite
def alert_options(draw: st.DrawFn) -> AlertOptions:
    """kind, severity, ref, area and a text that fits the frame (up to the exact budget)."""
    kind = draw(kinds)
    severity = draw(severities)
    ref = draw(st.binary(min_size=8, max_size=8)) if kind.needs_reference or draw(st.booleans()) else None
    area = draw(areas)
    budget = text_budget_bytes(kind, severity, has_ref=ref is not None, area=area)
    text = draw(
        st.one_of(
            st.text(_TEXT_CHARS, min_size=1, max_size=budget),
            # Fill the frame exactly with multi-byte characters (2, 3 and 4 UTF-8 bytes).
            st.sampled_from(["é", "→", "🚨", "x"]).map(lambda c: c * budget),
        )
    )
    text = cut_to_bytes(text, budget)
    if not text.strip():
        text = "x" + text[1:] if text else "x"
    return {"kind": kind, "severity": severity, "ref": ref, "area": area, "text": text}
