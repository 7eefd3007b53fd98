"""Named templates: default params, what unsigned URLs may override, and a watermark.

A template's params go through the same parser as URL params (spec.parse_params), so a
value means the same in both places. Every change bumps `version`, and the variant key
includes it: a new version never serves an old variant. Templates live in Storage (so
replicas sharing a bucket share them) and are cached per process for IMGCDN_META_TTL_S.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import orjson
from cachetools import TTLCache

from server.errors import (
    AssetNotFound,
    InvalidParam,
    InvalidTemplate,
    ParamNotAllowed,
    StorageUnavailable,
    TemplateNotFound,
)
from server.imaging import watermark as wm
from server.names import validate_template_name
from server.spec import PARAM_NAMES, Limits, parse_params
from server.storage.base import Storage

KIND = "templates"
ALLOWABLE = PARAM_NAMES - {"sig", "exp"}
NUMERIC = frozenset(
    {"w", "h", "dpr", "q", "rot", "blur", "sharpen", "trim", "maxbytes", "blur_faces"}
)
MAX_CACHE_CONTROL = 256
_NUMBER = re.compile(r"-?\d{1,20}(\.\d{1,20})?", re.ASCII)

_FORMAT_NAMES = {"jpg": "jpeg", "jpeg": "jpg"}


@dataclass(frozen=True, slots=True)
class Constraint:
    """What an unsigned URL may set a parameter to: a range with a step, or a list."""

    min: float | None = None
    max: float | None = None
    step: float | None = None
    values: tuple[str, ...] | None = None

    def check(self, name: str, raw: str) -> None:
        if self.values is not None:
            # fmt=jpg is another name for jpeg (spec.py): allowing one allows the other.
            same = _FORMAT_NAMES.get(raw, raw) if name == "fmt" else raw
            if raw not in self.values and same not in self.values:
                raise ParamNotAllowed(name, f"{name} must be one of {', '.join(self.values)}")
            return
        # Every number a parameter takes is written so; then Fraction makes the bounds and
        # the step exact: in floats, 16.000001 is no multiple of 0.000001.
        if not _NUMBER.fullmatch(raw):
            raise ParamNotAllowed(name, f"{name} must be a number here")
        value = Fraction(raw)
        lo = self.min if self.min is not None else float("-inf")
        hi = self.max if self.max is not None else float("inf")
        if (self.min is not None and value < _exact(self.min)) or (
            self.max is not None and value > _exact(self.max)
        ):
            raise ParamNotAllowed(name, f"{name} must be in {lo:g}..{hi:g}")
        if self.step and (value - _exact(self.min or 0)) % _exact(self.step):
            raise ParamNotAllowed(name, f"{name} must be a multiple of {self.step:g}")


def _exact(number: float) -> Fraction:
    """A JSON number as the decimal written in the template (a float's shortest repr)."""
    return Fraction(repr(number))


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    params: dict[str, str] = field(default_factory=dict)
    allow: dict[str, Constraint | None] = field(default_factory=dict)
    public: bool = False
    cache_control: str | None = None
    watermark: wm.Watermark | None = None
    body: Any = None  # the PUT body as given: GET answers with what was PUT
    version: int = 0
    updated_at: str = ""

    def check_allowed(self, url_params: dict[str, str]) -> None:
        """An unsigned URL may only set what `allow` lists, within its constraints."""
        for name, raw in url_params.items():
            if name not in self.allow:
                raise ParamNotAllowed(name, f"{name} cannot be set on an unsigned URL here")
            constraint = self.allow[name]
            if constraint is not None:
                constraint.check(name, raw)

    def to_json(self) -> dict[str, Any]:
        body = self.body or {}
        return {
            "name": self.name,
            "params": body.get("params") or {},
            "allow": body.get("allow") or [],
            "public": self.public,
            "cache_control": self.cache_control,
            "version": self.version,
            "updated_at": self.updated_at,
        }


NO_TEMPLATE = Template(name="_")


def parse_template(name: str, body: Any, limits: Limits, version: int) -> Template:
    """A PUT body -> Template, or InvalidTemplate naming the field."""
    if not isinstance(body, dict):
        raise InvalidTemplate("body", "a template is a JSON object")
    unknown = set(body) - {"params", "allow", "public", "cache_control"}
    if unknown:
        raise InvalidTemplate(sorted(unknown)[0], f"unknown field {sorted(unknown)[0]!r}")
    raw_params = body.get("params")
    raw_params = {} if raw_params is None else raw_params
    if not isinstance(raw_params, dict):
        raise InvalidTemplate("params", "params is an object of parameter -> value")
    raw_wm = raw_params.get("wm")
    params = {k: scalar(f"params.{k}", v) for k, v in raw_params.items() if k != "wm"}
    for forbidden in ("sig", "exp"):
        if forbidden in params:
            raise InvalidTemplate(f"params.{forbidden}", f"{forbidden} belongs on URLs only")
    try:
        parse_params(params, limits)
        watermark = wm.parse(raw_wm) if raw_wm is not None else None
    except InvalidParam as exc:
        raise InvalidTemplate(f"params.{exc.param}", exc.message) from None
    public = body.get("public", False)
    if not isinstance(public, bool):
        raise InvalidTemplate("public", "public is true or false")
    return Template(
        name=name,
        params=params,
        allow=_parse_allow(body.get("allow"), limits),
        public=public,
        cache_control=_cache_control(body.get("cache_control")),
        watermark=watermark,
        body=body,
        version=version,
        updated_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )


def scalar(field_name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise InvalidTemplate(field_name, "a parameter value is a string or a number")


def _parse_allow(raw: Any, limits: Limits) -> dict[str, Constraint | None]:
    if raw is None:
        return {}
    if isinstance(raw, list):
        if not all(isinstance(name, str) for name in raw):
            raise InvalidTemplate("allow", "allow is a list of parameter names")
        raw = dict.fromkeys(raw)
    if not isinstance(raw, dict):
        raise InvalidTemplate("allow", "allow is a list of names, or an object name -> constraint")
    allow: dict[str, Constraint | None] = {}
    for name, spec in raw.items():
        where = f"allow.{name}"
        if not isinstance(name, str) or name not in ALLOWABLE:
            raise InvalidTemplate(where, f"{name!r} is not a parameter a URL can set")
        if spec is None or spec is True:
            allow[name] = None
        elif isinstance(spec, list) and spec:
            values = tuple(scalar(where, v) for v in spec)
            for value in values:
                try:
                    parse_params({name: value}, limits)
                except InvalidParam as exc:
                    raise InvalidTemplate(where, exc.message) from None
            allow[name] = Constraint(values=values)
        elif isinstance(spec, dict) and name in NUMERIC:
            allow[name] = _range(where, spec)
        else:
            raise InvalidTemplate(
                where, "a constraint is a list of values, or {min, max, step} for a number"
            )
    return allow


def _range(where: str, spec: dict[str, Any]) -> Constraint:
    if set(spec) - {"min", "max", "step"} or not spec:
        raise InvalidTemplate(where, "a range has min, max and optional step")
    for key, value in spec.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidTemplate(f"{where}.{key}", f"{key} must be a number")
    lo, hi, step = spec.get("min"), spec.get("max"), spec.get("step")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidTemplate(where, "min must not exceed max")
    if step is not None and not 1e-6 <= step <= 1e9:
        raise InvalidTemplate(f"{where}.step", "step must be in 0.000001..1000000000")
    return Constraint(min=lo, max=hi, step=step)


def _cache_control(raw: Any) -> str | None:
    if raw is None:
        return None
    if (
        not isinstance(raw, str)
        or not raw
        or len(raw) > MAX_CACHE_CONTROL
        or not raw.isascii()
        or not raw.isprintable()
    ):
        raise InvalidTemplate("cache_control", "cache_control is a printable header value or null")
    return raw


def _definable(name: str) -> None:
    validate_template_name(name)
    if name == "_":
        raise InvalidTemplate("name", "_ means 'no template' and cannot be defined")


class TemplateRegistry:
    def __init__(self, storage: Storage, ttl_s: float) -> None:
        self.storage = storage
        self._cache: TTLCache[str, Template] = TTLCache(maxsize=1000, ttl=max(ttl_s, 1e-6))
        self._last: dict[str, Template] = {}

    async def get(self, name: str, limits: Limits) -> Template:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        try:
            raw = await self.storage.get_doc(KIND, name)
        except StorageUnavailable:
            last = self._last.get(name)  # stale-if-error, as for asset metadata
            if last is None:
                raise
            return last
        if raw is None:
            raise TemplateNotFound(name)
        stored = orjson.loads(raw)
        template = parse_template(name, stored["body"], limits, stored["version"])
        template = replace(template, updated_at=stored["updated_at"])
        self._cache[name] = template
        self._last[name] = template
        return template

    async def put(self, name: str, body: Any, limits: Limits) -> tuple[Template, bool]:
        _definable(name)  # before the name reaches storage as a file name or key
        previous = await self.storage.get_doc(KIND, name)
        version = orjson.loads(previous)["version"] + 1 if previous else 1
        template, doc = await self._checked(name, body, limits, version)
        await self.storage.put_doc(KIND, name, doc)
        self._cache[name] = self._last[name] = template
        return template, previous is None

    async def create(self, name: str, body: Any, limits: Limits) -> Template | None:
        """put() for a name not in use, else None: a create-only write, one winner of N."""
        _definable(name)
        template, doc = await self._checked(name, body, limits, 1)
        if not await self.storage.put_doc(KIND, name, doc, exclusive=True):
            return None
        self._cache[name] = self._last[name] = template
        return template

    async def _checked(
        self, name: str, body: Any, limits: Limits, version: int
    ) -> tuple[Template, bytes]:
        """The template and the document to store, once the body is valid."""
        template = parse_template(name, body, limits, version)
        mark = template.watermark
        if mark is not None and mark.asset is not None:
            try:
                await self.storage.head(mark.asset)
            except AssetNotFound:
                raise InvalidTemplate(
                    "params.wm.asset", f"no asset {mark.asset!r}: upload the watermark first"
                ) from None
        doc = {"body": body, "version": version, "updated_at": template.updated_at}
        return template, orjson.dumps(doc)

    async def delete(self, name: str) -> bool:
        self._cache.pop(name, None)
        self._last.pop(name, None)
        return await self.storage.delete_doc(KIND, name)

    async def page(
        self, after: str | None, limit: int, limits: Limits
    ) -> tuple[list[Template], str | None]:
        names = [n for n in await self.storage.list_docs(KIND) if after is None or n > after]
        chosen = names[:limit]
        items = [await self.get(n, limits) for n in chosen]
        return items, (chosen[-1] if len(names) > limit else None)
