"""Bounded dedup of alert ids: a two-generation set (as in Reticulum's packet hash lists);
and `BoundedMap`, the O(1)-eviction cache used wherever untrusted input fills a cache.

Ids live in the current generation; when it grows past `max_per_generation` or gets older
than `generation_s`, it becomes the previous generation and the old previous one is
dropped. Memory is bounded by 2 x max_per_generation ids, and an id is remembered for at
least `generation_s` unless the set is flooded — the replay window backs dedup up then.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

DEFAULT_GENERATION_S = 6 * 3600.0
DEFAULT_MAX_PER_GENERATION = 50_000


@dataclass(slots=True)
class DedupSet:
    generation_s: float = DEFAULT_GENERATION_S
    max_per_generation: int = DEFAULT_MAX_PER_GENERATION
    _current: set[bytes] = field(default_factory=set)
    _previous: set[bytes] = field(default_factory=set)
    _started_s: float | None = None

    def _rotate_if_due(self, now_s: float) -> None:
        if self._started_s is None:
            self._started_s = now_s
            return
        if now_s - self._started_s >= self.generation_s or len(self._current) >= self.max_per_generation:
            self._previous = self._current
            self._current = set()
            self._started_s = now_s

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._current or alert_id in self._previous

    def seen(self, alert_id: bytes, now_s: float) -> bool:
        self._rotate_if_due(now_s)
        return alert_id in self

    def add(self, alert_id: bytes, now_s: float) -> None:
        self._rotate_if_due(now_s)
        self._current.add(alert_id)

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMap(Generic[K, V]):
    """A map that forgets its oldest entry beyond `max_entries`, in O(1).

    For caches fed by untrusted input (verdicts of forged frames, packet ids, handheld
    packets). Evicting with `del d[next(iter(d))]` on a plain dict is O(n): iteration
    starts at the dict's first slot and walks every deleted slot ahead of the first live
    one, so a flood of distinct junk made each eviction slower. OrderedDict keeps a linked
    list, so the oldest entry is found directly.
    """

    __slots__ = ("_d", "max_entries")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._d: OrderedDict[K, V] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key: K) -> V | None:
        return self._d.get(key)

    def put(self, key: K, value: V) -> tuple[K, V] | None:
        """Insert or overwrite (an overwrite does not refresh the entry's age); returns the
        entry evicted to stay within the bound, if any."""
        self._d[key] = value
        if len(self._d) > self.max_entries:
            return self._d.popitem(last=False)
        return None

    def snapshot(self) -> list[K]:
        """A snapshot of the keys, oldest first."""
        return list(self._d)

    def pop(self, key: K) -> V | None:
        return self._d.pop(key, None)

    def clear(self) -> None:
        self._d.clear()
