"""Does the kernel say the system clock is synchronised (NTP)? Linux adjtimex(2), read-only.

chrony, ntpd and systemd-timesyncd all clear the kernel's STA_UNSYNC flag once they have
synchronised the clock; adjtimex then returns a clock state other than TIME_ERROR. A clock
restored from a file at boot (fake-hwclock) or never set stays TIME_ERROR.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

_TIME_ERROR = 5
# struct timex is 208 bytes on 64-bit Linux; a zeroed, larger buffer with modes = 0 only reads.
_TIMEX_BYTES = 512


@functools.cache
def _adjtimex() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None


def kernel_clock_synchronised() -> bool | None:
    """True if synchronised, False if the kernel says it is not, None if it cannot tell."""
    fn = _adjtimex()
    if fn is None:
        return None
    buf = ctypes.create_string_buffer(_TIMEX_BYTES)
    state = fn(buf)  # type: ignore[operator]
    if not isinstance(state, int) or state < 0:
        return None
    return state != _TIME_ERROR
