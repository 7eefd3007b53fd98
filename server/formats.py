"""Which output format a request gets: the SPEC §2 defaults and `fmt=auto` from `Accept`. Pure."""

from __future__ import annotations

from server.spec import Format, TransformSpec

MIME: dict[Format, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
    "gif": "image/gif",
}
ANIMATED: frozenset[Format] = frozenset({"gif", "webp"})
ALPHA: frozenset[Format] = frozenset({"png", "webp", "avif", "gif"})


def accepted(accept: str) -> set[str]:
    """Media types the client takes (q > 0). Wildcards are ignored: `*/*` says nothing about
    whether a browser can show AVIF, so only explicit types upgrade the format."""
    types: set[str] = set()
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and media:
            types.add(media.lower())
    return types


def choose(
    spec: TransformSpec, source: Format, alpha: bool, frames: int, accept: str
) -> tuple[Format, bool]:
    """The output format and whether it was negotiated (then the response varies on Accept)."""
    animate = frames > 1 and spec.anim is not False
    if spec.fmt is not None and spec.fmt != "auto":
        return spec.fmt, False
    if spec.fmt is None:
        # An animated WebP stays WebP: SPEC's "other: png or jpeg" would silently drop the
        # animation that anim's default promises to keep.
        if source in ("jpeg", "png", "gif") or (source == "webp" and animate):
            return source, False
        return ("png" if alpha else "jpeg"), False
    types = accepted(accept)
    # libvips writes AVIF stills only: an animated source goes to WebP (or GIF) instead.
    if "image/avif" in types and not animate:
        return "avif", True
    if "image/webp" in types:
        return "webp", True
    if animate:
        return "gif", True
    return ("png" if alpha else "jpeg"), True
