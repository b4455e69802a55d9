"""Per-key token buckets, so a stolen key cannot flood the mesh."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RateLimit:
    burst: int
    per_s: float  # tokens refilled per second


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_s: float


@dataclass(slots=True)
class TokenBuckets:
    _buckets: dict[bytes, _Bucket] = field(default_factory=dict)

    def allow(self, key_id: bytes, limit: RateLimit, now_s: float) -> bool:
        """Take one token for `key_id` if available."""
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(float(limit.burst), now_s)
        elapsed = max(0.0, now_s - bucket.updated_s)
        bucket.tokens = min(float(limit.burst), bucket.tokens + elapsed * limit.per_s)
        bucket.updated_s = now_s
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False
