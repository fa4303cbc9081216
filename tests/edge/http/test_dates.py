"""HTTP-date parsing and formatting (RFC 9110 §5.6.7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.http.dates import format_http_date, parse_http_date

RFC_EXAMPLE = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT


@pytest.mark.parametrize(
    "text",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850 format
        "Sun Nov  6 08:49:37 1994",  # ANSI C asctime() format
        "  Sun, 06 Nov 1994 08:49:37 GMT\t",  # surrounding OWS
        "sun, 06 nov 1994 08:49:37 GMT",  # names are case-insensitive
    ],
)
def test_parse_accepts_all_three_rfc_formats(text: str) -> None:
    assert parse_http_date(text) == RFC_EXAMPLE


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "0",
        "-1",
        "tomorrow",
        "Sun, 06 Nov 1994 08:49:37",  # no zone
        "Sun, 06 Nov 1994 08:49:37 PST",  # only GMT is allowed
        "Sun, 6 Nov 1994 08:49:37 GMT",  # day must be two digits
        "Sun, 31 Feb 1994 08:49:37 GMT",  # no such day
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",  # a list is not a date
        "Sun, 06 Nov 1994 08:49:37 GMTx",  # trailing junk
        "x" * 1000,
    ],
)
def test_parse_rejects_invalid_dates(text: str | None) -> None:
    assert parse_http_date(text) is None


def test_parse_rfc850_two_digit_years_pivot_at_70() -> None:
    assert parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT") == 0.0
    assert parse_http_date("Friday, 01-Jan-38 00:00:00 GMT") == parse_http_date(
        "Fri, 01 Jan 2038 00:00:00 GMT"
    )


def test_parse_accepts_leap_second_as_the_last_second_of_the_minute() -> None:
    assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT") == parse_http_date(
        "Sat, 31 Dec 2016 23:59:59 GMT"
    )


def test_format_emits_imf_fixdate_and_drops_fractions() -> None:
    assert format_http_date(RFC_EXAMPLE) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(RFC_EXAMPLE + 0.999) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


@given(st.integers(min_value=0, max_value=253402300799))  # up to 9999-12-31
def test_format_then_parse_round_trips(ts: int) -> None:
    text = format_http_date(ts)
    assert len(text) == 29
    assert parse_http_date(text) == float(ts)
