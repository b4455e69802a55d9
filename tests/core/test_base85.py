"""The strict base85 codec matches the standard library and admits one spelling per value."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relayd.core import base85


@given(st.binary(max_size=300))
def test_matches_the_standard_library(data: bytes) -> None:
    encoded = base85.encode(data)
    assert encoded == base64.b85encode(data)
    assert base85.decode(encoded) == data


@given(st.binary(min_size=1, max_size=120), st.data())
def test_any_accepted_spelling_is_the_canonical_one(data: bytes, draw: st.DataObject) -> None:
    token = bytearray(base64.b85encode(data))
    i = draw.draw(st.integers(0, len(token) - 1))
    token[i] = draw.draw(st.sampled_from(base85.ALPHABET))
    try:
        out = base85.decode(bytes(token))
    except base85.Base85Error:
        return
    assert base85.encode(out) == bytes(token)


@pytest.mark.parametrize("bad", [b"0", b"abc\n", b"|NsC1", b"~~~~~", b"ab cd"])
def test_rejects_invalid_input(bad: bytes) -> None:
    with pytest.raises(base85.Base85Error):
        base85.decode(bad)
