"""The per-key anti-replay window (RFC 4303 §3.4.3 style), checked against a simple model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relayd.core.replay import DEFAULT_WINDOW_SIZE, ReplayWindows, WindowState

KEY = b"\x00\x00\x00\x01"
OTHER = b"\x00\x00\x00\x02"


class _Model:
    """The window's meaning, spelled out: remember every accepted number; a number is a replay
    if it was accepted before or lies `size` or more below the highest accepted."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.accepted: set[int] = set()

    def is_replay(self, seq: int) -> bool:
        if not self.accepted:
            return False
        return seq in self.accepted or seq <= max(self.accepted) - self.size

    def commit(self, seq: int) -> None:
        self.accepted.add(seq)


@settings(max_examples=300)
@given(
    size=st.sampled_from([1, 2, 8, 64]),
    seqs=st.lists(st.integers(0, 300), max_size=80),
)
def test_window_matches_the_model_for_any_sequence_of_arrivals(size: int, seqs: list[int]) -> None:
    windows = ReplayWindows(size=size)
    model = _Model(size)
    for seq in seqs:
        replay = windows.is_replay(KEY, seq)
        assert replay == model.is_replay(seq), (seq, sorted(model.accepted))
        if not replay:
            windows.commit(KEY, seq)
            model.commit(seq)
    assert windows.highest(KEY) == (max(model.accepted) if model.accepted else None)


def test_first_number_from_a_key_is_never_a_replay() -> None:
    assert not ReplayWindows().is_replay(KEY, 12345)


def test_same_number_twice_is_a_replay() -> None:
    windows = ReplayWindows()
    windows.commit(KEY, 5)
    assert windows.is_replay(KEY, 5)


def test_out_of_order_within_the_window_is_accepted_once() -> None:
    windows = ReplayWindows()
    windows.commit(KEY, 100)
    for seq in (99, 50, 100 - DEFAULT_WINDOW_SIZE + 1):
        assert not windows.is_replay(KEY, seq)
        windows.commit(KEY, seq)
        assert windows.is_replay(KEY, seq)


def test_left_of_the_window_is_a_replay_even_if_never_seen() -> None:
    windows = ReplayWindows()
    windows.commit(KEY, 100)
    assert windows.is_replay(KEY, 100 - DEFAULT_WINDOW_SIZE)
    assert windows.is_replay(KEY, 0)


def test_a_big_jump_forward_clears_the_bitmap() -> None:
    windows = ReplayWindows(size=8)
    windows.commit(KEY, 10)
    windows.commit(KEY, 1000)
    assert windows.export()[KEY] == WindowState(1000, 1)
    assert not windows.is_replay(KEY, 999)
    assert windows.is_replay(KEY, 992)


def test_windows_are_independent_per_key() -> None:
    windows = ReplayWindows()
    windows.commit(KEY, 10)
    assert not windows.is_replay(OTHER, 10)
    assert windows.highest(OTHER) is None


@settings(max_examples=100)
@given(seqs=st.lists(st.integers(0, 2**24 - 1), max_size=40), probe=st.integers(0, 2**24 - 1))
def test_export_and_restore_keep_every_decision(seqs: list[int], probe: int) -> None:
    windows = ReplayWindows()
    for seq in seqs:
        if not windows.is_replay(KEY, seq):
            windows.commit(KEY, seq)
    restored = ReplayWindows()
    restored.restore(windows.export())
    for seq in [*seqs, probe]:
        assert restored.is_replay(KEY, seq) == windows.is_replay(KEY, seq)


def test_export_is_a_snapshot_not_a_live_view() -> None:
    windows = ReplayWindows()
    windows.commit(KEY, 1)
    snapshot = windows.export()
    windows.commit(KEY, 2)
    assert snapshot[KEY].highest == 1
