"""The Verifier: who may say what, tamper evidence, time, replay, dedup and rate limits.

Every rejection is a `Verdict` with exactly one reason, checked in the documented order:
malformed, revoked, unknown_key, bad_signature, key_expired, role_not_allowed,
not_yet_valid, expired, duplicate, replay, rate_limited.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relayd.core.codec import compose, decode, render
from relayd.core.dedup import DedupSet
from relayd.core.model import DropReason, Kind, Role, Severity
from relayd.core.ratelimit import RateLimit
from relayd.core.replay import ReplayWindows
from relayd.core.verify import DEFAULT_CLOCK_SKEW_S, Verifier, VerifyPolicy
from tests.core.protocol_support import (
    KEY_EXPIRES_AT_S,
    NOW_S,
    AlertOptions,
    Net,
    alert_options,
    cut_to_bytes,
    unlimited_policy,
)

# The design brief's table (§2), written out independently of relayd.core.model.ROLE_MAY_SIGN.
BRIEF_MAY_SIGN: dict[Role, set[Kind]] = {
    Role.DISPATCHER: set(Kind),
    Role.VERIFIER: {Kind.ALERT, Kind.UPDATE, Kind.ALLCLEAR, Kind.TEST},
    Role.REPORTER: {Kind.REPORT, Kind.TEST},
    Role.RELAY: {Kind.REPORT, Kind.TEST},
}
ROLE_MEMBER = {
    Role.DISPATCHER: "dispatcher",
    Role.VERIFIER: "verifier",
    Role.REPORTER: "reporter",
    Role.RELAY: "relay",
}
# Single-byte/bit changes of a genuine frame may only ever be caught as one of these.
TAMPER_REASONS = {DropReason.MALFORMED, DropReason.BAD_SIGNATURE, DropReason.UNKNOWN_KEY}


# --- accepted -----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(options=alert_options())
def test_genuine_alert_of_any_kind_severity_and_text_is_accepted(net: Net, options: AlertOptions) -> None:
    frame = net.frame("dispatcher", **options)
    verdict = net.verifier().verify(frame.onair, NOW_S + 1)
    assert verdict.ok, verdict
    assert verdict.reason is None
    assert verdict.alert is not None
    assert verdict.alert.fields == frame.fields
    assert verdict.alert.alert_id == frame.alert_id
    assert verdict.alert.onair == frame.onair
    assert verdict.signer is not None
    assert verdict.signer.name == "dispatcher"


def test_bytes_and_str_payloads_verify_alike(net: Net) -> None:
    frame = net.frame("dispatcher", "Ñandú crossing → 5th")
    assert net.verifier().verify(frame.onair.encode("utf-8"), NOW_S).ok
    assert net.verifier().verify(frame.onair, NOW_S).ok


# --- who may say what ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(BRIEF_MAY_SIGN))
@pytest.mark.parametrize("kind", list(Kind))
def test_roles_may_sign_exactly_what_the_design_brief_allows(net: Net, role: Role, kind: Kind) -> None:
    frame = net.frame(ROLE_MEMBER[role], "x", kind=kind, severity=Severity.WARNING)
    verdict = net.verifier().verify(frame.onair, NOW_S)
    if kind in BRIEF_MAY_SIGN[role]:
        assert verdict.ok, verdict
    else:
        assert verdict.reason is DropReason.ROLE_NOT_ALLOWED
        assert f"a {role.value} key may not sign a {kind.value}" in verdict.detail


@settings(max_examples=60, deadline=None)
@given(
    member=st.sampled_from(["reporter", "relay"]),
    kind=st.sampled_from([Kind.ALERT, Kind.UPDATE, Kind.CANCEL, Kind.ALLCLEAR]),
    severity=st.sampled_from(list(Severity)),
    text=st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=120)
    .map(lambda t: cut_to_bytes(t, 120))
    .filter(str.strip),
)
def test_reporter_and_relay_keys_can_never_publish_a_broadcast_alert(
    net: Net, member: str, kind: Kind, severity: Severity, text: str
) -> None:
    frame = net.frame(member, text, kind=kind, severity=severity)
    verdict = net.verifier().verify(frame.onair, NOW_S)
    assert verdict.reason is DropReason.ROLE_NOT_ALLOWED


def test_verifier_key_cannot_cancel(net: Net) -> None:
    frame = net.frame("verifier", "wrong alert", kind=Kind.CANCEL)
    assert net.verifier().verify(frame.onair, NOW_S).reason is DropReason.ROLE_NOT_ALLOWED


def test_role_not_allowed_does_not_consume_the_sequence_number(net: Net) -> None:
    verifier = net.verifier()
    denied = net.frame("reporter", "x", kind=Kind.ALERT, seq=7)
    assert verifier.verify(denied.onair, NOW_S).reason is DropReason.ROLE_NOT_ALLOWED
    allowed = net.frame("reporter", "x", kind=Kind.REPORT, seq=7)
    assert verifier.verify(allowed.onair, NOW_S).ok


# --- keys ---------------------------------------------------------------------------------------


def test_revoked_key_alert_is_rejected(net: Net) -> None:
    frame = net.frame("revoked", "looks legit")
    verdict = net.verifier().verify(frame.onair, NOW_S)
    assert verdict.reason is DropReason.REVOKED
    assert net.ids["revoked"].key_id.hex() in verdict.detail


def test_expired_key_alert_is_rejected(net: Net) -> None:
    frame = net.frame("expired", "old key", issued_at_s=NOW_S)
    assert net.verifier().verify(frame.onair, NOW_S).reason is DropReason.KEY_EXPIRED


def test_key_is_valid_until_its_expiry(net: Net) -> None:
    frame = net.frame("expired", "still valid", issued_at_s=KEY_EXPIRES_AT_S - 10)
    assert net.verifier().verify(frame.onair, KEY_EXPIRES_AT_S - 1).ok
    assert net.verifier().verify(frame.onair, KEY_EXPIRES_AT_S).reason is DropReason.KEY_EXPIRED


def test_revocation_in_a_new_bundle_rejects_a_previously_accepted_key(net: Net) -> None:
    verifier = net.verifier()
    assert verifier.verify(net.frame("dispatcher2", "first").onair, NOW_S).ok
    verifier.replace_bundle(net.bundle.with_revoked(net.ids["dispatcher2"].key_id))
    assert verifier.verify(net.frame("dispatcher2", "second").onair, NOW_S).reason is DropReason.REVOKED


def test_alert_from_a_key_not_in_the_bundle_is_rejected_as_unknown_key(net: Net) -> None:
    frame = net.frame("stranger", "hello")
    verdict = net.verifier().verify(frame.onair, NOW_S)
    assert verdict.reason is DropReason.UNKNOWN_KEY
    assert "not in the trust bundle" in verdict.detail


def test_signature_from_another_key_spliced_in_is_rejected_as_bad_signature(net: Net) -> None:
    # The stranger signs fields that claim the dispatcher's key id.
    fields = net.fields("dispatcher", "Evacuate now")
    forged = compose(fields, net.ids["stranger"].sign)
    assert net.verifier().verify(forged.onair, NOW_S).reason is DropReason.BAD_SIGNATURE
    # A genuine dispatcher signature from another alert, spliced onto this one.
    other = net.frame("dispatcher", "something else")
    spliced = render(fields, other.signature)
    assert net.verifier().verify(spliced, NOW_S).reason is DropReason.BAD_SIGNATURE


def test_forged_signature_does_not_advance_the_replay_window(net: Net) -> None:
    verifier = net.verifier()
    forged = compose(net.fields("dispatcher", "forged", seq=10_000), net.ids["stranger"].sign)
    assert verifier.verify(forged.onair, NOW_S).reason is DropReason.BAD_SIGNATURE
    assert verifier.replay.highest(net.ids["dispatcher"].key_id) is None
    assert verifier.verify(net.frame("dispatcher", "genuine", seq=5).onair, NOW_S).ok


# --- tampering ----------------------------------------------------------------------------------


def _sample_frames(net: Net) -> list[str]:
    return [
        net.frame("dispatcher", "Raid at 5th & Main, observers needed", severity=Severity.URGENT).onair,
        net.frame(
            "dispatcher",
            "Ñandú → 🚨 line\nsecond line",
            kind=Kind.UPDATE,
            severity=Severity.WARNING,
            area="9q8yyk",
        ).onair,
        net.frame("dispatcher2", "drill", kind=Kind.TEST, severity=Severity.URGENT).onair,
        net.frame(
            "relay", "smoke on Elm", kind=Kind.REPORT, severity=Severity.INFO, origin_node=0xA1B2C3D4
        ).onair,
    ]


def test_every_single_bit_flip_of_a_frame_is_rejected(net: Net) -> None:
    for onair in _sample_frames(net):
        raw = onair.encode("utf-8")
        assert net.verifier().verify(raw, NOW_S).ok
        verifier = net.verifier()
        for pos in range(len(raw)):
            for bit in range(8):
                mutated = raw[:pos] + bytes([raw[pos] ^ (1 << bit)]) + raw[pos + 1 :]
                verdict = verifier.verify(mutated, NOW_S)
                assert verdict.reason in TAMPER_REASONS, (pos, bit, verdict)


def test_every_byte_position_set_to_other_values_is_rejected(net: Net) -> None:
    values = (0x00, ord("0"), ord("a"), ord("~"), ord("\n"), 0x07, 0x7F, 0xC3, 0xFF)
    for onair in _sample_frames(net):
        raw = onair.encode("utf-8")
        verifier = net.verifier()
        for pos in range(len(raw)):
            for value in values:
                if raw[pos] == value:
                    continue
                mutated = raw[:pos] + bytes([value]) + raw[pos + 1 :]
                verdict = verifier.verify(mutated, NOW_S)
                assert verdict.reason in TAMPER_REASONS, (pos, value, verdict)


def test_every_token_character_replaced_is_rejected(net: Net) -> None:
    onair = _sample_frames(net)[1]
    visible, _, token = onair.rpartition("\n")
    alphabet = sorted(set(base64.b85encode(bytes(range(256))).decode() + "~"))
    verifier = net.verifier()
    for pos in range(len(token)):
        for c in alphabet[::7]:
            if c == token[pos]:
                continue
            mutated = visible + "\n" + token[:pos] + c + token[pos + 1 :]
            assert verifier.verify(mutated, NOW_S).reason in TAMPER_REASONS


@settings(max_examples=200, deadline=None)
@given(options=alert_options(), data=st.data())
def test_any_change_to_a_frame_is_rejected(net: Net, options: AlertOptions, data: st.DataObject) -> None:
    raw = net.frame("dispatcher", **options).onair.encode("utf-8")
    mutated = bytearray(raw)
    op = data.draw(st.sampled_from(["set", "insert", "delete"]))
    pos = data.draw(st.integers(0, len(raw) - 1))
    if op == "set":
        mutated[pos] = data.draw(st.integers(0, 255).filter(lambda v: v != raw[pos]))
    elif op == "insert":
        mutated[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
    else:
        del mutated[pos : pos + data.draw(st.integers(1, 4))]
    verdict = net.verifier().verify(bytes(mutated), NOW_S)
    assert verdict.reason in TAMPER_REASONS, verdict


def test_changing_the_visible_text_is_rejected_as_bad_signature(net: Net) -> None:
    onair = net.frame("dispatcher", "All clear at 5th & Main", severity=Severity.INFO).onair
    tampered = onair.replace("5th", "6th", 1)
    assert net.verifier().verify(tampered, NOW_S).reason is DropReason.BAD_SIGNATURE


# --- malformed input ----------------------------------------------------------------------------


@settings(max_examples=300)
@given(payload=st.binary(max_size=600) | st.text(max_size=300))
def test_random_input_is_rejected_as_malformed_and_never_raises(net: Net, payload: bytes | str) -> None:
    verdict = net.verifier().verify(payload, NOW_S)
    assert verdict.reason is DropReason.MALFORMED
    assert verdict.detail
    assert verdict.alert is None


def test_plain_handheld_text_is_malformed_not_an_error(net: Net) -> None:
    verdict = net.verifier().verify("!r police at the park", NOW_S)
    assert verdict.reason is DropReason.MALFORMED
    assert "no token line" in verdict.detail


# --- time ---------------------------------------------------------------------------------------


def test_alert_from_the_future_beyond_the_clock_skew_is_not_yet_valid(net: Net) -> None:
    skew = int(DEFAULT_CLOCK_SKEW_S)
    ahead = net.frame("dispatcher", "ahead", issued_at_s=NOW_S + skew + 1)
    verdict = net.verifier().verify(ahead.onair, NOW_S)
    assert verdict.reason is DropReason.NOT_YET_VALID
    assert "in the future" in verdict.detail


def test_alert_from_the_future_within_the_clock_skew_is_accepted(net: Net) -> None:
    skew = int(DEFAULT_CLOCK_SKEW_S)
    assert net.verifier().verify(net.frame("dispatcher", "a", issued_at_s=NOW_S + skew).onair, NOW_S).ok
    assert net.verifier().verify(net.frame("dispatcher", "b", issued_at_s=NOW_S + 1).onair, NOW_S).ok


def test_not_yet_valid_alert_is_accepted_once_its_time_comes(net: Net) -> None:
    verifier = net.verifier()
    frame = net.frame("dispatcher", "early", issued_at_s=NOW_S + 3600)
    assert verifier.verify(frame.onair, NOW_S).reason is DropReason.NOT_YET_VALID
    assert verifier.verify(frame.onair, NOW_S + 3600).ok


def test_clock_skew_is_a_policy_setting(net: Net) -> None:
    frame = net.frame("dispatcher", "ahead", issued_at_s=NOW_S + 60)
    strict = net.verifier(VerifyPolicy(clock_skew_s=30))
    assert strict.verify(frame.onair, NOW_S).reason is DropReason.NOT_YET_VALID


def test_expired_alert_is_rejected_from_its_expiry_on(net: Net) -> None:
    frame = net.frame("dispatcher", "short", issued_at_s=NOW_S, lifetime_s=600)
    assert net.verifier().verify(frame.onair, NOW_S + 599).ok
    verdict = net.verifier().verify(frame.onair, NOW_S + 600)
    assert verdict.reason is DropReason.EXPIRED
    assert verdict.alert is not None  # the drop still names the alert, for metrics and the TUI


# --- duplicates, replay, dedup ------------------------------------------------------------------


def test_same_frame_twice_is_a_duplicate(net: Net) -> None:
    verifier = net.verifier()
    frame = net.frame("dispatcher", "once")
    assert verifier.verify(frame.onair, NOW_S).ok
    verdict = verifier.verify(frame.onair, NOW_S + 5)
    assert verdict.reason is DropReason.DUPLICATE
    assert verdict.alert is not None
    assert verdict.alert.alert_id == frame.alert_id


def test_replaying_a_seen_sequence_with_new_content_is_rejected(net: Net) -> None:
    verifier = net.verifier()
    assert verifier.verify(net.frame("dispatcher", "first", seq=42).onair, NOW_S).ok
    verdict = verifier.verify(net.frame("dispatcher", "second", seq=42).onair, NOW_S)
    assert verdict.reason is DropReason.REPLAY
    assert "sequence 42" in verdict.detail


def test_replay_is_rejected_even_after_dedup_forgets(net: Net) -> None:
    replay = ReplayWindows()
    first = Verifier(net.bundle, replay=replay)
    frame = net.frame("dispatcher", "replay me")
    assert first.verify(frame.onair, NOW_S).ok
    # A new verifier with an empty dedup set but the same replay windows.
    second = Verifier(net.bundle, replay=replay, dedup=DedupSet())
    assert second.verify(frame.onair, NOW_S + 1).reason is DropReason.REPLAY


def test_replay_is_rejected_after_a_restart_restores_the_window(net: Net) -> None:
    before = net.verifier()
    frame = net.frame("dispatcher", "before restart")
    assert before.verify(frame.onair, NOW_S).ok
    restored = ReplayWindows()
    restored.restore(before.replay.export())
    after = Verifier(net.bundle, replay=restored)
    assert after.verify(frame.onair, NOW_S + 1).reason is DropReason.REPLAY


def test_replay_window_accepts_out_of_order_within_and_rejects_left_of_it(net: Net) -> None:
    verifier = net.verifier(unlimited_policy())
    size = verifier.replay.size
    assert verifier.verify(net.frame("dispatcher", "a", seq=100).onair, NOW_S).ok
    assert verifier.verify(net.frame("dispatcher", "b", seq=100 - size + 1).onair, NOW_S).ok
    assert verifier.verify(net.frame("dispatcher", "c", seq=99).onair, NOW_S).ok
    assert verifier.verify(net.frame("dispatcher", "d", seq=99).onair, NOW_S).reason is DropReason.REPLAY
    assert (
        verifier.verify(net.frame("dispatcher", "e", seq=100 - size).onair, NOW_S).reason is DropReason.REPLAY
    )
    assert verifier.verify(net.frame("dispatcher", "f", seq=100 + size).onair, NOW_S).ok
    # The window slid to (100, 100 + size]: 100 fell out of it, 101 is inside and unseen.
    assert verifier.verify(net.frame("dispatcher", "g", seq=100).onair, NOW_S).reason is DropReason.REPLAY
    assert verifier.verify(net.frame("dispatcher", "h", seq=101).onair, NOW_S).ok


def test_replay_windows_are_per_key(net: Net) -> None:
    verifier = net.verifier()
    assert verifier.verify(net.frame("dispatcher", "a", seq=1).onair, NOW_S).ok
    assert verifier.verify(net.frame("dispatcher2", "a", seq=1).onair, NOW_S).ok


# --- rate limits --------------------------------------------------------------------------------


def test_key_over_its_rate_limit_is_rate_limited_then_refills(net: Net) -> None:
    limit = RateLimit(burst=3, per_s=0.1)
    verifier = net.verifier(VerifyPolicy(rate_limits={Role.DISPATCHER: limit}))
    frames = [net.frame("dispatcher", f"burst {i}") for i in range(5)]
    assert [verifier.verify(f.onair, NOW_S).ok for f in frames[:3]] == [True] * 3
    held = verifier.verify(frames[3].onair, NOW_S)
    assert held.reason is DropReason.RATE_LIMITED
    # A rate-limited frame used no sequence number and no dedup slot: after the refill
    # (one token per 10 s) the very same frame is accepted.
    assert verifier.verify(frames[3].onair, NOW_S + 10).ok
    assert verifier.verify(frames[4].onair, NOW_S + 10).reason is DropReason.RATE_LIMITED


def test_default_rate_limit_stops_a_stolen_reporter_key_flooding(net: Net) -> None:
    verifier = net.verifier()
    reasons = [
        verifier.verify(net.frame("reporter", f"flood {i}", kind=Kind.REPORT).onair, NOW_S).reason
        for i in range(10)
    ]
    burst = VerifyPolicy().rate_limits[Role.REPORTER].burst
    assert reasons[:burst] == [None] * burst
    assert set(reasons[burst:]) == {DropReason.RATE_LIMITED}


def test_one_key_over_its_limit_does_not_limit_another(net: Net) -> None:
    verifier = net.verifier(VerifyPolicy(rate_limits={Role.DISPATCHER: RateLimit(burst=1, per_s=0.001)}))
    assert verifier.verify(net.frame("dispatcher", "a").onair, NOW_S).ok
    assert verifier.verify(net.frame("dispatcher", "b").onair, NOW_S).reason is DropReason.RATE_LIMITED
    assert verifier.verify(net.frame("dispatcher2", "c").onair, NOW_S).ok


# --- the order of reasons -----------------------------------------------------------------------


def test_revoked_wins_over_bad_signature_and_expiry(net: Net) -> None:
    fields = net.fields("revoked", "x", issued_at_s=NOW_S - 7200, lifetime_s=60)
    onair = render(fields, bytes(64))
    assert net.verifier().verify(onair, NOW_S).reason is DropReason.REVOKED


def test_unknown_key_wins_over_bad_signature(net: Net) -> None:
    onair = render(net.fields("stranger", "x"), bytes(64))
    assert net.verifier().verify(onair, NOW_S).reason is DropReason.UNKNOWN_KEY


def test_bad_signature_wins_over_key_expiry_role_and_time(net: Net) -> None:
    fields = net.fields("expired", "x", kind=Kind.CANCEL, issued_at_s=NOW_S - 7200, lifetime_s=60)
    onair = render(fields, bytes(64))
    assert net.verifier().verify(onair, NOW_S).reason is DropReason.BAD_SIGNATURE


def test_key_expired_wins_over_role_not_allowed(net: Net) -> None:
    frame = net.frame("expired", "x", kind=Kind.TEST)
    assert net.verifier().verify(frame.onair, NOW_S).reason is DropReason.KEY_EXPIRED


def test_role_not_allowed_wins_over_expired(net: Net) -> None:
    frame = net.frame("reporter", "x", kind=Kind.ALERT, issued_at_s=NOW_S - 7200, lifetime_s=60)
    assert net.verifier().verify(frame.onair, NOW_S).reason is DropReason.ROLE_NOT_ALLOWED


def test_expired_wins_over_duplicate(net: Net) -> None:
    verifier = net.verifier()
    frame = net.frame("dispatcher", "x", lifetime_s=60)
    assert verifier.verify(frame.onair, NOW_S).ok
    assert verifier.verify(frame.onair, NOW_S + 60).reason is DropReason.EXPIRED


def test_duplicate_wins_over_replay_and_replay_over_rate_limit(net: Net) -> None:
    verifier = net.verifier(VerifyPolicy(rate_limits={Role.DISPATCHER: RateLimit(burst=1, per_s=0.0)}))
    frame = net.frame("dispatcher", "x", seq=3)
    assert verifier.verify(frame.onair, NOW_S).ok
    assert verifier.verify(frame.onair, NOW_S).reason is DropReason.DUPLICATE
    # Bucket is empty now, but a reused sequence is reported as a replay first.
    assert verifier.verify(net.frame("dispatcher", "y", seq=3).onair, NOW_S).reason is DropReason.REPLAY
    assert verifier.verify(net.frame("dispatcher", "z", seq=4).onair, NOW_S).reason is DropReason.RATE_LIMITED


def test_rejections_leave_no_state_behind(net: Net) -> None:
    verifier = net.verifier()
    frame = net.frame("dispatcher", "later", issued_at_s=NOW_S + 3600, seq=9)
    for now in (NOW_S, NOW_S + 1):
        assert verifier.verify(frame.onair, now).reason is DropReason.NOT_YET_VALID
    assert len(verifier.dedup) == 0
    assert verifier.replay.highest(net.ids["dispatcher"].key_id) is None
    decoded = decode(frame.onair)
    assert verifier.authenticate(decoded, NOW_S + 3600).ok
    assert len(verifier.dedup) == 0  # authenticate changes nothing
