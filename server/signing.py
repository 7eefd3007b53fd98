"""Sign and verify delivery URLs over the raw path and query (SPEC §3). Pure: no I/O.

sig = base64url, unpadded, of HMAC-SHA256(HMAC-SHA256(secret, "imgcdn.url"), signed string),
where the signed string is the path and query exactly as sent, up to but excluding
`?sig=` or `&sig=`. That is itsdangerous' Signer with salt "imgcdn.url", SHA-256 and
key_derivation "hmac", so a client in any language can sign with one HMAC library.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

from itsdangerous import Signer

from server.errors import InvalidParam, InvalidSignature, UrlExpired

SALT = "imgcdn.url"


def _signer(key: str) -> Signer:
    return Signer(key, salt=SALT, digest_method=hashlib.sha256, key_derivation="hmac")


def signature(message: str | bytes, key: str) -> str:
    """The sig of `message`: its bytes as given, or a text's UTF-8, which is what a client
    sends of it."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    return _signer(key).get_signature(data).decode("ascii")


def sign(path_and_query: str, key: str) -> str:
    """`path_and_query` with `sig` appended as its last parameter."""
    glue = "&" if "?" in path_and_query else "?"
    return f"{path_and_query}{glue}sig={signature(path_and_query, key)}"


def split(path: str, query: str) -> tuple[str, str | None]:
    """(signed string, sig) of a raw path and query; sig is None on an unsigned URL.

    Only the query is searched: an id may contain `&sig=` in its path."""
    found = query.rfind("&sig=")  # the last: a sig is the last parameter
    if found < 0 and not query.startswith("sig="):
        return (f"{path}?{query}" if query else path), None
    sig = query[found + 5 :] if found >= 0 else query[4:]
    if "&" in sig:
        raise InvalidParam("sig", "sig must be the last parameter")
    # Up to but excluding "?sig=" or "&sig=": a client that signed "a.jpg?" sends
    # "a.jpg?&sig=...", and its "?" is part of what it signed.
    return (f"{path}?{query[:found]}" if found >= 0 else path), sig


def verify(message: str, sig: str, keys: Sequence[str]) -> None:
    """Accept when any key signed `message`; compare in constant time against every key.

    `message` is what `split` returns of the request's bytes decoded as latin-1 (one
    character per byte): the HMAC runs over those bytes, exactly as sent (SPEC §3)."""
    if not keys:
        raise InvalidSignature("this server has no signing keys: signed URLs cannot verify")
    try:
        data = message.encode("latin-1")
    except UnicodeEncodeError:  # not one character per byte: no request can carry it
        raise InvalidSignature("signature does not match this URL") from None
    given = sig.encode("ascii", "replace")
    results = [hmac.compare_digest(given, signature(data, k).encode()) for k in keys]
    if not any(results):
        raise InvalidSignature("signature does not match this URL")


def check_expiry(exp: int | None, now: float | None = None) -> int | None:
    """Seconds the signed URL has left (None when it has no exp), or UrlExpired."""
    if exp is None:
        return None
    left = exp - int(now if now is not None else time.time())
    if left <= 0:
        raise UrlExpired(f"this URL expired {-left} s ago")
    return left
