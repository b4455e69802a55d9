"""Per-key token buckets."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from relayd.core.ratelimit import RateLimit, TokenBuckets

KEY = b"\x00\x00\x00\x01"


def test_a_full_bucket_allows_a_burst_then_refuses() -> None:
    buckets = TokenBuckets()
    limit = RateLimit(burst=3, per_s=1.0)
    assert [buckets.allow(KEY, limit, 0.0) for _ in range(4)] == [True, True, True, False]


def test_tokens_refill_at_the_configured_rate() -> None:
    buckets = TokenBuckets()
    limit = RateLimit(burst=2, per_s=0.5)  # one token every 2 s
    assert buckets.allow(KEY, limit, 0.0)
    assert buckets.allow(KEY, limit, 0.0)
    assert not buckets.allow(KEY, limit, 1.0)
    assert buckets.allow(KEY, limit, 2.0)
    assert not buckets.allow(KEY, limit, 2.0)


def test_a_long_idle_refills_no_more_than_the_burst() -> None:
    buckets = TokenBuckets()
    limit = RateLimit(burst=2, per_s=1.0)
    assert buckets.allow(KEY, limit, 0.0)
    results = [buckets.allow(KEY, limit, 10_000.0) for _ in range(3)]
    assert results == [True, True, False]


def test_a_clock_going_backwards_adds_no_tokens() -> None:
    buckets = TokenBuckets()
    limit = RateLimit(burst=1, per_s=1.0)
    assert buckets.allow(KEY, limit, 100.0)
    assert not buckets.allow(KEY, limit, 50.0)
    assert not buckets.allow(KEY, limit, 50.5)


def test_buckets_are_per_key() -> None:
    buckets = TokenBuckets()
    limit = RateLimit(burst=1, per_s=0.0)
    assert buckets.allow(KEY, limit, 0.0)
    assert not buckets.allow(KEY, limit, 0.0)
    assert buckets.allow(b"\x00\x00\x00\x02", limit, 0.0)


@settings(max_examples=200)
@given(
    burst=st.integers(1, 20),
    per_s=st.floats(0.001, 10.0),
    gaps=st.lists(st.floats(0.0, 30.0), min_size=1, max_size=200),
)
def test_allowed_count_never_exceeds_burst_plus_refill(burst: int, per_s: float, gaps: list[float]) -> None:
    buckets = TokenBuckets()
    limit = RateLimit(burst=burst, per_s=per_s)
    now = 0.0
    allowed = 0
    for gap in gaps:
        now += gap
        allowed += buckets.allow(KEY, limit, now)
    assert allowed <= burst + math.floor(now * per_s + 1e-9)
