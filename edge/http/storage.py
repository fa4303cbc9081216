"""May a shared cache store this response, and which of its header fields (RFC 9111 §3)?

The edge stores response bodies as chunks, so only responses to GET are stored (a HEAD miss
is filled with a GET; HEAD hits are served from the stored GET response, RFC 9110 §9.3.2).
A 206 is storable: the cache understands partial content and keeps it as chunks of the full
representation (§3.3, §3.4). A response with ``Vary: *`` is never stored since it can never
be reused (§4.1).

A response carrying Set-Cookie is not stored unless ``no-cache="set-cookie"`` or
``private="set-cookie"`` lets the cache drop that field (``headers_to_store``) or the operator
opts in with ``store_set_cookie=True``. RFC 9111 would allow storing it (§3 lists necessary
conditions, never sufficient ones, so declining is conformant), but replaying one viewer's
cookie to every other viewer is the classic shared-cache leak; nginx, Varnish and Traffic
Server decline by default too.
"""

from __future__ import annotations

from edge.http import Headers
from edge.http.cachecontrol import parse_cache_control
from edge.http.dates import format_http_date, parse_http_date

# RFC 9110 §15.1: heuristically cacheable; plus 451 (RFC 7725 §3: "cacheable by default").
HEURISTICALLY_CACHEABLE = frozenset(
    {200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 451, 501}
)
# Status codes whose caching rules this cache implements (for must-understand, §5.2.2.3).
UNDERSTOOD_STATUS = HEURISTICALLY_CACHEABLE | {302, 303, 307}

# RFC 9110 §7.6.1 connection-specific fields, plus the proxy-specific fields that RFC 9111
# §3.1 forbids storing (Proxy-Authenticate, Proxy-Authentication-Info, Proxy-Authorization).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "proxy-authenticate",
        "proxy-authentication-info",
        "proxy-authorization",
    }
)


def strip_hop_by_hop(headers: Headers) -> Headers:
    """End-to-end fields only: drop the hop-by-hop set and every field Connection names."""
    named = {
        t.strip(" \t").lower() for t in headers.get("connection", "").split(",") if t.strip(" \t")
    }
    return {k: v for k, v in headers.items() if k not in HOP_BY_HOP and k not in named}


def storable(
    method: str, status: int, req: Headers, resp: Headers, *, store_set_cookie: bool = False
) -> bool:
    """RFC 9111 §3 for a shared cache, including §3.5 (requests with Authorization)."""
    if method != "GET":
        return False  # see module docstring; HEAD responses carry no body to store
    if status < 200 or status == 304:
        return False  # §3: final status only; a 304 updates a stored response (§4.3.4)
    rcc = parse_cache_control(req.get("cache-control"))
    if rcc.no_store:
        return False  # §5.2.1.5: no part of this request or its response may be stored
    cc = parse_cache_control(resp.get("cache-control"))
    if cc.must_understand:
        # §5.2.2.3: only a cache that understands the status may store it, and such a cache
        # SHOULD ignore the no-store that accompanies must-understand.
        if status not in UNDERSTOOD_STATUS:
            return False
    elif cc.no_store:
        return False  # §5.2.2.5
    if cc.private:
        return False  # §5.2.2.7: unqualified private forbids shared caches
    if (
        "set-cookie" in resp
        and not store_set_cookie
        and "set-cookie" not in cc.no_cache_fields
        and "set-cookie" not in cc.private_fields
    ):
        return False  # see module docstring
    if "authorization" in req and not (cc.public or cc.s_maxage is not None or cc.must_revalidate):
        return False  # §3.5
    vary = resp.get("vary")
    if vary is not None and any(t.strip(" \t") == "*" for t in vary.split(",")):
        return False  # §4.1: Vary: * never matches, storing is pointless
    return (
        cc.public
        or "expires" in resp
        or cc.max_age is not None
        or cc.s_maxage is not None
        or status in HEURISTICALLY_CACHEABLE
    )


def headers_to_store(resp: Headers, response_time: float) -> Headers:
    """The header fields a shared cache keeps (§3.1): end-to-end fields, minus those named by
    qualified ``no-cache="..."`` and ``private="..."`` (so the stored response needs no
    per-request stripping), with a ``Date`` added when the origin sent none or an invalid one
    (RFC 9110 §6.6.1: a recipient with a clock MUST add Date when caching)."""
    out = strip_hop_by_hop(resp)
    cc = parse_cache_control(resp.get("cache-control"))
    for name in (*cc.no_cache_fields, *cc.private_fields):
        out.pop(name, None)
    if parse_http_date(out.get("date")) is None:
        out["date"] = format_http_date(response_time)
    return out
