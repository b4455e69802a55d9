"""The forgery battery: attacks on the signed alert format, each with the reason it must fail.

Shared by the CI test (tests/faults/test_forgery_battery.py, a few frames) and the benchmark
(bench/bench_forgery.py, 1,000 frames). Every attack is checked against the reason a relay
must give, not only against "rejected": a forgery rejected for the wrong reason means a check
is in the wrong place. Categories:

* `mutation`: every byte position of a genuine frame replaced by each of MUTATION_VALUES.
  Expected: malformed if the result no longer decodes; otherwise the verdict for its key id
  (unknown_key, revoked, or bad_signature when the key is known).
* `splice`: the visible text of one alert with the token of another (other key, same key).
* `replay_restart`: alerts accepted by a relay, the relay restarted on the same state
  directory, then the same frames (duplicate) and new frames reusing spent sequence
  numbers (replay).
* `revoked_after_bundle`: a key revoked by a new bundle that arrives over MQTT; its alerts,
  old and new, are then rejected (revoked), and the old bundle cannot come back.
* `role_escalation`: kinds a role may not sign (role_not_allowed), and tampered or foreign
  bundles that would grant a role (refused, trust version unchanged).
* `clock`: expired alerts, alerts from the future, and fresh alerts at a relay whose clock
  runs a day fast or reads 1970 (expired / not_yet_valid).
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from relayd.core.codec import MalformedFrame, compose, decode, text_budget_bytes
from relayd.core.identity import Identity
from relayd.core.model import AlertFields, DropReason, Kind, Role, Severity
from relayd.core.ratelimit import RateLimit
from relayd.core.trust import TrustBundle, TrustedKey, sign_bundle
from relayd.core.verify import Verifier, VerifyPolicy
from relayd.testing.keys import TestNetwork

# Per byte position: the 8 single-bit flips of the original byte, and these replacements
# (NUL, newline, space, letters, the base85 alphabet's edges, DEL, a UTF-8 lead, 0xFF).
MUTATION_VALUES = (0x00, 0x0A, 0x20, 0x30, 0x41, 0x7E, 0x7F, 0xC3, 0xFF)

# Roles may sign (design brief §2); these they may not.
FORBIDDEN: tuple[tuple[str, Kind], ...] = (
    ("reporter", Kind.ALERT),
    ("reporter", Kind.UPDATE),
    ("reporter", Kind.CANCEL),
    ("reporter", Kind.ALLCLEAR),
    ("relay-north", Kind.ALERT),
    ("relay-north", Kind.CANCEL),
    ("verifier", Kind.CANCEL),
    ("verifier", Kind.REPORT),
)

_SIGNERS: tuple[tuple[str, tuple[Kind, ...]], ...] = (
    ("dispatcher", (Kind.ALERT, Kind.UPDATE, Kind.CANCEL, Kind.ALLCLEAR, Kind.TEST)),
    ("dispatcher2", (Kind.ALERT, Kind.CANCEL)),
    ("verifier", (Kind.ALERT, Kind.UPDATE, Kind.ALLCLEAR, Kind.TEST)),
    ("reporter", (Kind.REPORT, Kind.TEST)),
    ("relay-north", (Kind.REPORT,)),
)
_TEXTS = (
    "Police at 5th & Main, observers needed",
    "ICE vans (2) on Elm & 3rd -- stay inside",
    "Café Olé: medic needed, bring water ñ",
    "All clear at the library",
    "Checkpoint on Pine St bridge; avoid, use Oak",
)


@dataclass
class Outcome:
    """What one category of attacks produced."""

    tried: int = 0
    accepted: list[str] = field(default_factory=list)
    wrong_reason: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)

    def record(self, got: DropReason | None, expected: DropReason, what: str) -> None:
        self.tried += 1
        self.reasons[got.value if got else "accepted"] += 1
        if got is None:
            self.accepted.append(what)
        elif got is not expected:
            self.wrong_reason.append(f"{what}: expected {expected.value}, got {got.value}")

    def merge(self, other: Outcome) -> None:
        self.tried += other.tried
        self.accepted += other.accepted
        self.wrong_reason += other.wrong_reason
        self.reasons.update(other.reasons)


def genuine_frames(net: TestNetwork, n: int, now_s: float, seed: int = 1) -> list[str]:
    """n distinct genuine frames: every role and kind it may sign, severities, options,
    non-ASCII text, and texts filled to the one-frame limit."""
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(n):
        name, kinds = _SIGNERS[i % len(_SIGNERS)]
        kind = kinds[(i // len(_SIGNERS)) % len(kinds)]
        severity = list(Severity)[i % 4]
        if kind is Kind.TEST and severity is Severity.URGENT and not name.startswith("dispatcher"):
            severity = Severity.WARNING  # a drill that rings is a dispatcher's only
        ident = net.identities[name]
        area = "9q8yyk" if i % 3 == 0 else None
        ref = rng.randbytes(8) if kind.needs_reference else None
        origin = rng.randrange(1, 2**32) if name.startswith("relay") else None
        text = f"#{i} {_TEXTS[i % len(_TEXTS)]}"
        if i % 5 == 4:  # fill to the limit
            budget = text_budget_bytes(kind, severity, has_ref=ref is not None, area=area, origin_node=origin)
            text = (text + " " + "x" * budget).encode()[: min(budget, 400)].decode("utf-8", "ignore")
        fields = AlertFields(
            kind=kind,
            severity=severity,
            key_id=ident.key_id,
            issued_at_s=int(now_s) - 10,
            seq=net.next_seq(name),
            expires_at_s=int(now_s) + 3600,
            text=text,
            ref=ref,
            area=area,
            origin_node=origin,
        )
        out.append(compose(fields, ident.sign).onair)
    return out


def generous_policy() -> VerifyPolicy:
    """Rate limits out of the way: the battery tests verification, not the token buckets."""
    return VerifyPolicy(rate_limits=dict.fromkeys(Role, RateLimit(burst=10**9, per_s=1e9)))


def mutations(raw: bytes, values_set: Iterable[int] = MUTATION_VALUES) -> Iterator[tuple[int, int, bytes]]:
    """(position, new value, mutated frame): each byte's 8 bit flips and `values_set`."""
    extra = set(values_set)
    for i, orig in enumerate(raw):
        values = {orig ^ (1 << b) for b in range(8)} | extra
        values.discard(orig)
        for v in sorted(values):
            yield i, v, raw[:i] + bytes((v,)) + raw[i + 1 :]


def expected_for(frame: bytes, bundle: TrustBundle) -> DropReason:
    """The reason a relay must give for a frame that is not genuine."""
    try:
        decoded = decode(frame)
    except MalformedFrame:
        return DropReason.MALFORMED
    return _expected_for_key(decoded.fields.key_id, bundle)


def _expected_for_key(key_id: bytes, bundle: TrustBundle) -> DropReason:
    if bundle.is_revoked(key_id):
        return DropReason.REVOKED
    if bundle.key(key_id) is None:
        return DropReason.UNKNOWN_KEY
    return DropReason.BAD_SIGNATURE


def mutation_battery(
    frames: Iterable[str], bundle: TrustBundle, now_s: float, values_set: Iterable[int] = MUTATION_VALUES
) -> Outcome:
    """Every mutation of every frame, then the genuine frames (which must still pass)."""
    frames = list(frames)
    verifier = Verifier(bundle, generous_policy())
    out = Outcome()
    for onair in frames:
        raw = onair.encode("utf-8")
        for i, v, mutated in mutations(raw, values_set):
            verdict = verifier.verify(mutated, now_s)
            out.record(
                verdict.reason, expected_for(mutated, bundle), f"byte {i} -> {v:#04x} of {onair[:24]!r}"
            )
    for onair in frames:
        if not verifier.verify(onair, now_s).ok:
            out.wrong_reason.append(f"genuine frame rejected after the mutations: {onair[:24]!r}")
    return out


def splice_battery(frames: list[str], bundle: TrustBundle, now_s: float) -> Outcome:
    """The text of one alert with the token of another: other key, and same key."""
    verifier = Verifier(bundle, generous_policy())
    out = Outcome()
    by_key: dict[bytes, list[str]] = {}
    for f in frames:
        by_key.setdefault(decode(f).fields.key_id, []).append(f)
    for a, b in zip(frames, frames[1:] + frames[:1], strict=True):
        text_a, _, _ = a.rpartition("\n")
        _, _, token_b = b.rpartition("\n")
        spliced = f"{text_a}\n{token_b}"
        if spliced != b:
            out.record(
                verifier.verify(spliced, now_s).reason, expected_for(spliced.encode(), bundle), "splice"
            )
    for same in by_key.values():
        for a, b in itertools.pairwise(same):
            spliced = a.rpartition("\n")[0] + "\n" + b.rpartition("\n")[2]
            if spliced != b:
                got = verifier.verify(spliced, now_s).reason
                out.record(got, expected_for(spliced.encode(), bundle), "same-key splice")
    return out


# --- attacks on a relay (its real restart, trust-update and clock paths) ---------------------------


def _sign(
    net: TestNetwork,
    name: str,
    text: str,
    *,
    kind: Kind = Kind.ALERT,
    now_s: float,
    lifetime_s: int = 1800,
    seq: int | None = None,
) -> str:
    ref = b"\x01" * 8 if kind.needs_reference else None
    return net.sign(name, text, kind=kind, now_s=now_s, lifetime_s=lifetime_s, seq=seq, ref=ref).onair


def relay_battery(net: TestNetwork, config_path: Path, now_s: float | None = None) -> dict[str, Outcome]:
    """Replays across a restart, revocation by a new bundle, role escalation, skewed clocks.

    Drives `relayd.daemon.relay.Relay` objects (not started: no radio, no broker) through
    the same methods the MQTT path calls, on a real state directory.
    """
    from relayd.daemon.config import load_config  # noqa: PLC0415 - the daemon only for this part
    from relayd.daemon.relay import Relay  # noqa: PLC0415

    now = time.time() if now_s is None else now_s
    config = load_config(config_path)
    results: dict[str, Outcome] = {}

    def offer(relay: Relay, onair: str) -> DropReason | None:
        verdict = relay._verify(onair, "mqtt")
        if verdict.ok:
            relay._accept(verdict, "mqtt", queue=True)
        return verdict.reason

    # replay across a restart
    out = results["replay_restart"] = Outcome()
    first = Relay.load(config)
    accepted = [_sign(net, "dispatcher", f"Before restart {i}", now_s=now) for i in range(5)]
    for onair in accepted:
        if offer(first, onair) is not None:
            out.wrong_reason.append("a genuine alert was rejected before the restart")
    first.storage.close()
    second = Relay.load(config)
    for onair in accepted:
        out.record(offer(second, onair), DropReason.DUPLICATE, "same frame after restart")
    for onair in accepted:
        seq = decode(onair).fields.seq
        reused = _sign(net, "dispatcher", f"Replayed seq {seq}", now_s=now, seq=seq)
        out.record(offer(second, reused), DropReason.REPLAY, f"new text, spent seq {seq}")
    second.storage.close()

    # a key revoked by a bundle that arrives over MQTT
    out = results["revoked_after_bundle"] = Outcome()
    relay = Relay.load(config)
    old_bundle = net.signed_bundle
    before = _sign(net, "dispatcher2", "Signed before the revocation", now_s=now)
    if offer(relay, _sign(net, "dispatcher2", "Accepted before the revocation", now_s=now)) is not None:
        out.wrong_reason.append("dispatcher2 was rejected before its revocation")
    revoked_id = net.identities["dispatcher2"].key_id
    newer = sign_bundle(
        TrustBundle(
            net.bundle.version + 1,
            net.bundle.issued_at_s,
            net.bundle.expires_at_s,
            net.bundle.root_public_key,
            net.bundle.keys,
            net.bundle.revoked | {revoked_id},
        ),
        net.root.sign,
    )
    relay._on_trust(newer.to_bytes())  # the retained <root>/trust message handler
    if relay.verifier.bundle.version != newer.bundle.version:
        out.wrong_reason.append("the new bundle was not installed")
    out.record(offer(relay, before), DropReason.REVOKED, "signed before, arriving after")
    for i in range(3):
        after = _sign(net, "dispatcher2", f"Signed after the revocation {i}", now_s=now)
        out.record(offer(relay, after), DropReason.REVOKED, "signed after")
    relay._on_trust(old_bundle.to_bytes())  # an attacker replays the old bundle
    out.record(
        offer(relay, _sign(net, "dispatcher2", "After the old bundle came back", now_s=now)),
        DropReason.REVOKED,
        "old bundle replayed",
    )
    relay.storage.close()

    # role escalation
    out = results["role_escalation"] = Outcome()
    relay = Relay.load(config)
    for name, kind in FORBIDDEN:
        got = offer(relay, _sign(net, name, f"{name} tries a {kind.value}", kind=kind, now_s=now))
        # A report is never queued for the air, but it still must not verify as a verifier's.
        out.record(got, DropReason.ROLE_NOT_ALLOWED, f"{name} signs {kind.value}")
    reporter = net.identities["reporter"]
    doc = json.loads(net.signed_bundle.to_bytes())
    body = json.loads(doc["body"])
    for entry in body["keys"]:
        if entry["public_key"] == reporter.public_key.hex():
            entry["role"] = "dispatcher"
    body["version"] += 10
    doc["body"] = json.dumps(body, sort_keys=True, separators=(",", ":"))
    tampered = json.dumps(doc).encode()
    attacker_root = Identity.generate("attacker-root", Role.ROOT)
    foreign = sign_bundle(
        TrustBundle(
            net.bundle.version + 20,
            net.bundle.issued_at_s,
            net.bundle.expires_at_s,
            attacker_root.public_key,
            (TrustedKey(reporter.public_key, "reporter", Role.DISPATCHER),),
        ),
        attacker_root.sign,
    ).to_bytes()
    version = relay.verifier.bundle.version
    for bundle_bytes, what in ((tampered, "tampered bundle"), (foreign, "foreign-root bundle")):
        relay._on_trust(bundle_bytes)
        if relay.verifier.bundle.version != version:
            out.accepted.append(f"{what} installed")
        got = offer(relay, _sign(net, "reporter", f"Reporter after {what}", now_s=now))
        out.record(got, DropReason.ROLE_NOT_ALLOWED, f"reporter alert after {what}")
    relay.storage.close()

    # expired alerts and skewed clocks
    out = results["clock"] = Outcome()
    relay = Relay.load(config, clock=lambda: now)
    skew = config.clock_skew_s
    out.record(
        offer(relay, _sign(net, "dispatcher", "Expired a second ago", now_s=now - 61, lifetime_s=60)),
        DropReason.EXPIRED,
        "expired",
    )
    out.record(
        offer(relay, _sign(net, "dispatcher", "Long expired", now_s=now - 7200)),
        DropReason.EXPIRED,
        "long expired",
    )
    out.record(
        offer(relay, _sign(net, "dispatcher", "From the future", now_s=now + skew + 60)),
        DropReason.NOT_YET_VALID,
        "beyond the skew allowance",
    )
    relay.storage.close()
    fast = Relay.load(config, clock=lambda: now + 86400)
    out.record(
        offer(fast, _sign(net, "dispatcher", "Fresh, relay clock a day fast", now_s=now)),
        DropReason.EXPIRED,
        "relay clock a day fast",
    )
    fast.storage.close()
    epoch = Relay.load(config, clock=lambda: 0.0)  # no RTC, no NTP: the clock reads 1970
    out.record(
        offer(epoch, _sign(net, "dispatcher", "Expired yesterday, relay clock in 1970", now_s=now - 86400)),
        DropReason.EXPIRED,
        "expired alert, relay clock in 1970",
    )
    out.record(
        offer(epoch, _sign(net, "dispatcher", "Too far ahead, relay clock in 1970", now_s=now + 30 * 86400)),
        DropReason.NOT_YET_VALID,
        "a month ahead, relay clock in 1970",
    )
    epoch.storage.close()
    return results
