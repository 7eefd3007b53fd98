"""Properties of template bodies (server/templates.py), searched by hypothesis: any JSON
body is a template, or a 422 naming a field that a model of the README's rules finds wrong
in it. Allow-lists at work are in test_properties_allow.py."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from conftest import AUTH, attempt, error_body
from grammar import INVALID, NAMES, VALID
from hypothesis import given
from hypothesis import strategies as st

from server.errors import ImgcdnError, InvalidParam, InvalidTemplate
from server.imaging import watermark as wm
from server.spec import Limits, parse_params
from server.templates import ALLOWABLE, NUMERIC, parse_template

LIMITS = Limits()
JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)
JSON = st.recursive(
    JSON_SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner)
)
JSON_NUMBER = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(-1e6, 1e6),
    st.floats(allow_nan=False, allow_infinity=False),
)


def number(raw: str) -> st.SearchStrategy[Any]:
    """A grammar value as a template may write it: as text, or as a JSON number."""
    choices: list[Any] = [raw]
    if raw.isascii() and raw.lstrip("-").isdigit():
        choices.append(int(raw))
    return st.sampled_from(choices)


def param_value(name: str) -> st.SearchStrategy[Any]:
    return st.one_of(VALID[name].flatmap(number), VALID[name], INVALID[name], JSON_SCALAR, JSON)


WATERMARK = st.one_of(
    st.sampled_from(["logo.png", "a/../b", ""]),
    st.fixed_dictionaries(
        {"text": st.text(max_size=8)},
        optional={
            "position": st.sampled_from(["se", "tile", "middle"]),
            "opacity": JSON_NUMBER,
            "color": st.sampled_from(["ffffff", "fff", "zzzzzz", "ff ff f"]),
            "margin": st.one_of(st.integers(-5, 2000), JSON_SCALAR),
        },
    ),
    JSON,
)
RANGE = st.fixed_dictionaries(
    {},
    optional={
        "min": st.one_of(JSON_NUMBER, JSON_SCALAR),
        "max": st.one_of(JSON_NUMBER, JSON_SCALAR),
        "step": st.one_of(st.sampled_from([1, 10, 100, 0.5, 0.25, 1e-6, 1e9, 0, -1]), JSON_SCALAR),
        "top": JSON_SCALAR,
    },
)
NAME = st.one_of(
    st.sampled_from(NAMES), st.sampled_from(["wm", "foo", "W", ""]), st.text(max_size=4)
)


def constraint(name: str) -> st.SearchStrategy[Any]:
    values = VALID[name] if name in VALID else st.text(max_size=4)
    return st.one_of(
        st.sampled_from([None, True, False, [], {}]),
        st.lists(st.one_of(values.flatmap(number), values, JSON_SCALAR), min_size=1, max_size=3),
        RANGE,
        JSON,
    )


@st.composite
def template_bodies(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 20)) == 0:
        return draw(JSON)
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        names = draw(st.lists(NAME, unique=True, max_size=5))
        params = {
            n: draw(WATERMARK if n == "wm" else param_value(n) if n in VALID else JSON)
            for n in names
        }
        body["params"] = draw(st.sampled_from([params, params, params, None, [], 0, "", False]))
    if draw(st.booleans()):
        names = draw(st.lists(NAME, unique=True, max_size=4))
        as_list = draw(st.lists(st.one_of(NAME, JSON), max_size=4))
        as_dict = {n: draw(constraint(n)) for n in names}
        body["allow"] = draw(st.sampled_from([as_dict, as_dict, as_list, None, 0, "", False, "w"]))
    if draw(st.booleans()):
        body["public"] = draw(st.one_of(st.booleans(), JSON_SCALAR))
    if draw(st.booleans()):
        cache = st.sampled_from([None, "public, max-age=60", "no-store", "", "a\r\nb", "x" * 300])
        body["cache_control"] = draw(st.one_of(cache, JSON_SCALAR))
    if draw(st.integers(0, 10)) == 0:
        body[draw(st.text(max_size=6))] = draw(JSON)
    return body


# --- a model of what a valid template is, from the README's description of the fields ---


def problems(body: Any) -> set[str]:
    """The fields that make `body` an invalid template (empty: it is valid)."""
    if not isinstance(body, dict):
        return {"body"}
    unknown = set(body) - {"params", "allow", "public", "cache_control"}
    if unknown:
        return unknown
    found = params_problems(body.get("params")) | allow_problems(body.get("allow"))
    if "public" in body and not isinstance(body["public"], bool):
        found.add("public")
    cache = body.get("cache_control")
    if cache is not None and not (
        isinstance(cache, str)
        and 1 <= len(cache) <= 256
        and cache.isascii()
        and cache.isprintable()
    ):
        found.add("cache_control")
    return found


def is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float))  # bool is an int


def as_param(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def params_problems(params: Any) -> set[str]:
    if params is None:
        return set()
    if not isinstance(params, dict):
        return {"params"}
    found = {f"params.{k}" for k, v in params.items() if k != "wm" and not is_scalar(v)}
    found |= {f"params.{k}" for k in ("sig", "exp") if k in params}
    if not found:  # every value is a scalar: the URL parser judges them
        scalars = {k: as_param(v) for k, v in params.items() if k != "wm"}
        spec = attempt(lambda: parse_params(scalars, LIMITS))
        if isinstance(spec, ImgcdnError):
            found.add(f"params.{spec.param}")
    if params.get("wm") is not None:  # null: no watermark, as null is "none" elsewhere
        mark = attempt(lambda: wm.parse(params["wm"]))
        if isinstance(mark, ImgcdnError):
            found.add(f"params.{mark.param}")
    return found


def allow_problems(allow: Any) -> set[str]:
    if allow is None:
        return set()
    if isinstance(allow, list):
        if not all(isinstance(n, str) for n in allow):
            return {"allow"}
        allow = dict.fromkeys(allow)
    if not isinstance(allow, dict):
        return {"allow"}
    found: set[str] = set()
    for name, spec in allow.items():
        where = f"allow.{name}"
        if name not in ALLOWABLE:
            found.add(where)
        elif isinstance(spec, list) and spec:
            for value in spec:
                try:
                    if not is_scalar(value):
                        raise InvalidParam(name, "not a scalar")
                    parse_params({name: as_param(value)}, LIMITS)
                except InvalidParam:
                    found.add(where)
        elif isinstance(spec, dict) and name in NUMERIC:
            found |= range_problems(where, spec)
        elif spec is not None and spec is not True:
            found.add(where)
    return found


def range_problems(where: str, spec: dict[str, Any]) -> set[str]:
    if not spec or set(spec) - {"min", "max", "step"}:
        return {where}
    found = {
        f"{where}.{k}"
        for k, v in spec.items()
        if isinstance(v, bool) or not isinstance(v, (int, float))
    }
    if found:
        return found
    lo, hi, step = spec.get("min"), spec.get("max"), spec.get("step")
    if lo is not None and hi is not None and lo > hi:
        found.add(where)
    if step is not None and not Fraction("1e-6") <= exact(step) <= 10**9:
        found.add(f"{where}.step")
    return found


def exact(x: float) -> Fraction:
    """A JSON number as the decimal it was written as (for a float: its shortest repr)."""
    return Fraction(repr(x)) if isinstance(x, float) else Fraction(x)


@given(template_bodies())
def test_any_body_is_a_template_or_a_422_naming_a_field_that_is_wrong_in_it(body):
    wrong = problems(body)
    template = attempt(lambda: parse_template("card", body, LIMITS, version=1))
    if isinstance(template, ImgcdnError):
        assert isinstance(template, InvalidTemplate) and template.status == 422
        assert template.param in wrong, (template.param, template.message, wrong)
        return
    assert not wrong, wrong
    assert template.name == "card" and template.version == 1


# --- what the properties found, pinned -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"allow": [[]]}, "allow"),  # found by the property: a TypeError, a 500
        ({"allow": [{"w": 1}]}, "allow"),
        ({"allow": [None]}, "allow"),  # found by the property: named "allow.None"
        ({"allow": ["w", 5]}, "allow"),
        ({"params": []}, "params"),  # found by the property: falsy junk read as "none"
        ({"params": 0}, "params"),
        ({"params": ""}, "params"),
        ({"params": False}, "params"),
        ({"allow": 0}, "allow"),
        ({"allow": ""}, "allow"),
        ({"allow": False}, "allow"),
    ],
)
def test_a_params_or_allow_of_the_wrong_shape_is_a_422_naming_it(client, body, field):
    r = client.put("/v1/templates/card", json=body, headers=AUTH)
    assert error_body(r, 422)["param"] == field


@pytest.mark.parametrize("body", [{"params": None, "allow": None}, {"params": {}, "allow": []}])
def test_null_or_empty_params_and_allow_mean_none(body):
    template = parse_template("card", body, LIMITS, version=1)
    assert (template.params, template.allow) == ({}, {})
