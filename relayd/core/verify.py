"""May this alert be believed? Decode, check against the trust bundle, then dedup and replay.

`Verifier.verify` returns a typed `Verdict`; a rejected or duplicate frame is a normal
result with a reason, never an exception. Checks run cheapest-first, and state (replay
window, dedup set, rate buckets) changes only for a frame that passed every check.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from relayd.core.authority import KnownAlerts, authority_problem
from relayd.core.codec import DecodedFrame, MalformedFrame, decode
from relayd.core.dedup import BoundedMap, DedupSet
from relayd.core.identity import signature_is_valid
from relayd.core.model import DropReason, Role, SignedAlert, role_may_sign
from relayd.core.ratelimit import RateLimit, TokenBuckets
from relayd.core.replay import ReplayWindows
from relayd.core.trust import TrustBundle, TrustedKey

# Pis without a real-time clock drift; five minutes is the tolerated disagreement between
# an author's clock and ours before an alert counts as "from the future".
DEFAULT_CLOCK_SKEW_S = 300.0

# Verdicts that depend only on the frame's bytes and the bundle, cached by payload digest.
_STATELESS_REJECTIONS = frozenset({DropReason.MALFORMED, DropReason.BAD_SIGNATURE, DropReason.UNKNOWN_KEY})
_REJECTED_CACHE_MAX = 50_000
# Recently verified (key, signature, signed bytes), so byte-identical copies skip Ed25519.
_VERIFIED_CACHE_MAX = 10_000

DEFAULT_RATE_LIMITS: dict[Role, RateLimit] = {
    # A dispatcher in a fast-moving incident may send a burst of updates.
    Role.DISPATCHER: RateLimit(burst=20, per_s=1 / 3),
    Role.VERIFIER: RateLimit(burst=10, per_s=1 / 6),
    Role.REPORTER: RateLimit(burst=5, per_s=1 / 30),
    # A relay wraps every handheld's reports with its own key.
    Role.RELAY: RateLimit(burst=30, per_s=1.0),
    Role.ROOT: RateLimit(burst=2, per_s=1 / 60),
}


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    clock_skew_s: float = DEFAULT_CLOCK_SKEW_S
    rate_limits: dict[Role, RateLimit] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    # A relay refuses an update, cancel or all-clear naming an alert it does not know
    # (`unknown_reference`; it holds the frame a while first). A console that joined late
    # cannot know every alert, so by default only a known reference is checked.
    require_known_reference: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """Accepted (`reason is None`) or rejected with exactly one reason."""

    reason: DropReason | None
    detail: str = ""
    alert: SignedAlert | None = None
    signer: TrustedKey | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    @classmethod
    def reject(
        cls,
        reason: DropReason,
        detail: str,
        frame: DecodedFrame | None = None,
        signer: TrustedKey | None = None,
    ) -> Verdict:
        return cls(reason, detail, frame.to_signed_alert() if frame else None, signer)


class Verifier:
    """Stateful verification for one relay (or one TUI): trust, replay, dedup, rate limits."""

    def __init__(
        self,
        bundle: TrustBundle,
        policy: VerifyPolicy | None = None,
        *,
        dedup: DedupSet | None = None,
        replay: ReplayWindows | None = None,
    ) -> None:
        self.bundle = bundle
        self.policy = policy or VerifyPolicy()
        self.dedup = dedup if dedup is not None else DedupSet()
        self.replay = replay if replay is not None else ReplayWindows()
        self._buckets = TokenBuckets()
        # Who wrote each accepted alert: only its author or a dispatcher may end it.
        self.known = KnownAlerts()
        # SHA-256 of (public key, signature, signed bytes) of frames whose signature checked
        # out. Full-length on purpose: keyed by the 8-byte alert id, a frame colliding with
        # an accepted one (about 2**32 work) and reusing its signature skipped the check.
        self._verified: BoundedMap[bytes, None] = BoundedMap(_VERIFIED_CACHE_MAX)
        self._rejected: BoundedMap[bytes, Verdict] = BoundedMap(_REJECTED_CACHE_MAX)

    def replace_bundle(self, bundle: TrustBundle) -> None:
        self.bundle = bundle
        self._rejected.clear()  # "unknown key" may be known now

    def authenticate(self, frame: DecodedFrame, now_s: float, *, signature_checked: bool = False) -> Verdict:
        """Trust checks only (signature, key, role, time); changes no state."""
        f = frame.fields
        if self.bundle.is_revoked(f.key_id):
            return Verdict.reject(DropReason.REVOKED, f"key {f.key_id.hex()} is revoked", frame)
        signer = self.bundle.key(f.key_id)
        if signer is None:
            return Verdict.reject(
                DropReason.UNKNOWN_KEY, f"key {f.key_id.hex()} is not in the trust bundle", frame
            )
        if not signature_checked and not signature_is_valid(
            signer.public_key, frame.signed_bytes, frame.signature
        ):
            return Verdict.reject(
                DropReason.BAD_SIGNATURE, f"signature does not match key {signer.name}", frame
            )
        if signer.is_expired(now_s):
            return Verdict.reject(DropReason.KEY_EXPIRED, f"key {signer.name} expired", frame, signer)
        if not role_may_sign(signer.role, f.kind):
            return Verdict.reject(
                DropReason.ROLE_NOT_ALLOWED,
                f"a {signer.role.value} key may not sign a {f.kind.value}",
                frame,
                signer,
            )
        problem = authority_problem(signer.role, f, self.known.get(f.ref) if f.ref is not None else None)
        if problem is not None:
            return Verdict.reject(DropReason.ROLE_NOT_ALLOWED, problem, frame, signer)
        skew = self.policy.clock_skew_s
        if f.issued_at_s > now_s + skew:
            return Verdict.reject(
                DropReason.NOT_YET_VALID,
                f"issued {f.issued_at_s - now_s:.0f} s in the future (skew allowance {skew:.0f} s)",
                frame,
                signer,
            )
        if now_s >= f.expires_at_s:
            return Verdict.reject(DropReason.EXPIRED, "alert has expired", frame, signer)
        return Verdict(None, "", frame.to_signed_alert(), signer)

    def _signature_digest(self, frame: DecodedFrame) -> bytes | None:
        signer = self.bundle.key(frame.fields.key_id)
        if signer is None:
            return None
        h = hashlib.sha256(signer.public_key)
        h.update(frame.signature)
        h.update(frame.signed_bytes)
        return h.digest()

    def verify_frame(self, frame: DecodedFrame, now_s: float) -> Verdict:
        alert_id = frame.alert_id
        # A byte-identical copy of a frame this verifier accepted (same key, same signed
        # bytes, same signature) skips the Ed25519 check, the dominant cost; every other
        # check still runs, so revocation and expiry win over "duplicate" as usual.
        digest = self._signature_digest(frame)
        known_good = digest is not None and digest in self._verified
        verdict = self.authenticate(frame, now_s, signature_checked=known_good)
        if not verdict.ok:
            return verdict
        f = frame.fields
        if (
            self.policy.require_known_reference
            and f.kind.needs_reference
            and f.ref is not None
            and f.ref not in self.known
        ):
            return Verdict(
                DropReason.UNKNOWN_REFERENCE,
                f"alert {f.ref.hex()} is not known here",
                verdict.alert,
                verdict.signer,
            )
        if self.dedup.seen(alert_id, now_s):
            return Verdict(DropReason.DUPLICATE, "already seen", verdict.alert, verdict.signer)
        if self.replay.is_replay(f.key_id, f.seq):
            return Verdict(
                DropReason.REPLAY, f"sequence {f.seq} already used by this key", verdict.alert, verdict.signer
            )
        signer_role = verdict.signer.role if verdict.signer else None
        limit = self.policy.rate_limits.get(signer_role) if signer_role else None
        if limit is not None and not self._buckets.allow(f.key_id, limit, now_s):
            return Verdict(
                DropReason.RATE_LIMITED, "key is over its rate limit", verdict.alert, verdict.signer
            )
        self.replay.commit(f.key_id, f.seq)
        self.dedup.add(alert_id, now_s)
        self.known.remember(alert_id, f)
        if digest is not None:
            self._verified.put(digest, None)
        return verdict

    def verify(
        self, payload: bytes | str, now_s: float, *, at: Callable[[int], float] | None = None
    ) -> Verdict:
        """Decode and verify one frame. `at` maps the frame's issue time to the time to
        verify it at (the relay's clock rule); by default, `now_s`.

        Byte-identical copies of a frame already rejected as malformed, badly signed or of
        an unknown key get the same verdict without decoding or checking the signature
        again: a flood that replays forgeries costs a hash per frame.
        """
        raw = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else bytes(payload)
        digest = hashlib.blake2b(raw, digest_size=32).digest()
        cached = self._rejected.get(digest)
        if cached is not None:
            return cached
        try:
            frame = decode(raw)
        except MalformedFrame as exc:
            verdict = Verdict(DropReason.MALFORMED, exc.detail)
        else:
            verdict = self.verify_frame(frame, at(frame.fields.issued_at_s) if at else now_s)
        if verdict.reason in _STATELESS_REJECTIONS:
            self._rejected.put(digest, verdict)
        return verdict

    def reverify(
        self, payload: bytes | str, now_s: float, *, at: Callable[[int], float] | None = None
    ) -> Verdict:
        """Check again a frame this verifier accepted earlier (a queued alert after a bundle
        change or a restart): decode, signature (always checked, never from a cache), key,
        revocation, role, authority and time. Dedup, the replay window and rate limits are
        not consulted and nothing changes: the frame already passed them once.
        """
        raw = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else bytes(payload)
        try:
            frame = decode(raw)
        except MalformedFrame as exc:
            return Verdict(DropReason.MALFORMED, exc.detail)
        return self.authenticate(frame, at(frame.fields.issued_at_s) if at else now_s)

    def restore_known(self, onairs: Iterable[str]) -> None:
        """Relearn the authors of alerts accepted before a restart (from the relay's history)."""
        for onair in onairs:
            with contextlib.suppress(MalformedFrame):
                frame = decode(onair.encode("utf-8", "surrogateescape"))
                self.known.remember(frame.alert_id, frame.fields)
