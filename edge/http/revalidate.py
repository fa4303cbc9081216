"""Validation with the origin and invalidation (RFC 9111 §4.3, §4.4).

``conditional_headers`` builds the validating request; the origin's 304 goes to
``not_modified_applies`` (does it describe the stored response? §4.3.4) and then to
``merge_not_modified``. A 304 that does not apply means the stored response cannot be used:
fetch unconditionally.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

from edge.http import Headers
from edge.http.conditional import parse_etag
from edge.http.dates import parse_http_date
from edge.http.model import StoredResponse
from edge.http.storage import headers_to_store

# Fields a 304 must not change in a stored response (RFC 9111 §3.2): the body we hold is
# described by its own length/range/coding; a 304 cannot make those bytes something else.
_NOT_UPDATED = frozenset({"content-length", "content-range", "content-encoding", "etag"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def conditional_headers(stored: StoredResponse) -> Headers:
    """§4.3.1: If-None-Match with the stored ETag, If-Modified-Since with its Last-Modified
    (echoed verbatim). Empty when it has neither: the request is then unconditional."""
    out: Headers = {}
    if "etag" in stored.headers:
        out["if-none-match"] = stored.headers["etag"]
    if "last-modified" in stored.headers:
        out["if-modified-since"] = stored.headers["last-modified"]
    return out


def not_modified_applies(stored: StoredResponse, new: Headers) -> bool:
    """§4.3.4: does this 304 identify the stored response? By a strong ETag if it carries one,
    else by a weak ETag, else by Last-Modified, else only if the stored one has no validator
    either."""
    new_tag = parse_etag(new.get("etag"))
    old_tag = parse_etag(stored.headers.get("etag"))
    if new_tag is not None:
        if not new_tag[0]:
            return old_tag is not None and not old_tag[0] and old_tag[1] == new_tag[1]
        return old_tag is not None and old_tag[1] == new_tag[1]
    if "last-modified" in new:
        old_lm = parse_http_date(stored.headers.get("last-modified"))
        return old_lm is not None and old_lm == parse_http_date(new["last-modified"])
    # No validator in the 304: it answers the validators we sent (those of this response).
    return True


def merge_not_modified(
    stored: StoredResponse, new: Headers, request_time: float, response_time: float
) -> StoredResponse:
    """The stored response refreshed by a 304 (§4.3.4, §3.2): every field of the 304 replaces
    the stored one, except hop-by-hop fields and those describing the stored bytes
    (``_NOT_UPDATED``); Age and Date belong to the new response (a 304 without Age resets it,
    a 304 without Date gets ``response_time``); the clocks move to the new exchange and a soft
    purge is cleared. Raises ValueError if ``not_modified_applies`` is False."""
    if not not_modified_applies(stored, new):
        raise ValueError("304 does not match the stored response (RFC 9111 §4.3.4)")
    incoming = headers_to_store(new, response_time)
    headers = dict(stored.headers)
    headers.pop("age", None)
    for name, value in incoming.items():
        if name not in _NOT_UPDATED:
            headers[name] = value
    return replace(
        stored,
        headers=headers,
        request_time=request_time,
        response_time=response_time,
        soft_purged=False,
    )


def invalidates(method: str, status: int) -> bool:
    """§4.4: a non-error response (2xx/3xx) to an unsafe or unknown method invalidates the
    target URI's stored responses."""
    return method not in SAFE_METHODS and 200 <= status < 400  # methods are case-sensitive


def also_invalidated(resp: Headers, authority: str) -> list[str]:
    """§4.4: the paths in Location and Content-Location that a cache MAY invalidate too, only
    when they are on the same authority (host[:port]) as the request, to prevent abuse."""
    out: list[str] = []
    for name in ("location", "content-location"):
        v = resp.get(name)
        if not v:
            continue
        parts = urlsplit(v.strip())
        if parts.netloc and parts.netloc.lower() != authority.lower():
            continue
        if parts.path.startswith("/") and parts.path not in out:
            out.append(parts.path)
    return out
