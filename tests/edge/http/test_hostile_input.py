"""No header value, however malformed, makes a rule raise: bad input must never become a 500."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.http.cachekey import object_key, vary_fields, vary_matches, vary_values
from edge.http.conditional import Precondition, evaluate_preconditions, if_range_ok
from edge.http.freshness import Freshness, current_age, evaluate, stale_if_error_allowed
from edge.http.model import StoredResponse
from edge.http.revalidate import conditional_headers, merge_not_modified, not_modified_applies
from edge.http.storage import headers_to_store, storable

NAMES = [
    "cache-control",
    "pragma",
    "date",
    "expires",
    "age",
    "last-modified",
    "etag",
    "vary",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "connection",
    "authorization",
    "set-cookie",
    "accept-encoding",
]
_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "max-age=",
            'no-cache="',
            "W/",
            '"',
            "*",
            "-1",
            "9" * 40,
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "max-stale, s-maxage=1, stale-if-error=x",
        ]
    ),
)
headers = st.dictionaries(st.sampled_from(NAMES), _values, max_size=8)
T0 = 1_700_000_000.0


@settings(max_examples=300, deadline=None)
@given(headers, headers, st.floats(-1e6, 1e6), st.booleans())
def test_rules_never_raise_on_malformed_headers(req, resp, dt, purged) -> None:
    stored = StoredResponse(200, resp, T0, T0, soft_purged=purged)
    assert isinstance(evaluate(req, stored, T0 + dt), Freshness)
    assert isinstance(stale_if_error_allowed(req, stored, T0 + dt), bool)
    assert current_age(stored, T0 + dt) >= 0.0
    assert isinstance(storable("GET", 200, req, resp), bool)
    kept = headers_to_store(resp, T0)
    assert "connection" not in kept
    pre = evaluate_preconditions("GET", req, resp.get("etag"), T0, date=T0)
    assert isinstance(pre, Precondition)
    assert isinstance(if_range_ok(req, resp.get("etag"), T0, date=T0 + 5), bool)
    fields = vary_fields(resp)
    if fields is not None:
        assert vary_matches(vary_values(fields, req), req)
    conditional_headers(stored)
    if not_modified_applies(stored, req):
        merge_not_modified(stored, req, T0 + 1, T0 + 2)


@given(st.text(max_size=60), st.text(max_size=60))
def test_object_key_never_raises(path: str, query: str) -> None:
    assert object_key("/" + path, query).startswith("/")
