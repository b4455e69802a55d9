"""ISO 8601 times and durations as the CLI reads them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relayd.core.timefmt import iso_utc, parse_duration_s, parse_iso


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("7d", 604800), ("1d12h", 129600), ("45", 45), (" 5M ", 300)],
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "30x", "1h30", "-5m", "1.5h"])
def test_bad_durations_say_which_forms_work(text: str) -> None:
    with pytest.raises(ValueError, match="use forms like 90s, 30m, 2h or 7d"):
        parse_duration_s(text)


@given(d=st.integers(0, 400), h=st.integers(0, 23), m=st.integers(0, 59), s=st.integers(0, 59))
def test_duration_components_add_up(d: int, h: int, m: int, s: int) -> None:
    assert parse_duration_s(f"{d}d{h}h{m}m{s}s") == ((d * 24 + h) * 60 + m) * 60 + s


@given(epoch=st.integers(0, 2**32))
def test_iso_utc_round_trips(epoch: int) -> None:
    text = iso_utc(epoch)
    assert text.endswith("Z")
    assert parse_iso(text) == epoch


def test_a_time_without_a_zone_is_utc() -> None:
    assert parse_iso("2026-11-21T13:14:08") == parse_iso("2026-11-21T13:14:08Z") == 1_795_266_848
    assert parse_iso("2026-11-21T14:14:08+01:00") == 1_795_266_848
