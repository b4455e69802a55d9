"""Meshtastic stream framing (serial and TCP API): ``0x94 0xC3 LEN_HI LEN_LO <protobuf>``.

The same framing carries ToRadio (client -> device) and FromRadio (device -> client). The
decoder mirrors the firmware's StreamAPI::readStream state machine (src/mesh/StreamAPI.cpp):
bytes outside a frame are skipped (on a real serial port they are debug log text, or the
client's wake-up burst of 0xC3 bytes), and a header announcing more than 512 bytes is
discarded so that the decoder resynchronises on the next ``0x94 0xC3``.
"""

from __future__ import annotations

START1 = 0x94
START2 = 0xC3
HEADER_LEN = 4
# Firmware MAX_TO_FROM_RADIO_SIZE (mesh-pb-constants.h): neither ToRadio nor FromRadio may
# exceed it, and the firmware drops a header that announces more.
MAX_FRAME_PAYLOAD_BYTES = 512


class FrameTooLargeError(ValueError):
    """A protobuf payload does not fit in one stream frame."""

    def __init__(self, payload_bytes: int) -> None:
        super().__init__(
            f"payload of {payload_bytes} bytes exceeds the {MAX_FRAME_PAYLOAD_BYTES}-byte stream frame limit"
        )
        self.payload_bytes = payload_bytes


def encode_frame(payload: bytes) -> bytes:
    """Wrap one serialized ToRadio/FromRadio protobuf in a stream frame."""
    if len(payload) > MAX_FRAME_PAYLOAD_BYTES:
        raise FrameTooLargeError(len(payload))
    return bytes((START1, START2, len(payload) >> 8, len(payload) & 0xFF)) + payload


class StreamDecoder:
    """Incremental frame decoder: feed it bytes as they arrive, get complete payloads back.

    Never raises on bad input: garbage is skipped and counted in `skipped_bytes`, frames whose
    header announces an impossible length are dropped (`bad_lengths`) and decoding resumes at
    the next start marker.
    """

    __slots__ = ("_buf", "bad_lengths", "frames", "skipped_bytes")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.skipped_bytes = 0
        self.bad_lengths = 0
        self.frames = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of a partial frame held until the rest arrives."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame (e.g. after the link was re-opened)."""
        self._buf.clear()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf.extend(data)
        out: list[bytes] = []
        buf = self._buf
        while buf:
            start = self._find_start()
            if start is None:
                break
            if len(buf) < HEADER_LEN:
                break
            length = (buf[2] << 8) | buf[3]
            if length > MAX_FRAME_PAYLOAD_BYTES:
                # Firmware: "length was out of bounds, restart" -- drop the two start bytes and
                # hunt for the next marker; the bytes after them may hold a real frame.
                self.bad_lengths += 1
                self.skipped_bytes += 2
                del buf[:2]
                continue
            end = HEADER_LEN + length
            if len(buf) < end:
                break
            out.append(bytes(buf[HEADER_LEN:end]))
            self.frames += 1
            del buf[:end]
        return out

    def _find_start(self) -> int | None:
        """Drop bytes before the first START1 START2 pair; keep a trailing lone START1."""
        buf = self._buf
        i = 0
        n = len(buf)
        while i < n:
            if buf[i] == START1 and (i + 1 == n or buf[i + 1] == START2):
                break
            i += 1
        if i:
            self.skipped_bytes += i
            del buf[:i]
        return 0 if buf else None
