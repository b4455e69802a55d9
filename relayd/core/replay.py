"""Per-key anti-replay sliding window (RFC 4303 §3.4.3 style).

The window remembers the highest sequence number accepted and a bitmap of the `size`
numbers below it. A number left of the window, or already marked, is a replay. The window
is advanced only after the caller has verified the signature (`commit`), so a forger cannot
push it forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_WINDOW_SIZE = 64


@dataclass(frozen=True, slots=True)
class WindowState:
    highest: int
    bitmap: int  # bit i set: sequence (highest - i) was accepted


@dataclass(slots=True)
class ReplayWindows:
    size: int = DEFAULT_WINDOW_SIZE
    _windows: dict[bytes, WindowState] = field(default_factory=dict)

    def is_replay(self, key_id: bytes, seq: int) -> bool:
        state = self._windows.get(key_id)
        if state is None:
            return False
        if seq > state.highest:
            return False
        offset = state.highest - seq
        if offset >= self.size:
            return True
        return bool(state.bitmap >> offset & 1)

    def commit(self, key_id: bytes, seq: int) -> None:
        """Mark `seq` accepted. Call only after the signature verified and is_replay was False."""
        mask = (1 << self.size) - 1
        state = self._windows.get(key_id)
        if state is None:
            self._windows[key_id] = WindowState(seq, 1)
            return
        if seq > state.highest:
            shift = seq - state.highest
            bitmap = ((state.bitmap << shift) | 1) & mask if shift < self.size else 1
            self._windows[key_id] = WindowState(seq, bitmap)
        else:
            self._windows[key_id] = WindowState(state.highest, state.bitmap | (1 << (state.highest - seq)))

    def highest(self, key_id: bytes) -> int | None:
        state = self._windows.get(key_id)
        return None if state is None else state.highest

    def export(self) -> dict[bytes, WindowState]:
        """A snapshot for persistence (the daemon stores it so restarts keep the window)."""
        return dict(self._windows)

    def restore(self, states: dict[bytes, WindowState]) -> None:
        self._windows.update(states)
