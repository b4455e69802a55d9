"""LoRa time on air (Semtech AN1200.13) and the Meshtastic frame overhead."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relayd.core.airtime import (
    LONG_FAST,
    MAX_DATA_PAYLOAD_BYTES,
    MESHTASTIC_HEADER_BYTES,
    PRESETS,
    LoRaPreset,
    data_protobuf_bytes,
    mesh_frame_time_on_air_s,
    preset_by_name,
    time_on_air_s,
)


@pytest.mark.parametrize(
    ("preset", "payload", "expected_ms"),
    [
        # Published figures (Semtech LoRa calculator; LoRaWAN EU868 SF12 max payload ~2.47 s):
        # explicit header, CRC on, 8-symbol preamble; SF12/125 kHz uses low-data-rate optimisation.
        (LoRaPreset("sf7", 7, 125_000, 5, preamble_symbols=8), 10, 41.216),
        (LoRaPreset("sf12", 12, 125_000, 5, preamble_symbols=8), 51, 2465.792),
    ],
)
def test_time_on_air_matches_known_answers(preset: LoRaPreset, payload: int, expected_ms: float) -> None:
    assert time_on_air_s(payload, preset) * 1000 == pytest.approx(expected_ms, abs=0.01)


def test_long_fast_is_sf11_250khz_cr45_with_a_16_symbol_preamble() -> None:
    assert (LONG_FAST.spreading_factor, LONG_FAST.bandwidth_hz, LONG_FAST.coding_rate_denominator) == (
        11,
        250_000,
        5,
    )
    assert LONG_FAST.preamble_symbols == 16
    assert not LONG_FAST.low_data_rate_optimize


def test_a_full_long_fast_frame_takes_about_2_2_seconds() -> None:
    # Design brief §3: one full 233-byte frame takes ~2.2 s on LongFast.
    assert 2.0 < mesh_frame_time_on_air_s(MAX_DATA_PAYLOAD_BYTES) < 2.3


def test_mesh_frame_adds_the_header_and_data_protobuf() -> None:
    assert data_protobuf_bytes(100) == 104
    assert data_protobuf_bytes(200) == 205
    assert mesh_frame_time_on_air_s(100) == time_on_air_s(MESHTASTIC_HEADER_BYTES + 104)


def test_slow_presets_use_low_data_rate_optimisation() -> None:
    assert PRESETS["LONG_SLOW"].low_data_rate_optimize
    assert PRESETS["VERY_LONG_SLOW"].low_data_rate_optimize
    assert not PRESETS["SHORT_FAST"].low_data_rate_optimize


@given(a=st.integers(0, 255), b=st.integers(0, 255), name=st.sampled_from(sorted(PRESETS)))
def test_time_on_air_never_decreases_with_payload(a: int, b: int, name: str) -> None:
    lo, hi = sorted((a, b))
    assert time_on_air_s(lo, PRESETS[name]) <= time_on_air_s(hi, PRESETS[name])


@pytest.mark.parametrize("name", ["LongFast", "LONG_FAST", "long-fast", "longfast"])
def test_presets_are_found_by_their_meshtastic_names(name: str) -> None:
    assert preset_by_name(name) is LONG_FAST


def test_an_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="LONG_FAST"):
        preset_by_name("turbo")


def test_negative_payload_is_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        time_on_air_s(-1)
