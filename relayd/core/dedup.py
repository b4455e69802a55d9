"""Bounded dedup of alert ids: a two-generation set (as in Reticulum's packet hash lists).

Ids live in the current generation; when it grows past `max_per_generation` or gets older
than `generation_s`, it becomes the previous generation and the old previous one is
dropped. Memory is bounded by 2 x max_per_generation ids, and an id is remembered for at
least `generation_s` unless the set is flooded — the replay window backs dedup up then.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
