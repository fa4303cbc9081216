"""Freshness, age and the reuse decision for a stored response (RFC 9111 §4.2, §4.2.4,
RFC 5861), from the point of view of a shared cache.

``evaluate`` decides once what to do with a request that found a stored response:

- FRESH: serve it.
- STALE_SERVE_AND_REVALIDATE: serve it now and refresh it in the background
  (stale-while-revalidate, or a client's max-stale).
- STALE_REVALIDATE: send ``revalidate.conditional_headers(stored)`` to the origin first.
- MUST_FETCH: it must be validated but carries no validator: fetch unconditionally.

On an origin error (5xx or unreachable) after STALE_REVALIDATE / MUST_FETCH, the caller asks
``stale_if_error_allowed``. ``only-if-cached`` (§5.2.1.7) is the caller's: anything but FRESH
or STALE_SERVE_AND_REVALIDATE then means 504.

Deliberate choices, strictest reading of the RFC where caches differ:
- ``s-maxage`` implies proxy-revalidate for a shared cache (§5.2.2.10), so like
  ``must-revalidate`` and ``proxy-revalidate`` it forbids serving stale in every form:
  no stale-while-revalidate, no max-stale, no stale-if-error (§4.2.4, §5.2.2.2).
- request directives (no-cache, max-age, min-fresh, max-stale, Pragma: no-cache) are honoured
  (§5.2.1); ``honour_request=False`` lets an operator ignore them, as nginx and Varnish do.
"""

from __future__ import annotations

import math
from enum import Enum

from edge.http import Headers
from edge.http.cachecontrol import CacheControl, delta_seconds, parse_cache_control
from edge.http.dates import parse_http_date
from edge.http.model import StoredResponse
from edge.http.storage import HEURISTICALLY_CACHEABLE


class Freshness(Enum):
    FRESH = "fresh"
    STALE_SERVE_AND_REVALIDATE = "stale-serve-and-revalidate"
    STALE_REVALIDATE = "stale-revalidate"
    MUST_FETCH = "must-fetch"


def freshness_lifetime(
    resp: Headers,
    heuristic_fraction: float = 0.1,
    heuristic_cap: float = 86400.0,
    *,
    status: int = 200,
    response_time: float | None = None,
) -> float:
    """Seconds the response is fresh for (§4.2.1): s-maxage > max-age > Expires - Date >
    heuristic. The heuristic (§4.2.2) applies only to heuristically cacheable statuses (or
    responses marked public, §5.2.2.9) that carry Last-Modified: ``heuristic_fraction`` of the
    time since Last-Modified, at most ``heuristic_cap``. Invalid or duplicated freshness
    information yields 0 (stale). ``response_time`` stands in for a missing Date."""
    cc = parse_cache_control(resp.get("cache-control"))
    if cc.s_maxage is not None:
        return float(cc.s_maxage)
    if cc.max_age is not None:
        return float(cc.max_age)
    date = parse_http_date(resp.get("date"))
    if date is None:
        date = response_time
    if "expires" in resp:
        expires = parse_http_date(resp["expires"])
        if expires is None or date is None:
            return 0.0  # §5.3: invalid dates (e.g. "0") are in the past
        return max(0.0, expires - date)
    if status not in HEURISTICALLY_CACHEABLE and not cc.public:
        return 0.0
    last_modified = parse_http_date(resp.get("last-modified"))
    if last_modified is None or date is None:
        return 0.0
    return max(0.0, min(heuristic_cap, heuristic_fraction * (date - last_modified)))


def age_value(resp: Headers) -> float:
    """The Age field (§5.1): a non-negative integer; if several arrive, the largest (the
    conservative choice); anything invalid counts as 0; overflow reads as 2^31."""
    best = 0
    for part in resp.get("age", "").split(","):
        part = part.strip(" \t")
        if part.isascii() and part.isdigit():
            best = max(best, delta_seconds(part))
    return float(best)


def current_age(stored: StoredResponse, now: float) -> float:
    """RFC 9111 §4.2.3, never negative (a clock that steps back does not make it younger)."""
    date = parse_http_date(stored.headers.get("date"))
    if date is None:
        date = stored.response_time
    apparent_age = max(0.0, stored.response_time - date)
    response_delay = max(0.0, stored.response_time - stored.request_time)
    corrected_age_value = age_value(stored.headers) + response_delay
    corrected_initial_age = max(apparent_age, corrected_age_value)
    resident_time = max(0.0, now - stored.response_time)
    return corrected_initial_age + resident_time


def _lifetime(stored: StoredResponse) -> float:
    return freshness_lifetime(
        stored.headers, status=stored.status, response_time=stored.response_time
    )


def _request_cc(req: Headers) -> CacheControl:
    """Request directives; Pragma: no-cache counts only without Cache-Control (§5.4)."""
    if "cache-control" not in req:
        pragma = req.get("pragma", "")
        if any(t.strip(" \t").lower() == "no-cache" for t in pragma.split(",")):
            return CacheControl(no_cache=True)
    return parse_cache_control(req.get("cache-control"))


def _forbids_stale(cc: CacheControl) -> bool:
    """§4.2.4: an explicit directive forbids serving this response stale in any form."""
    return cc.must_revalidate or cc.proxy_revalidate or cc.s_maxage is not None or cc.no_cache


def _has_validator(stored: StoredResponse) -> bool:
    return "etag" in stored.headers or "last-modified" in stored.headers


def _client_requires_validation(rcc: CacheControl, age: float, lifetime: float) -> bool:
    if rcc.no_cache:
        return True  # §5.2.1.4
    if rcc.max_age is not None and age > rcc.max_age:
        return True  # §5.2.1.1
    if rcc.min_fresh is not None and lifetime - age < rcc.min_fresh:
        return True  # §5.2.1.3
    return False


def evaluate(
    req: Headers, stored: StoredResponse, now: float, *, honour_request: bool = True
) -> Freshness:
    """Decide how to satisfy ``req`` from ``stored`` at ``now`` (see the module docstring)."""
    cc = parse_cache_control(stored.headers.get("cache-control"))
    rcc = _request_cc(req) if honour_request else CacheControl()
    age = current_age(stored, now)
    lifetime = _lifetime(stored)
    validate = Freshness.STALE_REVALIDATE if _has_validator(stored) else Freshness.MUST_FETCH
    if stored.soft_purged or cc.no_cache:
        return validate  # §5.2.2.4: never reused without successful validation
    if _client_requires_validation(rcc, age, lifetime):
        return validate
    if lifetime > age:
        return Freshness.FRESH  # §4.2: response_is_fresh = freshness_lifetime > current_age
    if _forbids_stale(cc):
        return validate  # §5.2.2.2, §5.2.2.8, §5.2.2.10
    staleness = age - lifetime
    if cc.stale_while_revalidate is not None and staleness <= cc.stale_while_revalidate:
        return Freshness.STALE_SERVE_AND_REVALIDATE  # RFC 5861 §3
    if rcc.max_stale is not None and staleness <= rcc.max_stale:
        # §5.2.1.2: the client accepts it stale; refresh it for the next one anyway.
        return Freshness.STALE_SERVE_AND_REVALIDATE
    return validate


def stale_if_error_allowed(req: Headers, stored: StoredResponse, now: float) -> bool:
    """May ``stored`` be served because the origin failed (5xx or unreachable)?

    A copy still fresh by its lifetime (revalidated only because it was soft-purged) may be
    served. A stale one only when nothing forbids serving it stale (must-revalidate,
    proxy-revalidate, s-maxage: §4.2.4) and its staleness is within the request's
    stale-if-error, else the response's (RFC 5861 §4: the request directive speaks for that
    request), or within the client's max-stale. no-cache always needs a successful
    validation; a client that demanded validation itself is let through only by its own
    stale-if-error."""
    cc = parse_cache_control(stored.headers.get("cache-control"))
    if cc.no_cache or cc.no_store or cc.private:
        return False
    age = current_age(stored, now)
    lifetime = _lifetime(stored)
    stale = not lifetime > age
    if stale and _forbids_stale(cc):
        return False
    staleness = max(0.0, age - lifetime)
    rcc = _request_cc(req)
    if _client_requires_validation(rcc, age, lifetime):
        return rcc.stale_if_error is not None and staleness <= rcc.stale_if_error
    if not stale:
        return True
    limit: float | None = None
    if rcc.stale_if_error is not None:
        limit = float(rcc.stale_if_error)
    elif cc.stale_if_error is not None:
        limit = float(cc.stale_if_error)
    if rcc.max_stale is not None:
        limit = max(limit if limit is not None else -math.inf, rcc.max_stale)
    return limit is not None and staleness <= limit
