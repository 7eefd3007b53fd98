"""Properties of template allow-lists (server/templates.py), searched by hypothesis: an
allow-list lets through exactly the URLs it describes, and a {min, max, step} range is
enforced exactly, in decimal arithmetic on the numbers as the template's JSON wrote them."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from conftest import AUTH, attempt, error_body, upload
from grammar import INVALID, NAMES, VALID
from hypothesis import assume, given
from hypothesis import strategies as st

from server.errors import ParamNotAllowed
from server.spec import Limits
from server.templates import ALLOWABLE, NUMERIC, Constraint, Template, parse_template

LIMITS = Limits()


def exact(x: float) -> Fraction:
    """A JSON number as the decimal it was written as (for a float: its shortest repr)."""
    return Fraction(repr(x)) if isinstance(x, float) else Fraction(x)


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
