"""Pacing to the air: the transmitters a radio heard, and how long one flood takes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relayd.core.airtime import LONG_FAST, mesh_frame_time_on_air_s
from relayd.core.earshot import MAX_REPEATERS, Earshot, flood_s, transmitter_byte

FRAME_S = mesh_frame_time_on_air_s(180, LONG_FAST)


def test_a_copy_names_its_transmitter_the_originator_if_direct_else_the_repeater() -> None:
    assert transmitter_byte(0x1234ABCD, 0, hop_start=3, hop_limit=3) == 0xCD  # straight from it
    assert transmitter_byte(0x1234ABCD, 0x42, hop_start=3, hop_limit=2) == 0x42  # repeated by ..42
    assert transmitter_byte(0x1234ABCD, 0, hop_start=3, hop_limit=2) is None  # repeater not named
    assert transmitter_byte(0x1234ABCD, 0, hop_start=0, hop_limit=3) is None  # pre-2.3 firmware


def test_a_lone_relay_waits_for_its_own_frame_and_a_crowd_for_at_most_the_cap() -> None:
    alone = flood_s(FRAME_S, 0, LONG_FAST)
    assert FRAME_S < alone < FRAME_S + 0.5
    five = flood_s(FRAME_S, 5, LONG_FAST)
    assert abs(five - 6 * alone) < 1e-9
    assert flood_s(FRAME_S, 200, LONG_FAST) == flood_s(FRAME_S, MAX_REPEATERS, LONG_FAST)
    assert abs(flood_s(FRAME_S / 10, 5, LONG_FAST, time_scale=10.0) - five / 10) < 1e-9


def test_transmitters_are_counted_once_without_our_own_radio_and_forgotten_after_the_window() -> None:
    ears = Earshot(own_byte=0x07, window_s=100.0)
    for byte in (0x11, 0x22, 0x11, 0x07, 0x00, 0x133):  # 0x133 & 0xFF is 0x33
        ears.heard(byte, 10.0)
    assert ears.repeaters(10.0) == 3
    ears.heard(0x22, 80.0)
    assert ears.repeaters(109.0) == 3
    assert ears.repeaters(111.0) == 1  # only 0x22, heard again at 80
    assert ears.repeaters(181.0) == 0


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.floats(0, 10_000)), max_size=600))
def test_earshot_stays_bounded_and_never_counts_our_own_radio(hearings: list[tuple[int, float]]) -> None:
    ears = Earshot(own_byte=0x07, window_s=500.0)
    now = 0.0
    for byte, at in sorted(hearings, key=lambda h: h[1]):
        now = at
        ears.heard(byte, at)
    count = ears.repeaters(now)
    assert 0 <= count <= 254
    recent = {b & 0xFF for b, at in hearings if at > now - 500.0} - {0, 0x07}
    assert count == len(recent)
