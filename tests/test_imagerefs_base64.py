"""Base64 image references: whitespace anywhere is ignored, both alphabets decode, and
anything else is refused naming the field (imagerefs.decode_base64, also timed by bench)."""

from __future__ import annotations

import base64

import pytest

from server.errors import InvalidParam
from server.imagerefs import _parse

DATA = bytes(range(256)) * 40  # every byte value, so both alphabets' extra characters occur


def test_base64_with_line_breaks_spaces_and_tabs_decodes_to_the_same_bytes() -> None:
    text = base64.b64encode(DATA).decode()
    spaced = "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    spaced = " \t" + spaced.replace("A", "A \x0b").replace("B", "B\x0c") + "\n"
    ref = _parse({"base64": spaced}, "image")
    assert ref.kind == "bytes" and ref.value == DATA


def test_the_url_safe_alphabet_without_padding_decodes_too() -> None:
    text = base64.urlsafe_b64encode(DATA[:100]).decode().rstrip("=")
    assert _parse({"base64": text}, "image").value == DATA[:100]


@pytest.mark.parametrize("bad", ["abc$def", "abcd=efg", "ab\u00e9cd", "ab\u00a0cd"])
def test_characters_outside_base64_and_ascii_whitespace_are_refused_naming_the_field(
    bad: str,
) -> None:
    with pytest.raises(InvalidParam) as raised:
        _parse({"base64": bad}, "image")
    assert raised.value.param == "image.base64"
