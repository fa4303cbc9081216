"""Cache-Control parsing (RFC 9111 §5.2)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.http.cachecontrol import DELTA_MAX, CacheControl, parse_cache_control


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, CacheControl()),
        ("", CacheControl()),
        ("max-age=60", CacheControl(max_age=60)),
        ("MAX-AGE=60", CacheControl(max_age=60)),  # names are case-insensitive
        ('max-age="60"', CacheControl(max_age=60)),  # quoted form accepted (§5.2)
        ("  max-age = 60 ", CacheControl(max_age=60)),
        ("s-maxage=10, max-age=60", CacheControl(max_age=60, s_maxage=10)),
        ("public, max-age=0", CacheControl(public=True, max_age=0)),
        ("no-store", CacheControl(no_store=True)),
        ("no-cache", CacheControl(no_cache=True)),
        (
            'no-cache="Set-Cookie, X-Trace"',
            CacheControl(no_cache_fields=("set-cookie", "x-trace")),
        ),
        ("no-cache=Set-Cookie", CacheControl(no_cache_fields=("set-cookie",))),
        ("private", CacheControl(private=True)),
        ('private="Set-Cookie"', CacheControl(private_fields=("set-cookie",))),
        (
            "must-revalidate, proxy-revalidate",
            CacheControl(must_revalidate=True, proxy_revalidate=True),
        ),
        (
            "max-age=1, stale-while-revalidate=30, stale-if-error=600",
            CacheControl(max_age=1, stale_while_revalidate=30, stale_if_error=600),
        ),
        ("immutable, max-age=31536000", CacheControl(immutable=True, max_age=31536000)),
        ("only-if-cached", CacheControl(only_if_cached=True)),
        ("max-stale", CacheControl(max_stale=math.inf)),
        ("max-stale=5", CacheControl(max_stale=5.0)),
        ("min-fresh=7", CacheControl(min_fresh=7)),
        ("no-transform, must-understand", CacheControl(no_transform=True, must_understand=True)),
        ('community="UCI"', CacheControl(extensions=(("community", "UCI"),))),
        (",, max-age=5 ,,", CacheControl(max_age=5)),  # empty list elements are ignored
    ],
)
def test_parse_directives_table(value: str | None, expected: CacheControl) -> None:
    assert parse_cache_control(value) == expected


@pytest.mark.parametrize(
    "value", ["max-age=abc", "max-age=-1", "max-age=1.5", "max-age", "max-age="]
)
def test_invalid_delta_seconds_reads_as_zero_so_the_response_is_stale(value: str) -> None:
    assert parse_cache_control(value).max_age == 0


def test_conflicting_duplicate_directive_is_invalid_and_reads_as_zero() -> None:
    assert parse_cache_control("max-age=60, max-age=30").max_age == 0
    assert parse_cache_control("max-age=60").max_age == 60
    # two header lines joined by the edge
    assert parse_cache_control("s-maxage=60, public, s-maxage=600").s_maxage == 0


def test_identical_duplicate_directive_stays_valid() -> None:
    assert parse_cache_control("max-age=60, max-age=60").max_age == 60


def test_huge_delta_seconds_saturates_at_two_to_the_31() -> None:
    assert parse_cache_control("max-age=99999999999999999999999").max_age == DELTA_MAX
    assert parse_cache_control("max-age=2147483649").max_age == DELTA_MAX


def test_leading_zeros_do_not_change_delta_seconds() -> None:
    assert parse_cache_control("max-age=0000000000000000000060").max_age == 60


def test_comma_inside_quoted_argument_does_not_split() -> None:
    cc = parse_cache_control('no-cache="a, b", max-age=3, x="y, max-age=9"')
    assert cc.no_cache_fields == ("a", "b")
    assert cc.max_age == 3
    assert cc.extensions == (("x", "y, max-age=9"),)


def test_escaped_quote_inside_quoted_argument() -> None:
    cc = parse_cache_control(r'x="a\"b, c", max-age=4')
    assert cc.extensions == (("x", 'a"b, c'),)
    assert cc.max_age == 4


def test_unqualified_private_wins_over_qualified() -> None:
    cc = parse_cache_control('private="x", private')
    assert cc.private is True


def test_very_long_values_are_parsed_completely() -> None:
    value = ", ".join(f"ext{i}" for i in range(500)) + ", max-age=600"
    assert parse_cache_control(value).max_age == 600


@given(st.text(max_size=200))
def test_parser_never_raises_on_arbitrary_text(value: str) -> None:
    cc = parse_cache_control(value)
    for delta in (cc.max_age, cc.s_maxage, cc.min_fresh, cc.stale_if_error):
        assert delta is None or 0 <= delta <= DELTA_MAX


@given(st.integers(min_value=0, max_value=DELTA_MAX), st.booleans())
def test_delta_seconds_round_trip_in_token_and_quoted_form(n: int, quoted: bool) -> None:
    arg = f'"{n}"' if quoted else str(n)
    assert parse_cache_control(f"max-age={arg}").max_age == n
