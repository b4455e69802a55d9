"""Bounded dedup: a two-generation set of alert ids."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relayd.core.dedup import DEFAULT_GENERATION_S, DedupSet


def _id(n: int) -> bytes:
    return n.to_bytes(8, "big")


def test_an_added_id_is_seen() -> None:
    dedup = DedupSet()
    assert not dedup.seen(_id(1), 0.0)
    dedup.add(_id(1), 0.0)
    assert dedup.seen(_id(1), 1.0)
    assert _id(1) in dedup
    assert _id(2) not in dedup


def test_an_id_is_remembered_for_at_least_one_generation() -> None:
    dedup = DedupSet(generation_s=100.0)
    dedup.add(_id(1), 0.0)
    assert dedup.seen(_id(1), 99.0)
    # The first rotation moves it to the previous generation; it is still remembered.
    assert dedup.seen(_id(1), 150.0)
    assert dedup.seen(_id(1), 199.0)


def test_an_id_is_forgotten_after_two_generations() -> None:
    dedup = DedupSet(generation_s=100.0)
    dedup.add(_id(1), 0.0)
    assert dedup.seen(_id(1), 100.0)  # rotated once
    assert not dedup.seen(_id(1), 200.0)  # rotated twice: gone
    assert len(dedup) == 0


def test_default_generation_is_six_hours() -> None:
    assert DEFAULT_GENERATION_S == 6 * 3600


@settings(max_examples=100)
@given(
    max_per_generation=st.integers(1, 50),
    steps=st.lists(st.tuples(st.integers(0, 10**6), st.floats(0, 50)), max_size=300),
)
def test_memory_is_bounded_by_two_generations(
    max_per_generation: int, steps: list[tuple[int, float]]
) -> None:
    dedup = DedupSet(generation_s=1000.0, max_per_generation=max_per_generation)
    now = 0.0
    for n, dt in steps:
        now += dt
        if not dedup.seen(_id(n), now):
            dedup.add(_id(n), now)
        assert len(dedup) <= 2 * max_per_generation


def test_a_flood_pushes_old_ids_out_but_recent_ones_stay() -> None:
    dedup = DedupSet(max_per_generation=10)
    for n in range(100):
        dedup.add(_id(n), float(n))
    assert len(dedup) <= 20
    assert _id(99) in dedup
    assert _id(0) not in dedup
