"""relayd: a mesh-capable rapid-alert relay for neighborhood response networks."""

from __future__ import annotations

__version__ = "0.1.0"

# A Raspberry Pi has no real-time clock: a system time before this date means the clock
# was never set (no NTP, no RTC), which the daemon reports as a clock warning.
BUILD_EPOCH_S = 1_790_000_000  # 2026-09-21 UTC; raise it on each release
