"""Conditional requests (RFC 9110 §13) and entity-tag comparison (§8.8.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.http.conditional import (
    Precondition,
    evaluate_preconditions,
    if_range_ok,
    parse_etag,
    parse_etag_list,
    strong_match,
    weak_match,
)
from edge.http.dates import format_http_date

P = Precondition
LM = 1_700_000_000.0
BEFORE, AT, AFTER = format_http_date(LM - 10), format_http_date(LM), format_http_date(LM + 10)


@pytest.mark.parametrize(
    ("a", "b", "strong", "weak"),
    [  # the table in RFC 9110 §8.8.3.2
        ('W/"1"', 'W/"1"', False, True),
        ('W/"1"', 'W/"2"', False, False),
        ('W/"1"', '"1"', False, True),
        ('"1"', '"1"', True, True),
    ],
)
def test_etag_comparison_table_from_rfc(a, b, strong, weak) -> None:
    ea, eb = parse_etag(a), parse_etag(b)
    assert strong_match(ea, eb) is strong and strong_match(eb, ea) is strong
    assert weak_match(ea, eb) is weak and weak_match(eb, ea) is weak


def test_parse_etag_list_handles_commas_inside_tags_and_bad_members() -> None:
    assert parse_etag_list('"a,b", W/"c" ,"d"') == [(False, '"a,b"'), (True, '"c"'), (False, '"d"')]
    assert parse_etag_list("*") is None
    assert parse_etag_list('"x"junk, "y"') == [None, (False, '"y"')]
    assert parse_etag_list('"unterminated') == [None]
    assert parse_etag_list("") == []


def test_unquoted_origin_etag_counts_as_strong_tag_with_that_text() -> None:
    assert parse_etag("abc") == (False, '"abc"')
    assert parse_etag("W/abc") is None
    assert parse_etag("") is None


@given(st.text(max_size=60))
def test_etag_list_parser_never_raises(text: str) -> None:
    parse_etag_list(text)
    parse_etag(text)


# Each row: request headers, expected result for GET with ETag "xyzzy" and LM.
@pytest.mark.parametrize(
    ("req", "expected"),
    [
        ({}, P.PROCEED),
        # If-None-Match examples from RFC 9110 §13.1.2
        ({"if-none-match": '"xyzzy"'}, P.NOT_MODIFIED),
        ({"if-none-match": 'W/"xyzzy"'}, P.NOT_MODIFIED),  # weak comparison
        ({"if-none-match": '"xyzzy", "r2d2xxxx", "c3piozzzz"'}, P.NOT_MODIFIED),
        ({"if-none-match": 'W/"xyzzy", W/"r2d2xxxx", W/"c3piozzzz"'}, P.NOT_MODIFIED),
        ({"if-none-match": "*"}, P.NOT_MODIFIED),
        ({"if-none-match": '"other"'}, P.PROCEED),
        # If-Match examples from RFC 9110 §13.1.1: strong comparison
        ({"if-match": '"xyzzy"'}, P.PROCEED),
        ({"if-match": '"xyzzy", "r2d2xxxx", "c3piozzzz"'}, P.PROCEED),
        ({"if-match": "*"}, P.PROCEED),
        ({"if-match": 'W/"xyzzy"'}, P.PRECONDITION_FAILED),
        ({"if-match": '"other"'}, P.PRECONDITION_FAILED),
        ({"if-match": "garbage junk"}, P.PRECONDITION_FAILED),  # fails closed
        # If-Modified-Since (§13.1.3)
        ({"if-modified-since": AT}, P.NOT_MODIFIED),
        ({"if-modified-since": AFTER}, P.NOT_MODIFIED),
        ({"if-modified-since": BEFORE}, P.PROCEED),
        ({"if-modified-since": "not a date"}, P.PROCEED),
        ({"if-modified-since": f"{AT}, {AT}"}, P.PROCEED),  # a list is ignored
        # If-Unmodified-Since (§13.1.4)
        ({"if-unmodified-since": AT}, P.PROCEED),
        ({"if-unmodified-since": BEFORE}, P.PRECONDITION_FAILED),
        ({"if-unmodified-since": "nonsense"}, P.PROCEED),
        # §13.2.2 order: If-Match first, and it makes If-Unmodified-Since irrelevant
        ({"if-match": '"xyzzy"', "if-unmodified-since": BEFORE}, P.PROCEED),
        ({"if-match": '"other"', "if-none-match": '"xyzzy"'}, P.PRECONDITION_FAILED),
        ({"if-unmodified-since": BEFORE, "if-none-match": '"xyzzy"'}, P.PRECONDITION_FAILED),
        # If-None-Match present: If-Modified-Since is not evaluated (step 4 only without it)
        ({"if-none-match": '"other"', "if-modified-since": AFTER}, P.PROCEED),
        ({"if-none-match": '"xyzzy"', "if-modified-since": BEFORE}, P.NOT_MODIFIED),
        ({"if-match": '"xyzzy"', "if-none-match": '"xyzzy"'}, P.NOT_MODIFIED),
    ],
)
def test_preconditions_for_get_follow_rfc9110_order(req, expected) -> None:
    assert evaluate_preconditions("GET", req, '"xyzzy"', LM) is expected
    assert evaluate_preconditions("HEAD", req, '"xyzzy"', LM) is expected


def test_if_none_match_on_unsafe_method_fails_with_412() -> None:
    assert evaluate_preconditions("PUT", {"if-none-match": "*"}, '"a"', LM) is P.PRECONDITION_FAILED


def test_if_modified_since_is_ignored_for_unsafe_methods() -> None:
    assert evaluate_preconditions("POST", {"if-modified-since": AFTER}, '"a"', LM) is P.PROCEED


def test_date_conditions_are_ignored_without_last_modified() -> None:
    assert evaluate_preconditions("GET", {"if-unmodified-since": BEFORE}, None, None) is P.PROCEED
    assert evaluate_preconditions("GET", {"if-modified-since": AFTER}, None, None) is P.PROCEED


def test_cache_uses_stored_date_for_if_modified_since_when_no_last_modified() -> None:
    """RFC 9111 §4.3.2."""
    req = {"if-modified-since": AT}
    assert evaluate_preconditions("GET", req, None, None, date=LM - 1) is P.NOT_MODIFIED
    assert evaluate_preconditions("GET", req, None, None, date=LM + 1) is P.PROCEED


def test_without_an_etag_if_match_fails_and_if_none_match_proceeds() -> None:
    assert evaluate_preconditions("GET", {"if-match": '"a"'}, None, LM) is P.PRECONDITION_FAILED
    assert evaluate_preconditions("GET", {"if-none-match": '"a"'}, None, LM) is P.PROCEED


def test_weak_current_etag_never_satisfies_if_match() -> None:
    assert (
        evaluate_preconditions("GET", {"if-match": 'W/"a"'}, 'W/"a"', LM) is P.PRECONDITION_FAILED
    )
    assert evaluate_preconditions("GET", {"if-none-match": '"a"'}, 'W/"a"', LM) is P.NOT_MODIFIED


# --- If-Range (§13.1.5) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_range", "etag", "date", "ok"),
    [
        (None, '"a"', LM + 60, True),
        ('"a"', '"a"', LM + 60, True),
        ('"b"', '"a"', LM + 60, False),
        ('W/"a"', '"a"', LM + 60, False),  # weak tags never match strongly
        ('"a"', 'W/"a"', LM + 60, False),
        (AT, '"a"', LM + 60, True),  # exact Last-Modified, strong (Date >= LM + 1)
        (AT, '"a"', LM + 0.5, False),  # Date within a second: Last-Modified is weak
        (AT, '"a"', None, False),  # unknown Date: treat Last-Modified as weak
        (AFTER, '"a"', LM + 60, False),  # must be an exact match, not "not modified since"
        (BEFORE, '"a"', LM + 60, False),
        ("garbage", '"a"', LM + 60, False),
    ],
)
def test_if_range_table(if_range, etag, date, ok) -> None:
    req = {} if if_range is None else {"if-range": if_range}
    assert if_range_ok(req, etag, LM, date=date) is ok


def test_if_range_date_without_last_modified_sends_full_representation() -> None:
    assert if_range_ok({"if-range": AT}, '"a"', None, date=LM) is False
