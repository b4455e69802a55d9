"""RFC 1924 base85 (the alphabet of Python's `base64.b85encode`), strict and fast.

The standard library's codec is pure Python and costs more than a quarter of a relay's
per-frame budget. This one converts whole 5-character groups with precomputed tables and
is strict: it accepts only the canonical encoding, so two different token strings can
never decode to the same bytes (a frame must be re-encodable byte for byte).
"""

from __future__ import annotations

import struct

ALPHABET = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~"
_INVALID = 0xFF
_DECODE_TABLE = bytes(ALPHABET.index(c) if c in ALPHABET else _INVALID for c in range(256))
_ENCODE_PAIRS = [bytes((ALPHABET[i // 85], ALPHABET[i % 85])) for i in range(85 * 85)]
_U32_MAX = 0xFFFFFFFF


class Base85Error(ValueError):
    """Not a canonical base85 string."""


def encoded_length(n: int) -> int:
    full, rest = divmod(n, 4)
    return full * 5 + (rest + 1 if rest else 0)


def encode(data: bytes) -> bytes:
    padding = -len(data) % 4
    padded = data + b"\0" * padding
    words = struct.unpack(f">{len(padded) // 4}I", padded)
    out = bytearray()
    pairs = _ENCODE_PAIRS
    for word in words:
        rest, d4 = divmod(word, 85)
        high, low = divmod(rest, 85 * 85)  # high < 7225 because w < 2^32
        out += pairs[high] + pairs[low] + ALPHABET[d4 : d4 + 1]
    return bytes(out[: len(out) - padding]) if padding else bytes(out)


def decode(text: bytes) -> bytes:
    n = len(text)
    rest = n % 5
    if rest == 1:
        raise Base85Error("a lone character cannot encode a byte")
    padding = (5 - rest) % 5
    digits = (text + b"~" * padding).translate(_DECODE_TABLE)
    if digits.find(_INVALID) >= 0:
        raise Base85Error("character outside the base85 alphabet")
    it = iter(digits)
    words = [
        (((a * 85 + b) * 85 + c) * 85 + d) * 85 + e for a, b, c, d, e in zip(it, it, it, it, it, strict=True)
    ]
    if max(words, default=0) > _U32_MAX:
        raise Base85Error("group value overflows 32 bits")
    out = struct.pack(f">{len(words)}I", *words)
    if padding:
        out = out[:-padding]
        # A short final group has several spellings; only the one encode() makes is valid.
        if encode(out[-(4 - padding) :])[-(5 - padding) :] != text[-(5 - padding) :]:
            raise Base85Error("token is not in canonical base85 form")
    return out
