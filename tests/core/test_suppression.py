"""Multi-gateway suppression: a per-alert order among relays, stand-down on hearing a copy."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from relayd.core.suppression import MAX_RANK, Suppressor, rank_of

RELAYS = ["relay-north", "relay-center", "relay-south"]


@given(st.binary(min_size=8, max_size=8))
def test_every_relay_computes_the_same_order(alert_id: bytes) -> None:
    ranks = sorted(rank_of(r, alert_id, [p for p in RELAYS if p != r]) for r in RELAYS)
    assert ranks == [0, 1, 2]


def test_first_place_rotates_between_relays() -> None:
    firsts = dict.fromkeys(RELAYS, 0)
    for n in range(300):
        alert_id = n.to_bytes(8, "big")
        first = next(r for r in RELAYS if rank_of(r, alert_id, RELAYS) == 0)
        firsts[first] += 1
    assert all(60 < c < 140 for c in firsts.values()), firsts


def test_hearing_a_copy_during_the_hold_suppresses() -> None:
    s = Suppressor("relay-north", slot_s=3.0, jitter_s=0.0, rng=random.Random(1))
    alert_id = next(
        n.to_bytes(8, "big") for n in range(100) if rank_of("relay-north", n.to_bytes(8, "big"), RELAYS) == 2
    )
    release = s.hold(alert_id, 100.0, RELAYS)
    assert release == 106.0
    assert s.due(105.9) == []
    assert s.heard_on_rf(alert_id)
    assert s.suppressed == 1
    assert s.due(200.0) == []


def test_rank_zero_releases_at_once_and_disabled_never_suppresses() -> None:
    alert_id = next(
        n.to_bytes(8, "big") for n in range(100) if rank_of("relay-north", n.to_bytes(8, "big"), RELAYS) == 0
    )
    s = Suppressor("relay-north", slot_s=3.0, jitter_s=0.0)
    s.hold(alert_id, 10.0, RELAYS)
    assert s.due(10.0) == [alert_id]
    naive = Suppressor("relay-north", slot_s=3.0, enabled=False)
    naive.hold(alert_id, 10.0, RELAYS)
    assert not naive.heard_on_rf(alert_id)
    assert naive.due(10.0) == [alert_id]


def test_no_number_of_peers_holds_an_alert_past_max_rank_slots() -> None:
    s = Suppressor("relay-north", slot_s=1.0, jitter_s=0.0)
    crowd = [f"fake-{i}" for i in range(300)]
    worst = max(s.delay_s(n.to_bytes(8, "big"), crowd) for n in range(50))
    assert worst == MAX_RANK * 1.0
