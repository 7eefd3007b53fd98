"""Shapes of the admin API, API keys, delivery URLs and every answer, as schema objects. Pure.

Request bodies here are what their handlers check with (`URLS`, `PURGE`), or, where a
handler still validates by hand (templates, asset JSON), what it accepts, held to it by
tests/test_openapi.py. Answers are described, not checked at run time: the tests validate
real answers against them. The processing API's request bodies live beside their handlers
(routes/processing.py BODIES); ops.py declares each op's params.
"""

from __future__ import annotations

from server.imaging.metadata import GROUPS
from server.keyfields import SCOPES
from server.names import TEMPLATE_NAME
from server.ops import FORMAT
from server.schema import Array, Bool, Choice, Custom, Field, Int, Number, Obj, Schema, Text
from server.spec import FITS, FMT_VALUES, GRAVITIES, MAX_EXP

BIG = 2**53 - 1  # JSON's largest exact integer


def _as_is(value: object, path: str, text: bool) -> object:
    return value


def described(schema: Schema, description: str = "") -> Field:
    """A value whose shape is checked by the code that uses it: the schema describes it."""
    return Custom(_as_is, schema, description)


def _strings(description: str) -> Field:
    return described({"type": "string"}, description)


def _nullable(kind: str, description: str) -> Field:
    return described({"type": [kind, "null"]}, description)


# --- the admin API (SPEC §5) ---------------------------------------------------------------

ASSET_ID = Text(4096, "asset id: 1..1024 bytes of UTF-8, may contain '/'")
TEMPLATE_PARAMS = described(
    {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
    "delivery parameters (GET /t/...) -> value; a template's may also hold `wm`",
)
TEMPLATE = Obj(
    {
        "params": TEMPLATE_PARAMS,
        "allow": described(
            {
                "oneOf": [
                    {"type": "array", "items": {"type": "string"}},
                    {"type": "object"},
                ]
            },
            "parameters a URL may set: names, or name -> [values] / {min, max, step}",
        ),
        "public": Bool("answer unsigned URLs (IMGCDN_UNSIGNED=public-templates)"),
        "cache_control": _nullable("string", "Cache-Control of its variants"),
    },
    description="A template: default params and what URLs may override",
    title="TemplateBody",
)
ASSET_JSON = Obj(
    {
        # min_length 0: an empty one is "give exactly one of url or base64" (param body)
        "url": Text(8192, "fetch the image from here (http(s), SSRF-safe)", min_length=0),
        "base64": Text(70_000_000, "the image, base64 or a data: URL", min_length=0),
        "prefix": Text(1024, "a folder ending in '/' for the picked id", min_length=0),
    },
    description="Exactly one of url or base64",
    title="AssetSource",
)
URLS = Obj(
    {
        "id": ASSET_ID,
        "template": Text(64, "a template name, or _ (none)", f"_|{TEMPLATE_NAME}", TEMPLATE_NAME),
        "params": TEMPLATE_PARAMS,
        "expires_in_s": Int(1, 366 * 86400, "the URL expires after this (needs signing keys)"),
        "widths": Array(Int(1, 65_500), 100, "also answer a srcset, one URL per width", 1),
    },
    frozenset({"id"}),
    "A ready (signed, versioned) delivery URL",
    title="UrlRequest",
)
PURGE = Obj(
    {
        "id": ASSET_ID,
        "template": Text(64, "drop this template's variants", f"_|{TEMPLATE_NAME}", TEMPLATE_NAME),
    },
    description="Exactly one of id or template",
    title="PurgeRequest",
)

# --- API keys (SPEC §6 "Keys"; routes/keys.py is the keys branch's) ----------------------

_KEY_FIELDS: dict[str, Field] = {
    "name": Text(100, "what the key is for (printable)"),
    "state": Choice(("active", "disabled")),
    "rate_per_s": Number(0.001, 100_000, "requests per second, sustained"),
    "burst": Int(1, 1_000_000, "requests allowed at once above the rate"),
    "daily_quota": Int(1, 10**12, "requests per UTC day; null: no quota"),
    "expires_at": described(
        {"type": ["string", "integer", "null"]},
        "RFC 3339 with a zone, or unix seconds; null: never",
    ),
    "scopes": Array(Choice(SCOPES), len(SCOPES), "what it may call (default all)", 1),
    "prefix": described({"type": "string"}, "a folder ending in '/' its assets are confined to"),
}
KEY_CREATE = Obj(
    _KEY_FIELDS,
    frozenset({"name"}),
    "A new API key; the secret is answered once",
    title="KeyCreate",
)
KEY_PATCH = Obj(_KEY_FIELDS, description="Disable, re-enable, or change limits", title="KeyPatch")

# --- answers --------------------------------------------------------------------------------

_SIZE = {
    "mime": _strings("image/jpeg, image/png, ..."),
    "width": Int(0, BIG),
    "height": Int(0, BIG),
    "bytes": Int(0, BIG),
}


def answer(title: str, description: str, required: tuple[str, ...], **fields: Field) -> Obj:
    return Obj(fields, frozenset(required), description, title=title)


PROCESSED_IMAGE = answer(
    "ProcessedImage",
    "The result, stored and served at a signed, expiring image_url",
    ("image_url", "mime", "width", "height", "bytes"),
    image_url=_strings("absolute: /r/{result}.{ext}?exp=..&sig=.."),
    **_SIZE,
    format=Choice(FORMAT.values),
    expires_at=Int(0, BIG, "unix seconds"),
)
PROCESSED_BASE64 = answer(
    "ProcessedImageBase64",
    'The result inline ("return": "base64")',
    ("base64", "mime", "width", "height", "bytes"),
    base64=_strings("the image bytes, base64"),
    **_SIZE,
    format=Choice(FORMAT.values),
)
_GROUP = described({"type": "object"}, "")
METADATA = answer(
    "ImageMetadata",
    "Size (upright), format and EXIF groups; hostile EXIF gives partial metadata",
    (
        "width",
        "height",
        "mime",
        "format",
        "bytes",
        "frames",
        "has_alpha",
        "orientation",
        "color_space",
        "exif",
    ),
    **_SIZE,
    format=_strings("jpeg, png, webp, gif, heif, ..."),
    frames=Int(1, BIG),
    has_alpha=Bool(),
    orientation=Int(1, 8, "EXIF orientation as stored"),
    color_space=_strings("srgb, cmyk, b-w, ..."),
    exif=Obj(
        {g: _GROUP for g in GROUPS},
        frozenset(GROUPS),
        "every group always present ({} when empty); location has GPS in decimal degrees",
    ),
)
ASSET = answer(
    "Asset",
    "A stored source image",
    ("id", "url", "mime", "width", "height", "bytes", "etag", "created_at"),
    id=_strings("its id"),
    url=_strings("its delivery URL, /t/_/{id}"),
    **_SIZE,
    etag=_strings("content hash"),
    created_at=_strings("RFC 3339"),
)
TEMPLATE_ANSWER = answer(
    "Template",
    "A template as stored",
    ("name", "params", "allow", "public", "cache_control", "version", "updated_at"),
    name=_strings(""),
    params=TEMPLATE_PARAMS,
    allow=TEMPLATE.fields["allow"],
    public=Bool(),
    cache_control=_nullable("string", ""),
    version=Int(1, BIG, "increases on every change"),
    updated_at=_strings("RFC 3339"),
)
URL_ANSWER = answer(
    "DeliveryUrl",
    "A ready delivery URL",
    ("url", "expires_at"),
    url=_strings("absolute"),
    expires_at=_nullable("integer", "unix seconds, or null: never"),
    srcset=_strings("when widths was given"),
)
PURGE_ANSWER = answer(
    "Purged",
    "How many cached variants were dropped",
    ("purged",),
    purged=Int(0, BIG),
    edge_purged=Int(0, BIG, "nginx cache entries removed (IMGCDN_EDGE_PURGE_URLS)"),
)
KEY = answer(
    "Key",
    "An API key, without its secret",
    ("id", "name", "state"),
    id=_strings(""),
    name=_strings(""),
    state=Choice(("active", "disabled", "expired")),
    rate_per_s=_KEY_FIELDS["rate_per_s"],
    burst=_KEY_FIELDS["burst"],
    daily_quota=_nullable("integer", "requests per UTC day"),
    expires_at=_nullable("string", "RFC 3339"),
    scopes=_KEY_FIELDS["scopes"],
    prefix=_strings(""),
    created_at=_strings("RFC 3339"),
    last_used_at=_nullable("string", "RFC 3339"),
)
KEY_CREATED = Obj(
    {**KEY.fields, "key": _strings("the secret: shown this once, only its hash is stored")},
    frozenset({"id", "key"}),
    "A new key, with its secret",
    title="KeyCreated",
)


def page(title: str, item: Obj) -> Obj:
    return answer(
        title,
        "One page; pass next_cursor as ?cursor= for the next",
        ("items", "next_cursor"),
        items=Array(item, BIG),
        next_cursor=_nullable("string", "null on the last page"),
    )


ANY_OBJECT = described({"type": "object"}, "")

# --- delivery URLs (SPEC §2): GET /t/{template}/{id}?... ----------------------------------
# spec.py parses these from URL text; tests/test_openapi.py holds the names equal to its
# PARAM_NAMES and checks each documented bound against parse_params.
DELIVERY_QUERY: dict[str, Field] = {
    "w": Int(1, 8192, "target width in CSS pixels (max IMGCDN_MAX_OUTPUT_SIDE)"),
    "h": Int(1, 8192, "target height in CSS pixels"),
    "dpr": Number(1, 4, "multiplies w and h; up to 2 decimals"),
    "fit": Choice(FITS, "cover (default with w and h) crops; contain pads; fill stretches"),
    "enlarge": Choice(("0", "1"), "allow upscaling"),
    "g": described(
        {"oneOf": [{"enum": list(GRAVITIES)}, {"type": "string", "pattern": "^fp:"}]},
        "what cover keeps; face: detected faces (else smart); fp:X,Y: a focal point as fractions",
    ),
    "crop": described({"type": "string", "pattern": "^[0-9]+,[0-9]+,[0-9]+,[0-9]+$"}, "X,Y,W,H"),
    "rot": Number(-360, 360, "degrees; multiples of 90 are lossless"),
    "flip": Choice(("h", "v", "hv")),
    "fmt": Choice(FMT_VALUES, "auto negotiates from Accept"),
    "q": Int(1, 100, "quality"),
    "maxbytes": Int(1024, 50_000_000, "lower quality until it fits, else 422"),
    "bg": described(
        {"type": "string", "pattern": "^[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$"}, "RRGGBB[AA]"
    ),
    "blur": Number(0.3, 100, "sigma"),
    "sharpen": Number(0.3, 10, "sigma"),
    "blur_faces": Number(0.3, 100, "blur every detected face (at least 1/6 of its side)"),
    "trim": Int(1, 100, "threshold"),
    "meta": Choice(("strip", "keep")),
    "progressive": Choice(("0", "1")),
    "anim": Choice(("0", "1")),
    "v": Text(64, "version tag: part of the cache key", r"[A-Za-z0-9._-]{1,64}", "a version"),
    "exp": Int(0, MAX_EXP, "expiry of a signed URL, unix seconds"),
    "sig": described({"type": "string"}, "signature (SPEC §3); must be the last parameter"),
    "bg_remove": Choice(("0", "1"), "cut out the subject: alpha, or over bg (white) in JPEG"),
}
PAGING: dict[str, Field] = {
    "cursor": described({"type": "string"}, "next_cursor of the previous page"),
    "limit": Int(1, 1000, "items per page (default 100)"),
}
MODERATION = answer(
    "Moderation",
    "Scores in 0..1 per category (nsfw: Open-NSFW's P(NSFW)); flagged at nsfw >= 0.8",
    ("flagged", "categories"),
    flagged=Bool(),
    categories=Obj({"nsfw": Number(0, 1, "P(NSFW)")}, frozenset({"nsfw"})),
)

_BOX = answer(
    "TextBox",
    "Where a line is, in the upright image's pixels",
    ("x", "y", "width", "height"),
    x=Int(0, BIG),
    y=Int(0, BIG),
    width=Int(0, BIG),
    height=Int(0, BIG),
)
OCR_LINE = answer(
    "TextLine",
    "One line of text",
    ("text", "confidence", "box"),
    text=_strings("the line's words, one space apart"),
    confidence=Number(0, 1, "tesseract: the mean of its words'; rapidocr: the line's score"),
    box=_BOX,
)
OCR_RESULT = answer(
    "OcrResult",
    "The text read (lines joined by newlines), its lines in reading order, the language "
    "and the engine used",
    ("text", "lines", "language", "engine"),
    text=_strings("every line, one per row"),
    lines=Array(OCR_LINE, BIG, "in reading order", 0),
    language=_strings("eng, eng+deu, ..."),
    engine=Choice(("tesseract", "rapidocr"), "the one that read it (what auto picked)"),
)
