"""What a shared cache may store (RFC 9111 §3, §3.1, §3.5)."""

from __future__ import annotations

import pytest

from edge.http.dates import format_http_date, parse_http_date
from edge.http.storage import headers_to_store, storable, strip_hop_by_hop

LM = "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize(
    ("method", "status", "req", "resp", "expected"),
    [
        # heuristically cacheable statuses need no explicit freshness (§4.2.2)
        ("GET", 200, {}, {}, True),
        ("GET", 404, {}, {}, True),
        ("GET", 410, {}, {}, True),
        ("GET", 206, {}, {"content-range": "bytes 0-9/100"}, True),
        ("GET", 451, {}, {}, True),
        # other statuses need explicit freshness or public
        ("GET", 302, {}, {}, False),
        ("GET", 302, {}, {"cache-control": "max-age=60"}, True),
        ("GET", 307, {}, {"expires": LM}, True),
        ("GET", 500, {}, {}, False),
        ("GET", 500, {}, {"cache-control": "public"}, True),
        ("GET", 403, {}, {"cache-control": "s-maxage=5"}, True),
        # non-final and 304 are never stored
        ("GET", 100, {}, {"cache-control": "max-age=60"}, False),
        ("GET", 304, {}, {"cache-control": "max-age=60"}, False),
        # only GET bodies are stored
        ("HEAD", 200, {}, {"cache-control": "max-age=60"}, False),
        ("POST", 200, {}, {"cache-control": "max-age=60"}, False),
        # no-store in response or request (§5.2.2.5, §5.2.1.5)
        ("GET", 200, {}, {"cache-control": "no-store, max-age=60"}, False),
        ("GET", 200, {"cache-control": "no-store"}, {"cache-control": "max-age=60"}, False),
        # private: unqualified forbids a shared cache, qualified allows it (§5.2.2.7)
        ("GET", 200, {}, {"cache-control": "private, max-age=60"}, False),
        ("GET", 200, {}, {"cache-control": 'private="set-cookie", max-age=60'}, True),
        # no-cache is stored (and revalidated on every use)
        ("GET", 200, {}, {"cache-control": "no-cache"}, True),
        # Vary: * can never be reused
        ("GET", 200, {}, {"vary": "accept-encoding, *", "cache-control": "max-age=60"}, False),
        ("GET", 200, {}, {"vary": "accept-encoding", "cache-control": "max-age=60"}, True),
        # must-understand: a known status ignores the accompanying no-store (§5.2.2.3)
        ("GET", 200, {}, {"cache-control": "must-understand, no-store, max-age=60"}, True),
        ("GET", 299, {}, {"cache-control": "must-understand, no-store, max-age=60"}, False),
        ("GET", 299, {}, {"cache-control": "must-understand, max-age=60"}, False),
    ],
)
def test_storable_table(method, status, req, resp, expected) -> None:
    assert storable(method, status, req, resp) is expected


@pytest.mark.parametrize(
    ("cache_control", "expected"),
    [
        (None, False),
        ("max-age=60", False),
        ("public", True),
        ("s-maxage=60", True),
        ("must-revalidate", True),
        ("max-age=60, must-revalidate", True),
        ("proxy-revalidate, max-age=60", False),
        ("public, private", False),
    ],
)
def test_authorization_requires_public_s_maxage_or_must_revalidate(cache_control, expected) -> None:
    """RFC 9111 §3.5."""
    resp = {"cache-control": cache_control} if cache_control else {}
    assert storable("GET", 200, {"authorization": "Bearer x"}, resp) is expected
    assert storable("GET", 200, {}, resp) is (cache_control != "public, private")


@pytest.mark.parametrize(
    ("cache_control", "opt_in", "expected"),
    [
        ("max-age=60", False, False),
        ("public, max-age=60", False, False),
        ('max-age=60, no-cache="Set-Cookie"', False, True),
        ('max-age=60, private="set-cookie"', False, True),
        ("max-age=60", True, True),
    ],
)
def test_set_cookie_responses_are_stored_only_when_the_cookie_can_be_dropped(
    cache_control, opt_in, expected
) -> None:
    resp = {"cache-control": cache_control, "set-cookie": "sid=1"}
    assert storable("GET", 200, {}, resp, store_set_cookie=opt_in) is expected
    if expected and not opt_in:
        assert "set-cookie" not in headers_to_store(resp, 0.0)


def test_strip_hop_by_hop_drops_connection_specific_fields_and_those_connection_names() -> None:
    headers = {
        "connection": "close, x-hop",
        "keep-alive": "timeout=5",
        "transfer-encoding": "chunked",
        "te": "trailers",
        "upgrade": "h2c",
        "proxy-authenticate": "Basic",
        "proxy-connection": "keep-alive",
        "x-hop": "1",
        "content-type": "video/mp2t",
        "etag": '"a"',
    }
    assert strip_hop_by_hop(headers) == {"content-type": "video/mp2t", "etag": '"a"'}


def test_headers_to_store_drops_qualified_no_cache_and_private_fields() -> None:
    resp = {
        "cache-control": 'max-age=60, no-cache="set-cookie", private="x-user"',
        "set-cookie": "a=b",
        "x-user": "alice",
        "content-type": "text/plain",
        "date": LM,
        "connection": "keep-alive",
    }
    stored = headers_to_store(resp, 0.0)
    assert "set-cookie" not in stored and "x-user" not in stored and "connection" not in stored
    assert stored["content-type"] == "text/plain" and stored["date"] == LM


def test_headers_to_store_adds_date_when_missing_or_invalid() -> None:
    assert parse_http_date(headers_to_store({}, 1000.0)["date"]) == 1000.0
    assert headers_to_store({"date": "garbage"}, 5.0)["date"] == format_http_date(5.0)


def test_headers_to_store_does_not_modify_its_input() -> None:
    resp = {"cache-control": 'no-cache="a"', "a": "1"}
    headers_to_store(resp, 0.0)
    assert resp == {"cache-control": 'no-cache="a"', "a": "1"}
