"""Properties of URL signing (server/signing.py), searched by hypothesis over paths and
queries of any bytes: a signed URL verifies as it arrives on the wire, a one-byte change
anywhere in it never does, and nothing but the signature errors ever comes out.

The server sees the path and query as bytes; delivery.py hands them to `split` decoded as
latin-1 (one character per byte), which is how these tests hand them over too."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from conftest import attempt, upload
from hypothesis import assume, given
from hypothesis import strategies as st

from server import signing
from server.errors import ImgcdnError, InvalidParam, InvalidSignature

KEYS = st.text(st.characters(exclude_categories=("Cs",)), min_size=32, max_size=40)
# What a client may put in a URL before signing: anything but "?" in the path (it starts
# the query) and "#" anywhere (a fragment is never sent).
PATH = st.text(st.characters(exclude_characters="?#", exclude_categories=("Cs",))).map(
    lambda p: f"/t/_/{p}"
)
QUERY = st.one_of(
    st.none(),
    st.text(st.characters(exclude_characters="#", exclude_categories=("Cs",))),
    st.lists(st.sampled_from(["w=1", "sig=", "&", "sig=x", "?", "=", "%26sig=", "é"])).map("".join),
)


def reference_sig(key: str, message: bytes) -> str:
    """SPEC §3, independently: b64url(HMAC(HMAC(key, "imgcdn.url"), message)), unpadded."""
    derived = hmac.new(key.encode(), b"imgcdn.url", hashlib.sha256).digest()
    mac = hmac.new(derived, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def arrive(wire: bytes) -> tuple[str, str | None]:
    """What delivery.py makes of a request target: (signed string, sig)."""
    path, _, query = wire.partition(b"?")
    return signing.split(path.decode("latin-1"), query.decode("latin-1"))


def url(path: str, query: str | None) -> str:
    return path if query is None else f"{path}?{query}"


@given(PATH, QUERY, KEYS)
def test_a_signed_url_verifies_as_it_arrives_on_the_wire(path, query, key):
    signed = signing.sign(url(path, query), key)
    wire = signed.encode("utf-8")  # a client sends its text as UTF-8
    message, sig = arrive(wire)
    assert message.encode("latin-1") == url(path, query).encode("utf-8")
    assert sig is not None
    signing.verify(message, sig, ["some-other-key-000000000000000000000", key])


@given(st.binary(), KEYS)
def test_the_signature_is_the_spec_hmac_over_the_bytes_exactly_as_sent(raw, key):
    path, _, query = raw.partition(b"?")
    assume(b"&sig=" not in query and not query.startswith(b"sig="))
    message, sig = signing.split(path.decode("latin-1"), query.decode("latin-1"))
    assert sig is None and message.encode("latin-1") == (raw if query else path)
    signing.verify(message, reference_sig(key, message.encode("latin-1")), [key])


@st.composite
def one_byte_changed(draw: st.DrawFn) -> tuple[bytes, str]:
    key = draw(KEYS)
    wire = bytearray(signing.sign(url(draw(PATH), draw(QUERY)), key).encode("utf-8"))
    cut = wire.rindex(b"sig=")
    # Any byte of the signed part or of the sig; the "?sig=" or "&sig=" between them is
    # not signed: changing it makes an unsigned URL (below).
    at = draw(st.one_of(st.integers(0, cut - 2), st.integers(cut + 4, len(wire) - 1)))
    wire[at] = draw(st.integers(0, 255).filter(lambda b: b != wire[at]))
    return bytes(wire), key


@given(one_byte_changed())
def test_any_change_of_one_byte_in_the_signed_part_or_the_sig_is_refused(case):
    wire, key = case
    arrived = attempt(lambda: arrive(wire))
    if isinstance(arrived, ImgcdnError):  # a "&" in the sig: no longer the last parameter
        assert isinstance(arrived, InvalidParam) and arrived.param == "sig"
        return
    message, sig = arrived
    if sig is None:  # the "?" became another byte: no sig left, so an unsigned URL
        return
    with pytest.raises(InvalidSignature):
        signing.verify(message, sig, [key])


ODD_SIG = st.sampled_from(["sig=", "&sig=", "?sig=", "sig=sig=", "&sig=&", "%26sig%3D", "SIG="])


@st.composite
def any_target(draw: st.DrawFn) -> tuple[str, str]:
    """A path and query as split() receives them, with "sig=" at odd places."""
    chars = st.characters(max_codepoint=255)  # latin-1: one character per byte on the wire
    pieces = st.lists(st.one_of(st.text(chars, max_size=8), ODD_SIG), max_size=8).map("".join)
    path, query = draw(pieces), draw(pieces)
    if draw(st.integers(0, 20)) == 0:  # now and then a huge one
        query = query + "A" * 1_000_000 + draw(pieces)
    return path, query


@given(any_target(), st.lists(KEYS, max_size=3), st.text(max_size=64))
def test_split_and_verify_raise_only_signature_errors_on_any_input(target, keys, forged):
    path, query = target
    split = attempt(lambda: signing.split(path, query))
    if isinstance(split, ImgcdnError):
        assert isinstance(split, InvalidParam) and (split.param, split.status) == ("sig", 400)
        return
    message, sig = split
    for candidate in (sig, forged):
        if candidate is not None:
            with pytest.raises(InvalidSignature):
                signing.verify(message, candidate, keys)


@given(st.text(), st.text(), st.lists(KEYS, max_size=3))
def test_verify_of_any_text_is_a_signature_error_not_a_crash(message, sig, keys):
    assume(not keys or all(sig != signing.signature(message, k) for k in keys))
    with pytest.raises(InvalidSignature):
        signing.verify(message, sig, keys)


# --- what the properties found, pinned -------------------------------------------------

KEY = "signing-property-key-0123456789abcdef"


@pytest.mark.parametrize(
    "path_and_query",
    [
        "/t/_/a.jpg?",  # found by the property: its "?" was cut from the signed string
        "/t/_/a.jpg?w=1&",
        "/t/_/a.jpg?sig=",  # found by the property: "sig=" signed, then "&sig=": a 400
        "/t/_/a.jpg?sig=x&w=1",
    ],
)
def test_a_url_with_an_empty_query_or_a_signed_sig_verifies(path_and_query):
    path, _, query = signing.sign(path_and_query, KEY).partition("?")
    message, sig = signing.split(path, query)
    assert message == path_and_query and sig is not None
    signing.verify(message, sig, [KEY])


@pytest.mark.parametrize(
    "raw",
    [
        b"/t/_/a.jpg?v=\x80",  # found by the property: the HMAC ran over "\xc2\x80"
        "/t/_/a.jpg?v=caf\u00e9".encode(),  # a client sending its UTF-8 as is
        b"/t/_/\xff.jpg",
    ],
)
def test_the_signature_is_the_hmac_of_the_bytes_as_sent_not_of_a_reencoding(raw):
    path, _, query = raw.partition(b"?")
    message, _ = signing.split(path.decode("latin-1"), query.decode("latin-1"))
    signing.verify(message, reference_sig(KEY, raw), [KEY])


def test_verify_of_text_no_request_can_carry_is_an_invalid_signature():
    with pytest.raises(InvalidSignature):
        signing.verify("/t/_/\u20ac.jpg", signing.signature("/t/_/\u20ac.jpg", KEY), [KEY])


def test_a_signed_url_with_an_empty_query_is_served(make_client):
    client = make_client(signing_keys=(KEY,))
    upload(client, "photo.jpg", "photo.jpg")
    r = client.get(signing.sign("/t/_/photo.jpg?", KEY))
    assert r.status_code == 200, r.text
