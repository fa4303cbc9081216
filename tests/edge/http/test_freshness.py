"""Freshness lifetime, age and the reuse decision (RFC 9111 §4.2, RFC 5861)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.http.dates import format_http_date
from edge.http.freshness import (
    Freshness,
    age_value,
    current_age,
    evaluate,
    freshness_lifetime,
    stale_if_error_allowed,
)
from edge.http.model import StoredResponse

T0 = 1_700_000_000.0
DATE = format_http_date(T0)


def hdrs(**kw: str) -> dict[str, str]:
    out = {"date": DATE}
    out.update({k.replace("_", "-"): v for k, v in kw.items()})
    return out


def stored(cc: str | None = None, *, status: int = 200, validator: bool = True, **kw: str):
    h = hdrs(**kw)
    if cc is not None:
        h["cache-control"] = cc
    if validator:
        h.setdefault("etag", '"v1"')
    return StoredResponse(status, h, request_time=T0, response_time=T0)


# --- freshness_lifetime (§4.2.1, §4.2.2) ---------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "lifetime"),
    [
        (hdrs(cache_control="s-maxage=10, max-age=60"), 10.0),  # s-maxage wins for shared
        (hdrs(cache_control="max-age=60", expires=format_http_date(T0 + 999)), 60.0),
        (hdrs(expires=format_http_date(T0 + 120)), 120.0),  # Expires - Date
        (hdrs(expires=format_http_date(T0 - 120)), 0.0),  # in the past
        (hdrs(expires="0"), 0.0),  # invalid Expires means already expired (§5.3)
        # two Expires lines joined by the edge: a duplicate is invalid (§4.2.1)
        (hdrs(expires=f"{format_http_date(T0 + 60)}, {format_http_date(T0 + 60)}"), 0.0),
        (hdrs(expires="garbage", last_modified=format_http_date(T0 - 10_000)), 0.0),
        (hdrs(last_modified=format_http_date(T0 - 10_000)), 1000.0),  # 10 % heuristic
        (hdrs(last_modified=format_http_date(T0 - 100 * 86400)), 86400.0),  # capped
        (hdrs(last_modified=format_http_date(T0 + 50)), 0.0),  # LM in the future
        (hdrs(), 0.0),  # no Last-Modified: no heuristic
        (hdrs(cache_control="max-age=abc", last_modified=format_http_date(T0 - 10_000)), 0.0),
        (hdrs(cache_control="max-age=5, max-age=50"), 0.0),  # conflicting duplicates
        (hdrs(cache_control="no-cache", last_modified=format_http_date(T0 - 10_000)), 1000.0),
    ],
)
def test_freshness_lifetime_precedence_table(headers, lifetime) -> None:
    assert freshness_lifetime(headers) == lifetime


def test_heuristic_only_for_heuristically_cacheable_status_or_public() -> None:
    h = hdrs(last_modified=format_http_date(T0 - 10_000))
    assert freshness_lifetime(h, status=404) == 1000.0
    assert freshness_lifetime(h, status=302) == 0.0
    assert freshness_lifetime(h, status=500) == 0.0
    h["cache-control"] = "public"
    assert freshness_lifetime(h, status=302) == 1000.0  # §5.2.2.9


def test_heuristic_fraction_and_cap_are_parameters() -> None:
    h = hdrs(last_modified=format_http_date(T0 - 10_000))
    assert freshness_lifetime(h, heuristic_fraction=0.5) == 5000.0
    assert freshness_lifetime(h, heuristic_cap=30.0) == 30.0


def test_expires_without_date_uses_response_time() -> None:
    h = {"expires": format_http_date(T0 + 100)}
    assert freshness_lifetime(h, response_time=T0) == 100.0
    assert freshness_lifetime(h) == 0.0


# --- current_age (§4.2.3) -------------------------------------------------------------------


def test_age_of_a_response_from_a_synchronised_origin_is_its_resident_time() -> None:
    s = stored("max-age=60")
    assert current_age(s, T0) == 0.0
    assert current_age(s, T0 + 25) == 25.0


def test_age_includes_upstream_age_and_response_delay() -> None:
    # Sent at T0, header arrived 2 s later carrying Age: 10 from an upstream cache.
    s = StoredResponse(200, hdrs(age="10"), request_time=T0, response_time=T0 + 2)
    # corrected_age_value = 10 + 2; apparent_age = 2; resident = 3
    assert current_age(s, T0 + 5) == 15.0


def test_age_uses_apparent_age_when_date_is_older_than_age_says() -> None:
    s = StoredResponse(200, hdrs(age="1"), request_time=T0 + 30, response_time=T0 + 30)
    assert current_age(s, T0 + 30) == 30.0  # Date 30 s before receipt beats Age: 1


def test_age_never_negative_when_date_is_in_the_future_or_clock_steps_back() -> None:
    s = StoredResponse(200, {"date": format_http_date(T0 + 500)}, T0, T0)
    assert current_age(s, T0) == 0.0
    assert current_age(s, T0 - 100) == 0.0


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        ("5", 5.0),
        ("", 0.0),
        ("abc", 0.0),
        ("-3", 0.0),
        ("5, 9", 9.0),
        ("9" * 30, 2.0**31),
        ("0" * 30 + "7", 7.0),
    ],
)
def test_age_value_parsing(age: str, expected: float) -> None:
    assert age_value({"age": age}) == expected


# --- evaluate ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cc", "dt", "req", "expected"),
    [
        ("max-age=60", 0, {}, Freshness.FRESH),
        ("max-age=60", 59.9, {}, Freshness.FRESH),
        ("max-age=60", 60, {}, Freshness.STALE_REVALIDATE),  # fresh iff lifetime > age
        ("max-age=60", 3600, {}, Freshness.STALE_REVALIDATE),
        # stale-while-revalidate window (RFC 5861 §3)
        ("max-age=60, stale-while-revalidate=30", 70, {}, Freshness.STALE_SERVE_AND_REVALIDATE),
        ("max-age=60, stale-while-revalidate=30", 90, {}, Freshness.STALE_SERVE_AND_REVALIDATE),
        ("max-age=60, stale-while-revalidate=30", 91, {}, Freshness.STALE_REVALIDATE),
        # must-revalidate, proxy-revalidate and s-maxage forbid serving stale (§4.2.4)
        (
            "max-age=60, must-revalidate, stale-while-revalidate=30",
            70,
            {},
            Freshness.STALE_REVALIDATE,
        ),
        (
            "max-age=60, proxy-revalidate, stale-while-revalidate=30",
            70,
            {},
            Freshness.STALE_REVALIDATE,
        ),
        ("s-maxage=60, stale-while-revalidate=30", 70, {}, Freshness.STALE_REVALIDATE),
        ("max-age=60, must-revalidate", 10, {}, Freshness.FRESH),
        # no-cache: stored, never reused without validation (§5.2.2.4)
        ("no-cache, max-age=600", 0, {}, Freshness.STALE_REVALIDATE),
        # qualified no-cache is not a revalidate-always
        ('no-cache="set-cookie", max-age=600', 0, {}, Freshness.FRESH),
        # request directives (§5.2.1)
        ("max-age=600", 10, {"cache-control": "no-cache"}, Freshness.STALE_REVALIDATE),
        ("max-age=600", 10, {"pragma": "no-cache"}, Freshness.STALE_REVALIDATE),
        ("max-age=600", 10, {"pragma": "no-cache", "cache-control": "max-age=60"}, Freshness.FRESH),
        ("max-age=600", 10, {"cache-control": "max-age=0"}, Freshness.STALE_REVALIDATE),
        ("max-age=600", 10, {"cache-control": "max-age=10"}, Freshness.FRESH),
        ("max-age=600", 11, {"cache-control": "max-age=10"}, Freshness.STALE_REVALIDATE),
        ("max-age=600", 500, {"cache-control": "min-fresh=100"}, Freshness.FRESH),
        ("max-age=600", 501, {"cache-control": "min-fresh=100"}, Freshness.STALE_REVALIDATE),
        ("max-age=60", 100, {"cache-control": "max-stale"}, Freshness.STALE_SERVE_AND_REVALIDATE),
        (
            "max-age=60",
            100,
            {"cache-control": "max-stale=40"},
            Freshness.STALE_SERVE_AND_REVALIDATE,
        ),
        ("max-age=60", 101, {"cache-control": "max-stale=40"}, Freshness.STALE_REVALIDATE),
        (
            "max-age=60, must-revalidate",
            61,
            {"cache-control": "max-stale"},
            Freshness.STALE_REVALIDATE,
        ),
        ("max-age=60", 100, {"cache-control": "max-stale, max-age=50"}, Freshness.STALE_REVALIDATE),
        # request no-store does not affect reuse of what is already stored (§5.2.1.5)
        ("max-age=60", 10, {"cache-control": "no-store"}, Freshness.FRESH),
    ],
)
def test_evaluate_table(cc, dt, req, expected) -> None:
    assert evaluate(req, stored(cc), T0 + dt) is expected


def test_evaluate_without_validator_must_fetch_instead_of_revalidate() -> None:
    s = stored("max-age=60", validator=False)
    assert evaluate({}, s, T0 + 10) is Freshness.FRESH
    assert evaluate({}, s, T0 + 61) is Freshness.MUST_FETCH
    s_lm = stored("max-age=60", validator=False, last_modified=format_http_date(T0 - 5))
    assert evaluate({}, s_lm, T0 + 61) is Freshness.STALE_REVALIDATE


def test_evaluate_soft_purged_entry_is_revalidated_even_when_fresh() -> None:
    s = stored("max-age=600")
    s.soft_purged = True
    assert evaluate({}, s, T0 + 1) is Freshness.STALE_REVALIDATE


def test_evaluate_ignores_request_directives_when_told_to() -> None:
    s = stored("max-age=600")
    req = {"cache-control": "no-cache"}
    assert evaluate(req, s, T0, honour_request=False) is Freshness.FRESH


def test_evaluate_expires_and_heuristic_responses() -> None:
    s = stored(None, expires=format_http_date(T0 + 30))
    assert evaluate({}, s, T0 + 29) is Freshness.FRESH
    assert evaluate({}, s, T0 + 30) is Freshness.STALE_REVALIDATE
    h = stored(None, last_modified=format_http_date(T0 - 1000))  # heuristic: 100 s
    assert evaluate({}, h, T0 + 99) is Freshness.FRESH
    assert evaluate({}, h, T0 + 100) is Freshness.STALE_REVALIDATE


def test_evaluate_counts_upstream_age() -> None:
    s = StoredResponse(200, hdrs(cache_control="max-age=60", age="50", etag='"a"'), T0, T0)
    assert evaluate({}, s, T0 + 9) is Freshness.FRESH
    assert evaluate({}, s, T0 + 10) is Freshness.STALE_REVALIDATE


# --- stale-if-error --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cc", "dt", "req", "allowed"),
    [
        ("max-age=60, stale-if-error=100", 160, {}, True),
        ("max-age=60, stale-if-error=100", 161, {}, False),
        ("max-age=60", 61, {}, False),
        ("max-age=60", 61, {"cache-control": "stale-if-error=10"}, True),
        ("max-age=60", 71, {"cache-control": "stale-if-error=10"}, False),
        # the request directive speaks for this request
        ("max-age=60, stale-if-error=100", 90, {"cache-control": "stale-if-error=10"}, False),
        ("max-age=60", 100, {"cache-control": "max-stale=50"}, True),
        # must-revalidate / proxy-revalidate / s-maxage / no-cache: never stale (§4.2.4)
        ("max-age=60, must-revalidate, stale-if-error=100", 61, {}, False),
        ("max-age=60, proxy-revalidate, stale-if-error=100", 61, {}, False),
        ("s-maxage=60, stale-if-error=100", 61, {}, False),
        ("no-cache, stale-if-error=100", 0, {}, False),
        (
            "max-age=60, must-revalidate",
            61,
            {"cache-control": "stale-if-error=100, max-stale"},
            False,
        ),
        # the client demanded validation: only its own stale-if-error lets a copy through
        ("max-age=600, stale-if-error=100", 10, {"cache-control": "no-cache"}, False),
        ("max-age=600", 10, {"cache-control": "no-cache, stale-if-error=5"}, True),
    ],
)
def test_stale_if_error_table(cc, dt, req, allowed) -> None:
    assert stale_if_error_allowed(req, stored(cc), T0 + dt) is allowed


@pytest.mark.parametrize("cc", ["max-age=600", "s-maxage=600", "max-age=600, must-revalidate"])
def test_soft_purged_fresh_copy_may_be_served_when_origin_fails(cc: str) -> None:
    s = stored(cc)
    s.soft_purged = True
    assert stale_if_error_allowed({}, s, T0 + 10) is True
    assert stale_if_error_allowed({}, s, T0 + 600) is False  # now stale


def test_soft_purged_no_cache_copy_is_never_served_on_error() -> None:
    s = stored("no-cache, max-age=600, stale-if-error=600")
    s.soft_purged = True
    assert stale_if_error_allowed({}, s, T0 + 10) is False


# --- properties -----------------------------------------------------------------------------

_RANK = {
    Freshness.FRESH: 0,
    Freshness.STALE_SERVE_AND_REVALIDATE: 1,
    Freshness.STALE_REVALIDATE: 2,
    Freshness.MUST_FETCH: 2,
}
_resp_directives = st.lists(
    st.sampled_from(
        [
            "max-age=0",
            "max-age=30",
            "max-age=600",
            "s-maxage=45",
            "no-cache",
            "must-revalidate",
            "proxy-revalidate",
            "stale-while-revalidate=20",
            "stale-if-error=300",
            "public",
            "immutable",
        ]
    ),
    max_size=4,
)
_req_directives = st.lists(
    st.sampled_from(
        [
            "no-cache",
            "max-age=0",
            "max-age=40",
            "min-fresh=10",
            "max-stale",
            "max-stale=15",
            "stale-if-error=30",
            "only-if-cached",
        ]
    ),
    max_size=3,
)


@st.composite
def stored_responses(draw) -> StoredResponse:
    h: dict[str, str] = {}
    d = draw(_resp_directives)
    if d:
        h["cache-control"] = ", ".join(d)
    if draw(st.booleans()):
        h["date"] = format_http_date(T0 - draw(st.integers(0, 100)))
    if draw(st.booleans()):
        h["expires"] = format_http_date(T0 + draw(st.integers(-100, 1000)))
    if draw(st.booleans()):
        h["last-modified"] = format_http_date(T0 - draw(st.integers(0, 100_000)))
    if draw(st.booleans()):
        h["age"] = str(draw(st.integers(0, 200)))
    if draw(st.booleans()):
        h["etag"] = '"x"'
    delay = draw(st.floats(0, 5))
    status = draw(st.sampled_from([200, 206, 302, 404, 500]))
    return StoredResponse(status, h, T0, T0 + delay, soft_purged=draw(st.booleans()))


@settings(max_examples=300, deadline=None)
@given(stored_responses(), _req_directives, st.lists(st.floats(0, 5000), min_size=2, max_size=6))
def test_evaluate_is_monotonic_in_now(s: StoredResponse, req_d, offsets) -> None:
    """Time only moves a response away from fresh, never back."""
    req = {"cache-control": ", ".join(req_d)} if req_d else {}
    ranks = [_RANK[evaluate(req, s, T0 + t)] for t in sorted(offsets)]
    assert ranks == sorted(ranks)


@settings(max_examples=300, deadline=None)
@given(stored_responses(), _req_directives, st.lists(st.floats(0, 5000), min_size=2, max_size=6))
def test_stale_if_error_allowance_only_shrinks_with_time(s: StoredResponse, req_d, offsets) -> None:
    req = {"cache-control": ", ".join(req_d)} if req_d else {}
    allowed = [stale_if_error_allowed(req, s, T0 + t) for t in sorted(offsets)]
    assert allowed == sorted(allowed, reverse=True)


@settings(max_examples=200, deadline=None)
@given(stored_responses(), st.floats(-100, 5000), st.floats(0, 5000))
def test_current_age_is_non_negative_and_grows_with_now(s: StoredResponse, t, dt) -> None:
    a, b = current_age(s, T0 + t), current_age(s, T0 + t + dt)
    assert 0.0 <= a <= b


@settings(max_examples=200, deadline=None)
@given(stored_responses(), st.floats(0, 5000))
def test_fresh_means_lifetime_exceeds_age(s: StoredResponse, t) -> None:
    if evaluate({}, s, T0 + t) is Freshness.FRESH:
        lifetime = freshness_lifetime(s.headers, status=s.status, response_time=s.response_time)
        assert lifetime > current_age(s, T0 + t)
        assert not s.soft_purged
