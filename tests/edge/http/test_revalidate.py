"""Validation and invalidation (RFC 9111 §4.3, §4.4)."""

from __future__ import annotations

import pytest

from edge.http.dates import format_http_date
from edge.http.freshness import Freshness, current_age, evaluate
from edge.http.model import StoredResponse
from edge.http.revalidate import (
    also_invalidated,
    conditional_headers,
    invalidates,
    merge_not_modified,
    not_modified_applies,
)

T0 = 1_700_000_000.0
LM = format_http_date(T0 - 3600)


def stored(**h: str) -> StoredResponse:
    headers = {"date": format_http_date(T0), "cache-control": "max-age=60"}
    headers.update({k.replace("_", "-"): v for k, v in h.items()})
    return StoredResponse(200, headers, T0, T0)


def test_conditional_headers_echo_validators_verbatim() -> None:
    s = stored(etag='W/"v1"', last_modified=LM)
    assert conditional_headers(s) == {"if-none-match": 'W/"v1"', "if-modified-since": LM}
    assert conditional_headers(stored()) == {}


@pytest.mark.parametrize(
    ("stored_h", "new", "applies"),
    [
        ({"etag": '"a"'}, {"etag": '"a"'}, True),
        ({"etag": '"a"'}, {"etag": '"b"'}, False),
        ({"etag": 'W/"a"'}, {"etag": '"a"'}, False),  # a strong 304 tag needs a strong match
        ({"etag": '"a"'}, {"etag": 'W/"a"'}, True),  # weak tag: weak correspondence
        ({"etag": 'W/"a"'}, {"etag": 'W/"a"'}, True),
        ({}, {"etag": '"a"'}, False),
        ({"last-modified": LM}, {"last-modified": LM}, True),
        ({"last-modified": LM}, {"last-modified": format_http_date(T0)}, False),
        ({"etag": '"a"'}, {}, True),  # no validator in the 304: it answers what we sent
    ],
)
def test_not_modified_applies_table(stored_h, new, applies) -> None:
    s = StoredResponse(200, stored_h, T0, T0)
    assert not_modified_applies(s, new) is applies


def test_merge_refreshes_headers_and_clocks_and_makes_it_fresh_again() -> None:
    s = stored(etag='"a"', content_length="100", x_old="keep", age="30")
    s.soft_purged = True
    later = T0 + 500
    assert evaluate({}, s, later) is Freshness.STALE_REVALIDATE
    new = {
        "etag": '"a"',
        "cache-control": "max-age=120",
        "date": format_http_date(later),
        "x-new": "1",
        "content-length": "0",
        "connection": "close",
    }
    merged = merge_not_modified(s, new, later - 1, later)
    assert merged.headers["cache-control"] == "max-age=120"
    assert merged.headers["x-new"] == "1" and merged.headers["x-old"] == "keep"
    assert merged.headers["content-length"] == "100"  # §3.2: never updated from a 304
    assert "connection" not in merged.headers
    assert "age" not in merged.headers  # the old Age described the old response
    assert (merged.request_time, merged.response_time) == (later - 1, later)
    assert merged.soft_purged is False
    assert current_age(merged, later) == 1.0  # response delay only
    assert evaluate({}, merged, later + 100) is Freshness.FRESH
    assert s.headers["cache-control"] == "max-age=60"  # input untouched


def test_merge_without_date_in_304_dates_it_at_receipt() -> None:
    s = stored(etag='"a"')
    merged = merge_not_modified(s, {"etag": '"a"'}, T0 + 1000, T0 + 1000)
    assert merged.headers["date"] == format_http_date(T0 + 1000)
    assert current_age(merged, T0 + 1000) == 0.0


def test_merge_takes_age_from_the_304() -> None:
    s = stored(etag='"a"')
    merged = merge_not_modified(s, {"age": "7"}, T0 + 100, T0 + 100)
    assert merged.headers["age"] == "7"


def test_merge_refuses_a_304_for_another_representation() -> None:
    with pytest.raises(ValueError):
        merge_not_modified(stored(etag='"a"'), {"etag": '"b"'}, T0, T0)


@pytest.mark.parametrize(
    ("method", "status", "expected"),
    [
        ("POST", 200, True),
        ("PUT", 201, True),
        ("DELETE", 204, True),
        ("PATCH", 302, True),
        ("PURGE", 200, True),  # unknown methods count as unsafe
        ("get", 200, True),  # method names are case-sensitive: "get" is not GET
        ("POST", 404, False),
        ("POST", 500, False),
        ("GET", 200, False),
        ("HEAD", 200, False),
        ("OPTIONS", 200, False),
        ("TRACE", 200, False),
    ],
)
def test_invalidates_table(method, status, expected) -> None:
    assert invalidates(method, status) is expected


def test_also_invalidated_only_same_authority_locations() -> None:
    resp = {"location": "http://edge.example:8080/x", "content-location": "/y"}
    assert also_invalidated(resp, "edge.example:8080") == ["/x", "/y"]
    assert also_invalidated({"location": "http://evil.example/x"}, "edge.example") == []
    assert also_invalidated({}, "edge.example") == []
