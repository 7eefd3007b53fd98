"""Properties of the asset id validator (names.validate_id), searched by hypothesis: ids built
from safe segments and from every hostile piece we know of (dot segments percent-encoded
once, twice or three times, encoded slashes, backslashes, NUL and control characters,
fullwidth and leader dots, overlong UTF-8, lone surrogates), and plain random text."""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote

import pytest
from conftest import attempt
from grammar import HOSTILE
from hypothesis import given
from hypothesis import strategies as st

from server.errors import ImgcdnError, InvalidId
from server.names import MAX_ID_BYTES, validate_id

# Letters, marks and digits of every script, and the punctuation ids really use.
SAFE_CHARS = st.characters(categories=("L", "M", "N"), exclude_characters="\\/%") | st.sampled_from(
    "._-~ ()+,@"
)
SAFE_SEGMENT = st.text(SAFE_CHARS, min_size=1, max_size=24).filter(lambda s: s.strip(".") != "")


@st.composite
def ids(draw: st.DrawFn) -> str:
    segments = draw(
        st.lists(st.one_of(SAFE_SEGMENT, SAFE_SEGMENT, st.sampled_from(HOSTILE)), max_size=6)
    )
    glue = draw(st.sampled_from(["/", "/", "/", "//", "\\"]))
    lead = draw(st.sampled_from(["", "", "", "/", "./", "../"]))
    return lead + glue.join(segments)


ANY_ID = st.one_of(ids(), st.text(max_size=40), st.text(SAFE_CHARS, min_size=1000, max_size=1100))


def forms(segment: str) -> list[str]:
    """The segment, and what percent-decoding it again and again makes of it (as UTF-8,
    strictly: an invalid or overlong sequence ends the list with None's stand-in "")."""
    found = [segment]
    while "%" in found[-1]:
        try:
            decoded = unquote(found[-1], errors="strict")
        except UnicodeDecodeError:
            return [*found, "\x00"]  # not UTF-8: a lenient decoder may make anything of it
        if decoded == found[-1]:
            break
        found.append(decoded)
    return found


def is_safe(asset_id: str) -> bool:
    """What SPEC \u00a72 promises of an id, however often whatever sits behind us decodes it."""
    try:
        size = len(asset_id.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    if not 1 <= size <= MAX_ID_BYTES:
        return False
    for segment in asset_id.split("/"):
        if not segment:
            return False
        for form in forms(segment):
            if "/" in form or "\\" in form or form in (".", ".."):
                return False
            if any(unicodedata.category(c) == "Cc" for c in form):
                return False
            # A normalizing reader (NFKC) turns fullwidth dots and U+2025 into "..".
            folded = unicodedata.normalize("NFKC", form)
            if any(p in (".", "..") for p in folded.replace("\\", "/").split("/")):
                return False
    return True


@given(ANY_ID)
def test_any_id_is_accepted_unchanged_or_refused_as_invalid_id(asset_id):
    result = attempt(lambda: validate_id(asset_id))
    if isinstance(result, ImgcdnError):
        assert isinstance(result, InvalidId) and result.status == 400 and result.message
    else:
        assert result == asset_id


@given(ANY_ID)
def test_an_accepted_id_stays_free_of_dot_segments_and_controls_however_often_decoded(asset_id):
    try:
        validate_id(asset_id)
    except InvalidId:
        return
    assert is_safe(asset_id), ascii(asset_id)


@given(st.lists(SAFE_SEGMENT, min_size=1, max_size=8).map("/".join))
def test_an_id_of_safe_segments_is_accepted_unchanged(asset_id):
    if len(asset_id.encode()) <= MAX_ID_BYTES:
        assert validate_id(asset_id) == asset_id
        for form in ("NFC", "NFD"):  # both spellings are ids, and stay distinct
            assert validate_id(unicodedata.normalize(form, asset_id))


# --- what the properties found, pinned -------------------------------------------------


@pytest.mark.parametrize(
    "asset_id",
    [
        "%252e%252e",  # found by the property: ".." after two more decodings
        "a/%252e/b",
        "a/%25252e%25252e/b",
        "a/%255c/b",  # a backslash after two decodings
        "a/%252f/b",  # a slash after two decodings
        "a%2500b",  # NUL after one more decoding
        "a%250ab",  # a newline after one more decoding
        "a/%c0%ae%c0%ae/b",  # ".." in overlong UTF-8, for a lenient decoder
        "a/%ff/b",  # a byte that is no UTF-8 at all
        "\uff0e\uff0e",  # fullwidth "..": NFKC makes it ".."
        "a/\u2025/b",  # the two-dot leader: NFKC makes it ".."
        "a/\u2024/b",  # the one-dot leader: NFKC makes it "."
        "a/..\uff0fb",  # ".." + a fullwidth slash: NFKC makes it "../b"
        "a\ud800b",  # a lone surrogate: no UTF-8 at all
    ],
)
def test_an_id_that_decodes_or_normalizes_to_traversal_or_controls_is_refused(asset_id):
    with pytest.raises(InvalidId):
        validate_id(asset_id)


@pytest.mark.parametrize(
    "asset_id",
    [
        "caf\u00e9.jpg",
        "cafe\u0301.jpg",
        "\uff21\uff0f\uff22.jpg",
        "50%off.jpg",
        "100%25.jpg",
        "a/.b./c",
    ],
)
def test_ids_that_only_look_odd_are_still_accepted_unchanged(asset_id):
    assert validate_id(asset_id) == asset_id
