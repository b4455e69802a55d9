"""The Meshtastic device API on the wire: stream framing and typed protobuf helpers.

Pure code, no I/O: shared by the simulator (which plays the firmware side) and the daemon's
radio link (which plays the client side).
"""

from __future__ import annotations

from relayd.meshapi.framing import (
    HEADER_LEN,
    MAX_FRAME_PAYLOAD_BYTES,
    START1,
    START2,
    FrameTooLargeError,
    StreamDecoder,
    encode_frame,
)

__all__ = [
    "HEADER_LEN",
    "MAX_FRAME_PAYLOAD_BYTES",
    "START1",
    "START2",
    "FrameTooLargeError",
    "StreamDecoder",
    "encode_frame",
]
