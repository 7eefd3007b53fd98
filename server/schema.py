"""Request fields described once: each validates a JSON value and writes its JSON Schema.

The processing API's handlers validate with these definitions, and /v1/openapi.json is
generated from the same objects, so the document cannot drift from what is enforced.
Values may come from JSON or, in a multipart request, as form text: `check(..., text=True)`
reads "800" as 800 and "true" as True, and nothing else changes. A failure is a 400 naming
the field by its full path as the client wrote it (`ops[2].params.width`, `image.base64`).
Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from server.errors import InvalidParam

Schema = dict[str, Any]
# Bounds that are settings (IMGCDN_MAX_OUTPUT_SIDE as "output_side"), set per request by the
# app: a field with `cap` states and enforces this server's bound, not the widest possible.
CAPS: ContextVar[Mapping[str, int]] = ContextVar("schema_caps", default=MappingProxyType({}))
_DIGITS = re.compile(r"-?[0-9]{1,15}", re.ASCII)
_DECIMAL = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,15})?([eE][-+]?[0-9]{1,3})?", re.ASCII)


def _got(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Field:
    """One value's rule. `check` returns the value in its Python form, or raises."""

    description: str = ""

    def check(self, value: object, path: str, text: bool = False) -> Any:
        raise NotImplementedError

    def schema(self) -> Schema:
        raise NotImplementedError

    def _described(self, schema: Schema) -> Schema:
        return {**schema, "description": self.description} if self.description else schema


@dataclass(frozen=True)
class Int(Field):
    lo: int
    hi: int
    description: str = ""
    cap: str | None = None  # a CAPS name lowering `hi` to this server's setting

    @property
    def top(self) -> int:
        return min(self.hi, CAPS.get().get(self.cap, self.hi)) if self.cap else self.hi

    def check(self, value: object, path: str, text: bool = False) -> int:
        if text and isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
            value = int(value.strip())
        # JSON has one number type: 800.0 is the integer 800, 800.5 is not an integer.
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParam(path, f"{path} must be an integer, got {_got(value)}")
        top = self.top  # this server's cap (IMGCDN_MAX_OUTPUT_SIDE...), checked here first
        if not self.lo <= value <= top:
            raise InvalidParam(path, f"{path} must be an integer in {self.lo}..{top}, got {value}")
        return value

    def schema(self) -> Schema:
        return self._described({"type": "integer", "minimum": self.lo, "maximum": self.top})


@dataclass(frozen=True)
class Number(Field):
    lo: float
    hi: float
    description: str = ""

    def check(self, value: object, path: str, text: bool = False) -> float:
        if text and isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            value = float(value.strip())
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidParam(path, f"{path} must be a number, got {_got(value)}")
        number = float(value)
        if not math.isfinite(number) or not self.lo <= number <= self.hi:
            raise InvalidParam(
                path, f"{path} must be a number in {self.lo:g}..{self.hi:g}, got {_got(value)}"
            )
        return number

    def schema(self) -> Schema:
        return self._described({"type": "number", "minimum": self.lo, "maximum": self.hi})


@dataclass(frozen=True)
class Bool(Field):
    description: str = ""

    def check(self, value: object, path: str, text: bool = False) -> bool:
        if text and isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        if not isinstance(value, bool):
            raise InvalidParam(path, f"{path} must be true or false, got {_got(value)}")
        return value

    def schema(self) -> Schema:
        return self._described({"type": "boolean"})


@dataclass(frozen=True)
class Choice(Field):
    """One of `values`; `aliases` are other spellings accepted for them (jpg -> jpeg)."""

    values: tuple[str, ...]
    description: str = ""
    aliases: Mapping[str, str] = field(default_factory=dict)

    def check(self, value: object, path: str, text: bool = False) -> str:
        if isinstance(value, str):
            if value in self.values:
                return value
            if value in self.aliases:
                return self.aliases[value]
        offered = ", ".join((*self.values, *self.aliases))
        raise InvalidParam(path, f"{path} must be one of {offered}, got {_got(value)}")

    def schema(self) -> Schema:
        return self._described({"type": "string", "enum": [*self.values, *self.aliases]})


@dataclass(frozen=True)
class Text(Field):
    """A string within `max_length`, matching `pattern` when one is given."""

    max_length: int
    description: str = ""
    pattern: str | None = None
    what: str = ""  # the pattern in words, for the message
    min_length: int = 1

    def check(self, value: object, path: str, text: bool = False) -> str:
        if not isinstance(value, str):
            raise InvalidParam(path, f"{path} must be a string, got {_got(value)}")
        if not self.min_length <= len(value) <= self.max_length:
            raise InvalidParam(
                path, f"{path} must be {self.min_length}..{self.max_length} characters long"
            )
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise InvalidParam(
                path, f"{path} must be {self.what or self.pattern}, got {_got(value)}"
            )
        return value

    def schema(self) -> Schema:
        out: Schema = {"type": "string", "minLength": self.min_length, "maxLength": self.max_length}
        if self.pattern is not None:
            out["pattern"] = f"^{self.pattern}$"
        return self._described(out)


@dataclass(frozen=True)
class Custom(Field):
    """A value with its own parser (an image reference, a colour): `parse` validates and
    converts, `json_schema` describes it. Kept for the few values the scalars above miss."""

    parse: Callable[[object, str, bool], Any]
    json_schema: Schema
    description: str = ""

    def check(self, value: object, path: str, text: bool = False) -> Any:
        return self.parse(value, path, text)

    def schema(self) -> Schema:
        return self._described(dict(self.json_schema))


@dataclass(frozen=True)
class Obj(Field):
    """A JSON object with known fields; an unknown one is a 400 naming it. Absent optional
    fields are absent from the result: defaults belong to the code that uses them."""

    fields: Mapping[str, Field]
    required: frozenset[str] = frozenset()
    description: str = ""
    title: str | None = None  # the component name in OpenAPI, when it is shared
    ignored: frozenset[str] = frozenset()  # accepted and dropped (credentials, for one)

    def check(self, value: object, path: str, text: bool = False) -> dict[str, Any]:
        if not isinstance(value, dict):
            where = f"{path} must be" if path else "the body must be"
            raise InvalidParam(path or "body", f"{where} a JSON object, got {_got(value)}")
        out: dict[str, Any] = {}
        for name, raw in value.items():
            sub = f"{path}.{name}" if path else str(name)
            rule = self.fields.get(name)
            if rule is None:
                if name in self.ignored:
                    continue
                known = ", ".join(self.fields)
                raise InvalidParam(sub, f"unknown field {sub}; known: {known}")
            if raw is None and name not in self.required:
                continue  # null: as if absent, as most JSON clients write "not set"
            out[name] = rule.check(raw, sub, text)
        for name in sorted(self.required - out.keys()):
            sub = f"{path}.{name}" if path else name
            raise InvalidParam(sub, f"{sub} is required")
        return out

    def schema(self) -> Schema:
        out: Schema = {
            "type": "object",
            "properties": {name: rule.schema() for name, rule in self.fields.items()},
            "additionalProperties": False,
        }
        if self.required:
            out["required"] = sorted(self.required)
        return self._described(out)


@dataclass(frozen=True)
class Array(Field):
    item: Field
    max_items: int
    description: str = ""
    min_items: int = 0

    def check(self, value: object, path: str, text: bool = False) -> list[Any]:
        if not isinstance(value, list):
            raise InvalidParam(path, f"{path} must be a JSON array, got {_got(value)}")
        if not self.min_items <= len(value) <= self.max_items:
            raise InvalidParam(
                path, f"{path} must have {self.min_items}..{self.max_items} items, got {len(value)}"
            )
        return [self.item.check(v, f"{path}[{i}]", text) for i, v in enumerate(value)]

    def schema(self) -> Schema:
        return self._described(
            {
                "type": "array",
                "items": self.item.schema(),
                "minItems": self.min_items,
                "maxItems": self.max_items,
            }
        )
