"""Full-length identifiers where they carry security (issue 13, finding 10).

A collision of a short id (the 8-byte alert id, the 4-byte key id) costs an attacker about
2**32 work. The tests simulate a found collision directly, since finding one takes hours.
"""

from __future__ import annotations

import time

import pytest

from relayd.core import identity as identity_mod
from relayd.core import trust as trust_mod
from relayd.core.codec import DecodedFrame, compose
from relayd.core.dedup import BoundedMap
from relayd.core.model import DropReason, Role
from relayd.core.trust import KeyIdCollisionError, TrustedKey, new_bundle
from relayd.core.verify import _REJECTED_CACHE_MAX
from tests.core.protocol_support import NOW_S, Net, seeded_identity


def _with_alert_id(frame: DecodedFrame, alert_id: bytes) -> DecodedFrame:
    object.__setattr__(frame, "alert_id", alert_id)
    return frame


def test_a_frame_colliding_with_an_accepted_alert_id_still_has_its_signature_checked(net: Net) -> None:
    """Different signed bytes under the same 8-byte alert id, reusing the accepted frame's
    signature: a cache keyed by the alert id skipped Ed25519 and let it through (as a
    duplicate here; as an accepted alert once the dedup generation rotated)."""
    verifier = net.verifier()
    genuine = net.frame("dispatcher", "Observers needed at 5th & Main")
    assert verifier.verify_frame(genuine, NOW_S).ok
    forged_fields = net.fields("dispatcher", "Raid at the park, everyone go now")
    unsigned = compose(forged_fields, net.ids["dispatcher"].sign)
    forged = _with_alert_id(
        DecodedFrame(forged_fields, genuine.signature, unsigned.signed_bytes, unsigned.onair),
        genuine.alert_id,
    )
    verdict = verifier.verify_frame(forged, NOW_S)
    assert verdict.reason is DropReason.BAD_SIGNATURE, verdict


def test_a_byte_identical_copy_still_skips_to_duplicate(net: Net) -> None:
    verifier = net.verifier()
    frame = net.frame("dispatcher", "Medic needed at the library")
    assert verifier.verify(frame.onair, NOW_S).ok
    assert verifier.verify(frame.onair, NOW_S + 1).reason is DropReason.DUPLICATE


def test_the_signature_cache_does_not_survive_a_key_swap_under_the_same_id(net: Net) -> None:
    """The cache key includes the signer's public key: a bundle that lists another key under
    the same id (impossible without a collision, but cheap to guard) re-checks Ed25519."""
    verifier = net.verifier()
    frame = net.frame("dispatcher", "Crowd gathering at Oak & Broadway")
    assert verifier.verify_frame(frame, NOW_S).ok
    other = seeded_identity("impostor", Role.DISPATCHER)
    swapped = tuple(
        TrustedKey(other.public_key, k.name, k.role) if k.name == "dispatcher" else k for k in net.bundle.keys
    )
    bundle = new_bundle(net.root.public_key, NOW_S - 86400, 365 * 86400, swapped)
    object.__setattr__(bundle, "_by_id", {**bundle._by_id, frame.fields.key_id: swapped[0]})
    verifier.replace_bundle(bundle)
    verifier.dedup = type(verifier.dedup)()  # forget the id, so only the signature decides
    assert verifier.verify_frame(frame, NOW_S).reason is DropReason.BAD_SIGNATURE


# --- trust add: a colliding key id -------------------------------------------------------------


@pytest.fixture
def collide(monkeypatch: pytest.MonkeyPatch, net: Net) -> tuple[bytes, bytes]:
    """Make the `stranger` key's id equal the `dispatcher` key's (as a found collision)."""
    real = identity_mod.key_id_of
    victim = net.ids["dispatcher"].public_key
    attacker = net.ids["stranger"].public_key

    def colliding(public_key: bytes) -> bytes:
        return real(victim) if public_key == attacker else real(public_key)

    monkeypatch.setattr(identity_mod, "key_id_of", colliding)
    monkeypatch.setattr(trust_mod, "key_id_of", colliding)
    return victim, attacker


def test_with_key_refuses_a_different_key_with_a_listed_id(net: Net, collide: tuple[bytes, bytes]) -> None:
    victim, attacker = collide
    with pytest.raises(KeyIdCollisionError, match="already used by a different key, 'dispatcher'"):
        net.bundle.with_key(TrustedKey(attacker, "stranger", Role.DISPATCHER))
    listed = net.bundle.key(net.ids["dispatcher"].key_id)
    assert listed is not None
    assert listed.public_key == victim


def test_with_key_replaces_the_same_key(net: Net) -> None:
    key_id = net.ids["reporter"].key_id
    updated = net.bundle.with_key(TrustedKey(net.ids["reporter"].public_key, "Reporter B", Role.VERIFIER))
    got = updated.key(key_id)
    assert got is not None
    assert (got.name, got.role) == ("Reporter B", Role.VERIFIER)
    assert len(updated.keys) == len(net.bundle.keys)


# --- O(1) eviction -----------------------------------------------------------------------------


def test_bounded_map_forgets_the_oldest_and_keeps_its_bound() -> None:
    m: BoundedMap[int, str] = BoundedMap(3)
    for i in range(5):
        m.put(i, str(i))
    assert len(m) == 3
    assert 0 not in m
    assert 1 not in m
    assert m.get(4) == "4"
    assert m.pop(3) == "3"
    assert m.pop(3) is None


def test_rejected_cache_eviction_stays_fast_after_many_evictions(net: Net) -> None:
    """Distinct junk after the rejected-verdict cache is full: with `del d[next(iter(d))]`
    each eviction walked the deleted slots ahead of the oldest entry (about 70,000
    evictions/s at this size on the development machine, against 1.8 million for
    OrderedDict). The verifier must keep up with a flood of junk; measured here against
    the same verifier's rate while the cache was still filling (no eviction at all)."""
    verifier = net.verifier()
    fill = [b"fill %d" % i for i in range(_REJECTED_CACHE_MAX)]
    t0 = time.perf_counter()
    for p in fill:
        verifier.verify(p, NOW_S)
    fill_rate = len(fill) / (time.perf_counter() - t0)
    junk = [b"junk %d" % i for i in range(_REJECTED_CACHE_MAX)]
    t0 = time.perf_counter()
    for p in junk:
        assert verifier.verify(p, NOW_S).reason is DropReason.MALFORMED
    evict_rate = len(junk) / (time.perf_counter() - t0)
    assert len(verifier._rejected) == _REJECTED_CACHE_MAX
    assert evict_rate > 0.5 * fill_rate, (evict_rate, fill_rate)
