"""Authority beyond the role table (issue 13, finding 6): ringing drills, ending alerts,
references to unknown alerts, and re-verifying what was accepted earlier."""

from __future__ import annotations

import dataclasses

import pytest

from relayd.core.authority import ReferenceHold
from relayd.core.model import DropReason, Kind, Severity
from relayd.core.verify import Verifier, VerifyPolicy
from tests.core.protocol_support import NOW_S, Net


@pytest.mark.parametrize("member", ["verifier", "reporter", "relay"])
def test_a_drill_that_rings_is_refused_from_anyone_but_a_dispatcher(net: Net, member: str) -> None:
    ringing = net.frame(member, "Drill: meet at the library", kind=Kind.TEST, severity=Severity.URGENT)
    assert ringing.onair.startswith("\x07")
    verdict = net.verifier().verify(ringing.onair, NOW_S)
    assert verdict.reason is DropReason.ROLE_NOT_ALLOWED
    assert "only a dispatcher key may sign a drill that rings" in verdict.detail
    quiet = net.frame(member, "Drill: radio check", kind=Kind.TEST, severity=Severity.INFO)
    assert net.verifier().verify(quiet.onair, NOW_S).ok


def test_a_dispatcher_may_ring_a_drill(net: Net) -> None:
    frame = net.frame("dispatcher", "Drill: meet at the library", kind=Kind.TEST, severity=Severity.URGENT)
    assert net.verifier().verify(frame.onair, NOW_S).ok


def _accepted(verifier: Verifier, net: Net, name: str, text: str) -> bytes:
    frame = net.frame(name, text)
    assert verifier.verify(frame.onair, NOW_S).ok
    return frame.alert_id


def test_a_verifier_may_not_all_clear_or_update_another_authors_alert(net: Net) -> None:
    verifier = net.verifier()
    ref = _accepted(verifier, net, "dispatcher", "Police at 5th & Main")
    for kind in (Kind.ALLCLEAR, Kind.UPDATE):
        frame = net.frame("verifier", "All clear", kind=kind, severity=Severity.INFO, ref=ref)
        verdict = verifier.verify(frame.onair, NOW_S)
        assert verdict.reason is DropReason.ROLE_NOT_ALLOWED, (kind, verdict)
        assert f"only its author or a dispatcher may {kind.value} alert {ref.hex()}" in verdict.detail


def test_a_verifier_may_update_and_all_clear_its_own_alert(net: Net) -> None:
    verifier = net.verifier()
    ref = _accepted(verifier, net, "verifier", "Confirmed: ICE vehicles at Lot C")
    for kind in (Kind.UPDATE, Kind.ALLCLEAR):
        frame = net.frame("verifier", "Moved on", kind=kind, severity=Severity.INFO, ref=ref)
        assert verifier.verify(frame.onair, NOW_S).ok, kind


def test_any_dispatcher_may_end_any_alert(net: Net) -> None:
    verifier = net.verifier()
    ref = _accepted(verifier, net, "dispatcher", "Police at 5th & Main")
    for kind in (Kind.UPDATE, Kind.CANCEL, Kind.ALLCLEAR):
        frame = net.frame("dispatcher2", "Over", kind=kind, severity=Severity.INFO, ref=ref)
        assert verifier.verify(frame.onair, NOW_S).ok, kind


def test_a_relay_refuses_a_reference_to_an_alert_it_does_not_know(net: Net) -> None:
    verifier = Verifier(net.bundle, dataclasses.replace(VerifyPolicy(), require_known_reference=True))
    frame = net.frame("dispatcher", "All clear", kind=Kind.ALLCLEAR, severity=Severity.INFO, ref=b"\x01" * 8)
    verdict = verifier.verify(frame.onair, NOW_S)
    assert verdict.reason is DropReason.UNKNOWN_REFERENCE
    # Nothing was committed: once the alert is known, the same frame is accepted.
    ref_frame = net.frame("dispatcher", "Police at 5th & Main")
    assert verifier.verify(ref_frame.onair, NOW_S).ok
    later = net.frame(
        "dispatcher", "All clear", kind=Kind.ALLCLEAR, severity=Severity.INFO, ref=ref_frame.alert_id
    )
    assert verifier.verify(later.onair, NOW_S).ok


def test_the_authors_of_alerts_are_relearned_after_a_restart(net: Net) -> None:
    first = net.verifier()
    alert = net.frame("dispatcher", "Police at 5th & Main")
    assert first.verify(alert.onair, NOW_S).ok
    second = Verifier(net.bundle, dataclasses.replace(VerifyPolicy(), require_known_reference=True))
    second.restore_known([alert.onair, "junk that is not a frame"])
    hijack = net.frame(
        "verifier", "All clear", kind=Kind.ALLCLEAR, severity=Severity.INFO, ref=alert.alert_id
    )
    assert second.verify(hijack.onair, NOW_S).reason is DropReason.ROLE_NOT_ALLOWED


def test_reverify_checks_the_signature_and_the_bundle_but_not_the_replay_window(net: Net) -> None:
    verifier = net.verifier()
    frame = net.frame("dispatcher2", "Observers needed")
    assert verifier.verify(frame.onair, NOW_S).ok
    assert verifier.reverify(frame.onair, NOW_S).ok  # not a duplicate nor a replay
    tampered = frame.onair.replace("Observers", "Everyone run")
    assert verifier.reverify(tampered, NOW_S).reason is DropReason.BAD_SIGNATURE
    verifier.replace_bundle(net.bundle.with_revoked(net.ids["dispatcher2"].key_id))
    assert verifier.reverify(frame.onair, NOW_S).reason is DropReason.REVOKED
    assert verifier.reverify(frame.onair, NOW_S + 3600).reason in (DropReason.REVOKED, DropReason.EXPIRED)


def test_reference_hold_is_bounded_in_count_and_time() -> None:
    hold = ReferenceHold(hold_s=10.0, max_frames=2)
    assert hold.hold(b"r1", b"frame-a", "mqtt", 0.0) is None
    assert hold.hold(b"r2", b"frame-b", "rf", 1.0) is None
    evicted = hold.hold(b"r1", b"frame-c", "mqtt", 2.0)
    assert evicted is not None
    assert evicted.payload == b"frame-a"
    assert [h.payload for h in hold.release(b"r1")] == [b"frame-c"]
    assert hold.release(b"r1") == []
    assert hold.expired(10.5) == []
    assert [h.payload for h in hold.expired(11.0)] == [b"frame-b"]
    assert len(hold) == 0
