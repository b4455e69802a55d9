from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relayd.meshapi.framing import MAX_FRAME_PAYLOAD_BYTES, FrameTooLargeError, StreamDecoder, encode_frame


def test_frame_roundtrip() -> None:
    dec = StreamDecoder()
    assert dec.feed(encode_frame(b"abc") + encode_frame(b"")) == [b"abc", b""]


def test_garbage_and_wake_bytes_are_skipped_and_counted() -> None:
    dec = StreamDecoder()
    out = dec.feed(b"\xc3" * 32 + b"log line\r\n" + encode_frame(b"x"))
    assert out == [b"x"]
    assert dec.skipped_bytes == 42


def test_bad_length_resyncs_on_next_marker() -> None:
    dec = StreamDecoder()
    bad_header = bytes([0x94, 0xC3, 0x7F, 0xFF])  # announces 32767 bytes
    out = dec.feed(bad_header + encode_frame(b"ok"))
    assert out == [b"ok"]
    assert dec.bad_lengths == 1


def test_truncated_frame_waits_for_rest() -> None:
    dec = StreamDecoder()
    frame = encode_frame(b"hello")
    assert dec.feed(frame[:5]) == []
    assert dec.pending_bytes == 5
    assert dec.feed(frame[5:]) == [b"hello"]


def test_oversize_payload_cannot_be_framed() -> None:
    with pytest.raises(FrameTooLargeError):
        encode_frame(b"x" * (MAX_FRAME_PAYLOAD_BYTES + 1))


@given(
    payloads=st.lists(st.binary(max_size=600), max_size=8),
    junk=st.binary(max_size=40).filter(lambda b: 0x94 not in b),
    cuts=st.lists(st.integers(min_value=1, max_value=50), max_size=30),
)
def test_any_chunking_yields_the_same_frames(payloads: list[bytes], junk: bytes, cuts: list[int]) -> None:
    good = [p for p in payloads if len(p) <= MAX_FRAME_PAYLOAD_BYTES]
    stream = junk + b"".join(encode_frame(p) for p in good)
    dec = StreamDecoder()
    out: list[bytes] = []
    pos = 0
    for c in cuts:
        out += dec.feed(stream[pos : pos + c])
        pos += c
    out += dec.feed(stream[pos:])
    assert out == good
