"""Properties of templates (server/templates.py), searched by hypothesis: any JSON body is a
template or a 422 naming a field that is wrong in it; an allow-list lets through exactly
the URLs it describes, and a {min, max, step} range is enforced exactly, in decimal."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from conftest import AUTH, attempt, error_body, upload
from grammar import INVALID, NAMES, VALID
from hypothesis import assume, given
from hypothesis import strategies as st

from server.errors import ImgcdnError, InvalidParam, InvalidTemplate, ParamNotAllowed
from server.imaging import watermark as wm
from server.spec import Limits, parse_params
from server.templates import ALLOWABLE, NUMERIC, Constraint, Template, parse_template

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
    if "wm" in params:
        mark = attempt(lambda: wm.parse(params["wm"]))
        if isinstance(mark, ImgcdnError):
            found.add(f"params.{mark.param}")
    if not found:
        scalars = {k: as_param(v) for k, v in params.items() if k != "wm"}
        spec = attempt(lambda: parse_params(scalars, LIMITS))
        if isinstance(spec, ImgcdnError):
            found.add(f"params.{spec.param}")
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


# --- allow-lists ---------------------------------------------------------------------


def satisfies(raw: str, c: Constraint) -> bool:
    """The constraint in exact decimal arithmetic."""
    if c.values is not None:
        return raw in c.values
    value = Fraction(raw)
    if (c.min is not None and value < exact(c.min)) or (c.max is not None and value > exact(c.max)):
        return False
    return c.step is None or (value - exact(c.min or 0)) % exact(c.step) == 0


def decimal(x: Fraction | float | int) -> Decimal:
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(x)


@st.composite
def ranges_and_values(draw: st.DrawFn) -> tuple[Constraint, str]:
    """A {min, max, step} and a value on a step, just off one, at or past an end."""
    lo = draw(st.none() | st.integers(-400, 8192) | st.decimals(-400, 8192, places=3).map(float))
    step = draw(
        st.none()
        | st.sampled_from([1, 2, 10, 100, 0.5, 0.25, 0.1, 0.01, 0.001, 1e-6, 1e9])
        | st.decimals("0.001", 1000, places=3).map(float)
    )
    span = draw(st.none() | st.integers(0, 10_000))
    hi = None if span is None or lo is None or step is None else decimal(lo) + span * decimal(step)
    hi_value = float(hi) if hi is not None else draw(st.none() | st.integers(0, 50_000_000))
    assume(lo is None or hi_value is None or lo <= hi_value)
    base = decimal(lo) if lo is not None else Decimal(0)
    on_step = base + draw(st.integers(-5, 20_000)) * (decimal(step) if step else Decimal(1))
    value = on_step + draw(
        st.sampled_from([0, 0, 0, Decimal("0.001"), Decimal("-0.001"), Decimal("1e-6")])
    )
    text = format(value.normalize(), "f") if value else "0"
    return Constraint(min=lo, max=hi_value, step=step), text


@given(ranges_and_values())
def test_a_range_lets_a_value_through_exactly_when_it_is_in_it_and_on_a_step(case):
    constraint, raw = case
    refused = attempt(lambda: constraint.check("w", raw))
    if refused is None:
        assert satisfies(raw, constraint), (constraint, raw)
    else:
        assert isinstance(refused, ParamNotAllowed) and (refused.param, refused.status) == (
            "w",
            403,
        )
        assert not satisfies(raw, constraint), (constraint, raw)


@given(
    ranges_and_values(), st.sampled_from(NAMES).flatmap(lambda n: st.one_of(VALID[n], INVALID[n]))
)
def test_a_range_refuses_any_other_text_with_a_403_never_a_crash(case, raw):
    constraint, _ = case
    refused = attempt(lambda: constraint.check("w", raw))
    assert refused is None or (isinstance(refused, ParamNotAllowed) and refused.param == "w")


@st.composite
def allowing_templates(draw: st.DrawFn) -> tuple[Template, dict[str, str]]:
    """A template allowing a few parameters, and a URL's params that stay inside it."""
    names = draw(st.lists(st.sampled_from(sorted(ALLOWABLE)), unique=True, min_size=1, max_size=4))
    allow: dict[str, Any] = {}
    url: dict[str, str] = {}
    for name in names:
        kind = draw(
            st.sampled_from(["any", "values", "range"] if name in NUMERIC else ["any", "values"])
        )
        if kind == "any":
            allow[name], url[name] = None, draw(VALID[name])
        elif kind == "values":
            allow[name] = draw(st.lists(VALID[name], min_size=1, max_size=3, unique=True))
            url[name] = draw(st.sampled_from(allow[name]))
        else:
            value = draw(VALID[name])
            allow[name] = {"min": float(value), "max": float(value) + 10, "step": 0.01}
            url[name] = value
    template = parse_template("card", {"allow": allow}, LIMITS, version=1)
    return template, url


@given(allowing_templates(), st.sampled_from(sorted(ALLOWABLE)), st.data())
def test_a_url_inside_the_allow_list_passes_and_one_more_parameter_is_a_403_naming_it(
    case, extra, data
):
    template, url = case
    template.check_allowed(url)
    if extra not in template.allow:
        with pytest.raises(ParamNotAllowed) as info:
            template.check_allowed({**url, extra: data.draw(VALID[extra])})
        assert info.value.param == extra


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


@pytest.mark.parametrize(
    ("constraint", "raw", "allowed"),
    [
        ({"min": 16, "step": 1e-6}, "16.000001", True),  # found by the property
        ({"step": 1}, "5.0000000001", False),  # within the old 1e-9 tolerance of a step
        ({"min": 0.3}, "0.29999999999999999", False),  # the same float as 0.3
        ({"min": 0.1, "step": 0.1}, "0.3", True),  # and floats' own 0.1 + 0.2 is no trouble
        ({"max": 0.3}, "0.30000000000000004", False),
    ],
)
def test_a_range_is_enforced_in_exact_decimal_arithmetic(constraint, raw, allowed):
    template = parse_template("card", {"allow": {"rot": constraint}}, LIMITS, version=1)
    if allowed:
        template.check_allowed({"rot": raw})
    else:
        with pytest.raises(ParamNotAllowed):
            template.check_allowed({"rot": raw})


@pytest.mark.parametrize("query", ["w=1e308", "w=1e%2B308"])
def test_a_huge_value_against_a_huge_stepped_range_is_a_403_not_a_500(client, query):
    upload(client, "photo.jpg", "photo.jpg")
    allow = {"w": {"min": -1e308, "max": 1e308, "step": 1}}
    r = client.put("/v1/templates/card", json={"allow": allow}, headers=AUTH)
    assert r.status_code == 201, r.text
    body = error_body(client.get(f"/t/card/photo.jpg?{query}"), 403)
    assert (body["code"], body["param"]) == ("param_not_allowed", "w")
