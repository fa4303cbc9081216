"""Audit: HTTP caching semantics against an HTTP origin (RFC 9111, RFC 9110 conditionals and
ranges, RFC 9211 Cache-Status), as an operator comparing the edge to nginx proxy_cache,
Varnish or Traffic Server would. Real sockets throughout; no clock is faked (the edge has no
test clock hook): freshness is steered with max-age=0, Age and Date instead of sleeping.

Cases already covered by test_rfc9111.py, test_audit_origin_faults.py and
test_audit_client_input.py (If-Range, If-None-Match lists, basic Vary, stale-if-error...)
are not repeated here."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.edge.server.conftest import CHUNK, OriginServer, fetch, payload

BIG = 3 * CHUNK + 17  # four chunks, the last one short


def _hit(r: Any) -> bool:
    return "hit" in [p.strip() for p in r.cache.split(";")]


def _http_date(offset: float = 0.0) -> str:
    return formatdate(time.time() + offset, usegmt=True)


async def _until(pred: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


# ---- RFC 9211 / RFC 8941 grammar -----------------------------------------------------------
_SF_TOKEN = r"[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]*"
_SF_STRING = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\\"])*"'
_SF_KEY = r"[a-z*][a-z0-9_\-.*]*"
_SF_BARE = rf"(?:-?\d{{1,15}}|{_SF_TOKEN}|{_SF_STRING}|\?[01])"
_SF_PARAM = rf";\x20*{_SF_KEY}(?:={_SF_BARE})?"
_SF_MEMBER = rf"(?:{_SF_TOKEN}|{_SF_STRING})(?:{_SF_PARAM})*"
_SF_LIST = re.compile(rf"{_SF_MEMBER}(?:[\x20\t]*,[\x20\t]*{_SF_MEMBER})*")
_MEMBER_RE = re.compile(rf"({_SF_TOKEN}|{_SF_STRING})((?:{_SF_PARAM})*)")
_PARAM_RE = re.compile(rf";\x20*({_SF_KEY})(?:=({_SF_BARE}))?")
FWD = {"bypass", "method", "uri-miss", "vary-miss", "miss", "request", "stale", "partial"}


def parse_cache_status(v: str) -> list[tuple[str, dict[str, str | None]]]:
    """A Cache-Status value as (cache name, params) per member; asserts RFC 9211 grammar."""
    assert _SF_LIST.fullmatch(v), f"not an sf-list: {v!r}"
    out = []
    pos = 0
    while pos < len(v):
        m = _MEMBER_RE.match(v, pos)
        assert m, v
        params = {k: val for k, val in _PARAM_RE.findall(m.group(2))}
        params = {k: (val or None) for k, val in params.items()}
        out.append((m.group(1), params))
        pos = m.end()
        rest = re.match(r"[\x20\t]*,[\x20\t]*", v[pos:])
        if rest:
            pos += rest.end()
    return out


def check_edge_member(v: str) -> dict[str, str | None]:
    members = parse_cache_status(v)
    name, p = members[-1]  # the edge's member is the last one (closest to the client)
    assert name == "edgecdn", v
    assert not ("hit" in p and "fwd" in p), v  # RFC 9211 §2.1/§2.2 contradict
    assert "hit" in p or "fwd" in p, v
    if "hit" in p:
        assert p["hit"] is None, v  # a Boolean true is written bare
    if "fwd" in p:
        assert p["fwd"] in FWD, v
    if "fwd-status" in p:
        assert re.fullmatch(r"[1-5]\d\d", p["fwd-status"] or ""), v
    if "ttl" in p:
        assert re.fullmatch(r"-?\d+", p["ttl"] or ""), v
    if "stored" in p:
        assert p["stored"] is None and "fwd" in p, v  # §2.5: only with fwd
    return p


# ---- multipart/byteranges reader -----------------------------------------------------------
def parse_multipart(ctype: str, body: bytes) -> list[tuple[str, bytes]]:
    """(Content-Range, bytes) per part of a multipart/byteranges body, strictly framed."""
    m = re.fullmatch(r"multipart/byteranges;\s*boundary=\"?([^\";]+)\"?", ctype)
    assert m, ctype
    delim = b"--" + m.group(1).encode()
    assert body.endswith(b"\r\n" + delim + b"--\r\n"), body[-80:]
    # RFC 2046: the body may start with the delimiter (no preamble) or CRLF + delimiter
    text = b"\r\n" + body if body.startswith(delim) else body
    chunks = text.split(b"\r\n" + delim)
    assert chunks[0] == b"", chunks[0][:80]
    assert chunks[-1] == b"--\r\n"
    parts = []
    for c in chunks[1:-1]:
        assert c.startswith(b"\r\n"), c[:40]
        head, sep, data = c[2:].partition(b"\r\n\r\n")
        assert sep, c[:200]
        fields = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (ln.decode().partition(":") for ln in head.split(b"\r\n"))
        )
        parts.append((fields["content-range"], data))
    return parts


# ---- an origin whose unsafe-method answers can carry Location ------------------------------
class LocOrigin(OriginServer):
    """POST with X-Test-Loc answers 201 with that Location (relative or absolute)."""

    async def handle(self, req: web.Request) -> web.StreamResponse:
        if req.method == "POST" and "X-Test-Loc" in req.headers:
            self.requests.append((req.method, req.path, dict(req.headers)))
            await req.read()
            return web.Response(status=201, text="created\n",
                                headers={"Location": req.headers["X-Test-Loc"],
                                         "Cache-Control": "no-store"})
        return await super().handle(req)


@pytest.fixture
def loc_origin() -> Iterator[LocOrigin]:
    o = LocOrigin()
    yield o
    o.stop()


# ==== Cache-Control combinations ===========================================================
async def test_s_maxage_wins_over_max_age_in_both_directions(origin, make_edge, client):
    """§5.2.2.10: a shared cache uses s-maxage, ignoring max-age (and Expires)."""
    origin.put("/sm1", b"a" * 100, headers={"Cache-Control": "max-age=0, s-maxage=600",
                                            "ETag": '"s1"'})
    origin.put("/sm2", b"b" * 100, headers={"Cache-Control": "max-age=600, s-maxage=0",
                                            "ETag": '"s2"', "Expires": _http_date(3600)})
    edge = make_edge(origin.url)
    for p in ("/sm1", "/sm2"):
        await fetch(client, edge.url + p)
    r = await fetch(client, edge.url + "/sm1")
    assert _hit(r) and r.body == b"a" * 100 and origin.count("/sm1") == 1
    r = await fetch(client, edge.url + "/sm2")
    assert not _hit(r) and r.body == b"b" * 100
    assert "fwd=stale" in r.cache and "fwd-status=304" in r.cache
    assert origin.count("/sm2") == 2


async def test_s_maxage_zero_forbids_stale_while_revalidate(origin, make_edge, client):
    """s-maxage implies proxy-revalidate (§5.2.2.10): stale-while-revalidate may not serve it
    stale; the edge documents this strict reading (freshness.py), a defensible choice."""
    origin.put("/smswr", b"c" * 50, headers={
        "Cache-Control": "s-maxage=0, stale-while-revalidate=600", "ETag": '"w"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/smswr")
    r = await fetch(client, edge.url + "/smswr")
    assert r.body == b"c" * 50 and "stale-while-revalidate" not in r.cache
    assert "fwd-status=304" in r.cache and origin.count("/smswr") == 2


async def test_max_age_zero_must_revalidate_never_served_stale_on_origin_error(
        origin, make_edge, client):
    """§5.2.2.2: must-revalidate forbids stale even where stale-if-error says otherwise."""
    origin.put("/mr", b"m" * 50, headers={
        "Cache-Control": "max-age=0, must-revalidate, stale-if-error=600", "ETag": '"m"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/mr")
    r = await fetch(client, edge.url + "/mr")
    assert r.status == 200 and "fwd-status=304" in r.cache
    origin.fail = 503
    r = await fetch(client, edge.url + "/mr")
    assert r.status in (502, 503, 504) and r.body != b"m" * 50


async def test_qualified_no_cache_stores_without_the_named_field(origin, make_edge, client):
    """§5.2.2.4: no-cache="X-Secret" lets a cache reuse the response without that field and
    without revalidating it; unqualified no-cache always revalidates (covered elsewhere)."""
    origin.put("/ncf", b"q" * 80, headers={
        "Cache-Control": 'no-cache="X-Secret", max-age=600', "X-Secret": "user-1",
        "X-Public": "ok", "ETag": '"q"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/ncf")
    r = await fetch(client, edge.url + "/ncf")
    assert _hit(r) and r.body == b"q" * 80
    assert "x-secret" not in r.headers and r.headers.get("x-public") == "ok"
    assert origin.count("/ncf") == 1


async def test_qualified_private_set_cookie_is_stored_without_the_cookie(
        origin, make_edge, client):
    """§5.2.2.7: private="Set-Cookie" only keeps that field out of a shared cache."""
    origin.put("/pvf", b"p" * 80, headers={
        "Cache-Control": 'private="Set-Cookie", max-age=600', "Set-Cookie": "sid=viewer1",
        "ETag": '"p"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/pvf")
    r = await fetch(client, edge.url + "/pvf")
    assert _hit(r) and r.body == b"p" * 80 and "set-cookie" not in r.headers
    assert origin.count("/pvf") == 1


async def test_no_store_on_a_multi_chunk_object_answered_206(origin, make_edge, client):
    """no-store on the origin's 206 (the edge fills by chunk ranges): never stored, each
    request served whole and correct from the origin."""
    body = payload(BIG, 3)
    origin.put("/nsr.ts", body, headers={"Cache-Control": "no-store", "ETag": '"n"'})
    edge = make_edge(origin.url)
    for i in range(3):
        r = await fetch(client, edge.url + "/nsr.ts")
        assert r.status == 200 and r.body == body and not _hit(r)
        assert "stored" not in r.cache
        assert origin.count("/nsr.ts") >= i + 1
    r = await fetch(client, edge.url + "/nsr.ts", headers={"Range": f"bytes={CHUNK}-{CHUNK + 9}"})
    assert r.status == 206 and r.body == body[CHUNK:CHUNK + 10]
    assert r.headers["content-range"] == f"bytes {CHUNK}-{CHUNK + 9}/{BIG}"


async def test_s_maxage_makes_an_authorized_response_shareable(origin, make_edge, client):
    """§3.5: with s-maxage a response to a request with Authorization may be stored and
    reused, for other credentials too."""
    origin.put("/sa", b"shared", headers={"Cache-Control": "s-maxage=600"})
    origin.put("/mra", b"mr", headers={"Cache-Control": "max-age=600, must-revalidate"})
    edge = make_edge(origin.url)
    for p in ("/sa", "/mra"):
        await fetch(client, edge.url + p, headers={"Authorization": "Bearer one"})
        r = await fetch(client, edge.url + p, headers={"Authorization": "Bearer two"})
        assert _hit(r), (p, r.cache)
        r = await fetch(client, edge.url + p)
        assert _hit(r)
        assert origin.count(p) == 1


async def test_authorized_response_without_public_is_not_served_to_anonymous(
        origin, make_edge, client):
    """§3.5: a max-age response to an Authorization request is not stored, so an anonymous
    request afterwards must go to the origin itself."""
    origin.put("/au", b"secret", headers={"Cache-Control": "max-age=600"})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/au", headers={"Authorization": "Bearer one"})
    r = await fetch(client, edge.url + "/au")
    assert not _hit(r) and origin.count("/au") >= 2


async def test_must_understand_with_no_store_on_an_understood_status_is_stored(
        origin, make_edge, client):
    """§5.2.2.3: a cache that understands the status SHOULD ignore the no-store that comes
    with must-understand."""
    origin.put("/mu", b"u" * 30, headers={
        "Cache-Control": "must-understand, no-store, max-age=600"})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/mu")
    r = await fetch(client, edge.url + "/mu")
    assert _hit(r) and r.body == b"u" * 30 and origin.count("/mu") == 1


async def test_immutable_is_a_plain_fresh_hit_and_request_no_cache_still_validates(
        origin, make_edge, client):
    """RFC 8246 is about clients; a shared cache treats immutable as max-age only. The edge
    honours request no-cache (documented in freshness.py; nginx ignores it by default)."""
    origin.put("/im", b"i" * 30, headers={"Cache-Control": "max-age=600, immutable",
                                          "ETag": '"im"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/im")
    assert _hit(await fetch(client, edge.url + "/im"))
    r = await fetch(client, edge.url + "/im", headers={"Cache-Control": "no-cache"})
    assert "fwd-status=304" in r.cache and r.body == b"i" * 30


# ==== Expires, Age and Date ================================================================
async def test_max_age_overrides_invalid_or_past_expires(origin, make_edge, client):
    """§5.3: with max-age present Expires is ignored, valid or not."""
    origin.put("/ex0", b"0", headers={"Cache-Control": "max-age=600", "Expires": "0"})
    origin.put("/expast", b"1", headers={"Cache-Control": "max-age=600",
                                         "Expires": "Thu, 01 Jan 1970 00:00:00 GMT"})
    edge = make_edge(origin.url)
    for p in ("/ex0", "/expast"):
        await fetch(client, edge.url + p)
        assert _hit(await fetch(client, edge.url + p)), p
        assert origin.count(p) == 1


async def test_expires_with_an_invalid_date_field_counts_from_receipt(origin, make_edge,
                                                                      client):
    """RFC 9110 §6.6.1: a cache adds a Date when the origin's is invalid; Expires an hour
    ahead is then an hour of freshness."""
    origin.put("/bd", b"b", headers={"Expires": _http_date(3600), "Date": "garbage"})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/bd")
    r = await fetch(client, edge.url + "/bd")
    assert _hit(r) and 3500 <= int(check_edge_member(r.cache)["ttl"] or 0) <= 3600


async def test_invalid_expires_alone_means_stale(origin, make_edge, client):
    """§5.3: an invalid Expires (e.g. "0") represents a time in the past: revalidate."""
    origin.put("/exi", b"x" * 10, headers={"Expires": "0", "ETag": '"x"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/exi")
    r = await fetch(client, edge.url + "/exi")
    assert not _hit(r) and "fwd=stale" in r.cache and r.body == b"x" * 10


async def test_origin_age_beyond_max_age_is_stale_at_once(origin, make_edge, client):
    """§4.2.3: corrected_age_value includes the origin's Age; Age 1000 > max-age 600 means
    stale on arrival, and the Age sent on is at least 1000 (§5.1)."""
    origin.put("/age", b"g" * 10, headers={"Cache-Control": "max-age=600", "Age": "1000",
                                           "ETag": '"g"'})
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/age")
    assert int(r.headers["age"]) >= 1000
    p = check_edge_member(r.cache)
    assert int(p["ttl"] or 0) <= -400
    r = await fetch(client, edge.url + "/age")
    assert not _hit(r) and "fwd=stale" in r.cache


async def test_date_far_in_the_past_makes_it_stale_and_future_date_does_not(
        origin, make_edge, client):
    """§4.2.3: apparent_age = max(0, response_time - date_value): an hour-old Date with
    max-age=600 is stale on arrival; a Date in the future gives apparent age 0."""
    origin.put("/old", b"o", headers={"Cache-Control": "max-age=600", "ETag": '"o"',
                                      "Date": _http_date(-3600)})
    origin.put("/fut", b"f", headers={"Cache-Control": "max-age=600", "ETag": '"f"',
                                      "Date": _http_date(+86400)})
    edge = make_edge(origin.url)
    for p in ("/old", "/fut"):
        await fetch(client, edge.url + p)
    r = await fetch(client, edge.url + "/old")
    assert not _hit(r) and "fwd=stale" in r.cache
    r = await fetch(client, edge.url + "/fut")
    assert _hit(r)
    assert int(r.headers["age"]) < 60


# ==== heuristic freshness and status codes ==================================================
async def test_heuristic_freshness_for_a_200_with_last_modified(origin, make_edge, client):
    """§4.2.2: a 200 with Last-Modified 10 days old and no explicit freshness may be fresh
    for a fraction of that (the edge: 10%, capped at a day)."""
    origin.put("/heur", b"h" * 10, headers={"Last-Modified": _http_date(-10 * 86400)})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/heur")
    r = await fetch(client, edge.url + "/heur")
    assert _hit(r) and origin.count("/heur") == 1
    ttl = int(check_edge_member(r.cache)["ttl"] or 0)
    assert 86000 <= ttl <= 86400


async def test_302_with_only_last_modified_is_not_heuristically_cached(origin, make_edge,
                                                                       client):
    """RFC 9110 §15.4.3: a 302 is not heuristically cacheable."""
    origin.put("/r302", b"", status=302, headers={"Location": "/elsewhere",
                                                  "Last-Modified": _http_date(-10 * 86400)})
    edge = make_edge(origin.url)
    for _ in range(2):
        r = await fetch(client, edge.url + "/r302")
        assert r.status == 302 and r.headers.get("location") == "/elsewhere"
        assert not _hit(r)
    assert origin.count("/r302") == 2


async def test_500_with_max_age_is_never_cached(origin, make_edge, client):
    origin.put("/e500", b"boom", status=500, headers={"Cache-Control": "max-age=600"})
    edge = make_edge(origin.url)
    for _ in range(2):
        r = await fetch(client, edge.url + "/e500")
        assert r.status >= 500 and not _hit(r)
    assert origin.count("/e500") == 2


async def test_301_404_410_with_explicit_freshness_are_stored_and_reused(
        origin, make_edge, client):
    """§3: any final status this cache understands may be stored when it has explicit
    freshness (nginx proxy_cache_valid 301/404, Varnish, CloudFront error caching): the second
    request is a hit, relayed intact, with its Age and a well-formed Cache-Status."""
    origin.put("/m301", b"moved\n", status=301, headers={"Location": "/new",
                                                         "Cache-Control": "max-age=600"})
    origin.put("/g410", b"gone\n", status=410, headers={"Cache-Control": "max-age=600"})
    edge = make_edge(origin.url)
    for p, st in (("/m301", 301), ("/g410", 410), ("/nope404", 404)):  # 404: max-age=5
        r = await fetch(client, edge.url + p)
        assert r.status == st and not _hit(r) and "stored" in r.cache
        check_edge_member(r.cache)
        r2 = await fetch(client, edge.url + p)
        assert r2.status == st and _hit(r2) and r2.body == r.body
        assert "age" in r2.headers
        check_edge_member(r2.cache)
        if st == 301:
            assert r2.headers["location"] == "/new" and r2.body == b"moved\n"
        assert origin.count(p) == 1


# ==== Vary ================================================================================
async def test_vary_on_two_fields_with_normalisation(origin, make_edge, client):
    """§4.1: every nominated field must match; values may be normalised only where the
    semantics are the same (case of Accept-Language, whitespace around commas), while the
    order of Accept-Language members matters and a field's absence is its own variant."""
    origin.put("/v2", b"v" * 40, headers={"Cache-Control": "max-age=600",
                                          "Vary": "Accept-Language, X-Device"})
    edge = make_edge(origin.url)
    a = {"Accept-Language": "en-US, fr", "X-Device": "tv"}
    await fetch(client, edge.url + "/v2", headers=a)
    assert origin.count("/v2") == 1
    r = await fetch(client, edge.url + "/v2", headers={"Accept-Language": "en-us,fr",
                                                       "X-Device": "tv"})
    assert _hit(r) and origin.count("/v2") == 1
    # another X-Device: another variant
    r = await fetch(client, edge.url + "/v2", headers={**a, "X-Device": "phone"})
    assert not _hit(r) and origin.count("/v2") == 2
    _, _, h = origin.requests[-1]
    assert {k.lower(): v for k, v in h.items()}.get("x-device") == "phone"
    # the X-Device value is not case-normalised (an unknown field: compared as sent)
    r = await fetch(client, edge.url + "/v2", headers={**a, "X-Device": "TV"})
    assert not _hit(r) and origin.count("/v2") == 3
    # X-Device absent: not the same as any value
    r = await fetch(client, edge.url + "/v2", headers={"Accept-Language": "en-US, fr"})
    assert not _hit(r) and origin.count("/v2") == 4
    # both earlier variants still there
    for hh in (a, {**a, "X-Device": "phone"}):
        r = await fetch(client, edge.url + "/v2", headers=hh)
        assert _hit(r), hh
    assert origin.count("/v2") == 4


async def test_post_invalidates_every_variant_of_a_varying_url(origin, make_edge, client):
    """§4.4: an unsafe method invalidates the stored responses for the target URI, which for
    a varying URL means all of its variants."""
    origin.put("/vp", b"old", headers={"Cache-Control": "max-age=600", "Vary": "X-Device"})
    edge = make_edge(origin.url)
    for d in ("tv", "phone"):
        await fetch(client, edge.url + "/vp", headers={"X-Device": d})
        assert _hit(await fetch(client, edge.url + "/vp", headers={"X-Device": d}))
    r = await fetch(client, edge.url + "/vp", "POST", data=b"x")
    assert r.status == 200
    origin.put("/vp", b"new", headers={"Cache-Control": "max-age=600", "Vary": "X-Device"})
    for d in ("tv", "phone"):
        r = await fetch(client, edge.url + "/vp", headers={"X-Device": d})
        assert r.body == b"new", d


# ==== 304 from the origin updating the stored response =====================================
async def test_304_applies_new_cache_control_and_headers_and_keeps_the_body(
        origin, make_edge, client):
    """§4.3.4: the 304's fields replace the stored ones (new Cache-Control makes it fresh;
    a new X-Meta is served) and the stored body is kept (no refetch of chunk bytes)."""
    body = payload(BIG, 7)
    origin.put("/up.ts", body, headers={"Cache-Control": "max-age=0", "ETag": '"u"',
                                        "X-Meta": "one"})
    edge = make_edge(origin.url)
    assert (await fetch(client, edge.url + "/up.ts")).body == body
    n = origin.count("/up.ts")
    origin.objects["/up.ts"].headers = {"Cache-Control": "max-age=600", "ETag": '"u"',
                                        "X-Meta": "two"}
    r = await fetch(client, edge.url + "/up.ts")
    assert r.status == 200 and r.body == body and "fwd-status=304" in r.cache
    assert r.headers.get("x-meta") == "two" and r.headers["cache-control"] == "max-age=600"
    assert origin.count("/up.ts") == n + 1
    r = await fetch(client, edge.url + "/up.ts")
    assert _hit(r) and r.body == body and r.headers.get("x-meta") == "two"
    assert origin.count("/up.ts") == n + 1


async def test_304_with_an_expires_in_the_future_refreshes(origin, make_edge, client):
    """§4.3.4: an updated Expires (with a new Date) from the 304 makes the stored response
    fresh again."""
    origin.put("/ue", b"e" * 20, headers={"Expires": "0", "ETag": '"e"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/ue")
    origin.objects["/ue"].headers = {"Expires": _http_date(3600), "ETag": '"e"'}
    r = await fetch(client, edge.url + "/ue")
    assert "fwd-status=304" in r.cache
    r = await fetch(client, edge.url + "/ue")
    assert _hit(r) and r.body == b"e" * 20 and origin.count("/ue") == 2


async def test_set_cookie_arriving_on_a_304_is_not_replayed_to_other_clients(
        origin, make_edge, client):
    """storage.py declines to store any response with Set-Cookie (one viewer's cookie must
    not reach every other viewer). A Set-Cookie that arrives on the origin's 304 during a
    revalidation must not be merged into the stored response either (RFC 9111 §3.1 lets a
    cache decline to store it; §7.3 warns about exactly this)."""
    origin.put("/sc", b"s" * 20, headers={"Cache-Control": "max-age=0", "ETag": '"sc"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/sc")
    # the origin's 304 to viewer 1's revalidation carries viewer 1's cookie
    origin.objects["/sc"].headers = {"Cache-Control": "max-age=600", "ETag": '"sc"',
                                     "Set-Cookie": "sid=viewer1"}
    r = await fetch(client, edge.url + "/sc")
    # the refreshed copy may not be shared: it is dropped and viewer 1's answer is fetched
    # whole and relayed (with viewer 1's cookie), not stored
    assert r.status == 200 and r.body == b"s" * 20 and r.headers["set-cookie"] == "sid=viewer1"
    assert origin.count("/sc") == 3 and not _hit(r)
    origin.objects["/sc"].headers = {"Cache-Control": "max-age=600", "ETag": '"sc"'}
    r = await fetch(client, edge.url + "/sc")  # viewer 2
    assert r.body == b"s" * 20
    assert "set-cookie" not in r.headers, r.headers


@pytest.mark.parametrize("cc", ["private, max-age=600", "no-store, max-age=600"])
async def test_304_turning_the_response_private_stops_shared_reuse(origin, make_edge, client,
                                                                   cc):
    """§4.3.4 updates the stored response with the 304's Cache-Control; once it says
    private (§5.2.2.7) or no-store (§5.2.2.5) a shared cache may no longer reuse it."""
    origin.put("/tp", b"t" * 20, headers={"Cache-Control": "max-age=0", "ETag": '"t"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/tp")
    origin.objects["/tp"].headers = {"Cache-Control": cc, "ETag": '"t"'}
    r = await fetch(client, edge.url + "/tp")
    assert r.status == 200 and r.body == b"t" * 20
    assert origin.count("/tp") == 3  # the 304, then the whole answer, relayed
    r = await fetch(client, edge.url + "/tp")
    assert not _hit(r), (r.cache, r.headers.get("cache-control"))
    assert r.body == b"t" * 20 and origin.count("/tp") == 4


async def test_revalidation_answered_200_no_store_serves_new_and_drops_old(
        origin, make_edge, client):
    """The object became uncacheable: the new answer is served and the old copy is not
    served again as a hit."""
    origin.put("/gone", b"old" * 10, headers={"Cache-Control": "max-age=0", "ETag": '"1"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/gone")
    origin.put("/gone", b"new" * 10, headers={"Cache-Control": "no-store", "ETag": '"2"'})
    for _ in range(2):
        r = await fetch(client, edge.url + "/gone")
        assert r.status == 200 and r.body == b"new" * 10 and not _hit(r)


async def test_conflicting_duplicate_max_age_is_treated_as_stale(origin, make_edge, client):
    """§4.2.1: with more than one value for a directive, use the first or treat the
    response as stale; the edge treats it as stale (documented in cachecontrol.py)."""
    origin.put("/dup", b"d", headers={"Cache-Control": "max-age=600, max-age=60",
                                      "ETag": '"d"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/dup")
    r = await fetch(client, edge.url + "/dup")
    assert not _hit(r) and "fwd-status=304" in r.cache


# ==== client request directives ============================================================
async def test_request_max_age_zero_and_pragma_revalidate(origin, make_edge, client):
    """§5.2.1.1 / §5.4: the edge honours request max-age=0 and Pragma: no-cache (documented
    in freshness.py; nginx ignores them by default): a conditional request, a 304."""
    origin.put("/rq", b"r" * 20, headers={"Cache-Control": "max-age=600", "ETag": '"r"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/rq")
    r = await fetch(client, edge.url + "/rq", headers={"Cache-Control": "max-age=0"})
    assert "fwd=stale" in r.cache and "fwd-status=304" in r.cache and r.body == b"r" * 20
    _, _, h = origin.requests[-1]
    assert h.get("If-None-Match") == '"r"'
    r = await fetch(client, edge.url + "/rq", headers={"Pragma": "no-cache"})
    assert "fwd-status=304" in r.cache
    assert origin.count("/rq") == 3
    # max-age larger than the age: a plain hit
    r = await fetch(client, edge.url + "/rq", headers={"Cache-Control": "max-age=100"})
    assert _hit(r) and origin.count("/rq") == 3
    # min-fresh beyond the freshness left (§5.2.1.3): validate
    r = await fetch(client, edge.url + "/rq", headers={"Cache-Control": "min-fresh=900"})
    assert "fwd-status=304" in r.cache and origin.count("/rq") == 4


async def test_request_no_store_is_neither_served_from_nor_stored(origin, make_edge, client):
    """§5.2.1.5: nothing of this request or its response is stored; the edge passes it
    through (it may still have served a stored copy, but it goes forward: a defensible
    choice) and a later plain request is still a miss."""
    origin.put("/rns", b"n" * 10, headers={"Cache-Control": "max-age=600"})
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/rns", headers={"Cache-Control": "no-store"})
    assert r.status == 200 and r.body == b"n" * 10 and not _hit(r)
    check_edge_member(r.cache)
    r = await fetch(client, edge.url + "/rns")
    assert "fwd=miss" in r.cache and origin.count("/rns") == 2


# ==== conditionals (not covered elsewhere) =================================================
async def test_if_modified_since_invalid_is_ignored_and_valid_gives_304(origin, make_edge,
                                                                        client):
    lm = _http_date(-86400)
    origin.put("/ims", b"i" * 20, headers={"Cache-Control": "max-age=600", "Last-Modified": lm})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/ims")
    r = await fetch(client, edge.url + "/ims", headers={"If-Modified-Since": "yesterday"})
    assert r.status == 200 and r.body == b"i" * 20
    r = await fetch(client, edge.url + "/ims", headers={"If-Modified-Since": lm})
    assert r.status == 304 and r.body == b""
    assert r.headers.get("last-modified") == lm and "cache-control" in r.headers
    check_edge_member(r.cache)


async def test_if_unmodified_since_older_than_last_modified_is_412(origin, make_edge, client):
    lm = _http_date(-86400)
    origin.put("/ius", b"i" * 20, headers={"Cache-Control": "max-age=600", "Last-Modified": lm})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/ius")
    r = await fetch(client, edge.url + "/ius",
                    headers={"If-Unmodified-Since": _http_date(-2 * 86400)})
    assert r.status == 412
    check_edge_member(r.cache)
    r = await fetch(client, edge.url + "/ius", headers={"If-Unmodified-Since": _http_date()})
    assert r.status == 200 and r.body == b"i" * 20


async def test_preconditions_on_a_cold_cache_are_evaluated_on_the_fetched_object(
        origin, make_edge, client):
    """A conditional request on a miss: the edge fetches unconditionally and evaluates the
    client's precondition itself (304 / 412) on what it got."""
    origin.put("/cold1", b"c" * 20, headers={"Cache-Control": "max-age=600", "ETag": '"c"'})
    origin.put("/cold2", b"d" * 20, headers={"Cache-Control": "max-age=600", "ETag": '"d"'})
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/cold1", headers={"If-None-Match": 'W/"c"'})
    assert r.status == 304 and r.headers.get("etag") == '"c"'
    r = await fetch(client, edge.url + "/cold2", headers={"If-Match": '"zz"'})
    assert r.status == 412


# ==== ranges ==============================================================================
async def test_overlapping_unsorted_multi_range_parts_are_exact(origin, make_edge, client):
    """§14.2/§14.6: overlapping ranges may be coalesced; every part must carry the right
    bytes, Content-Range, and Content-Length must be the body's length. On a cold cache
    (chunks still in flight) and warm."""
    body = payload(BIG, 9)
    origin.put("/mr.ts", body, headers={"Cache-Control": "max-age=600", "ETag": '"mr"',
                                         "Content-Type": "video/mp2t"})
    edge = make_edge(origin.url)
    rng = (f"bytes={2 * CHUNK + 5}-{2 * CHUNK + 100},0-9,{CHUNK - 3}-{CHUNK + 3},"
           f"5-20,-7,{2 * CHUNK + 50}-{2 * CHUNK + 60}")
    for _ in range(2):
        r = await fetch(client, edge.url + "/mr.ts", headers={"Range": rng})
        assert r.status == 206
        assert int(r.headers["content-length"]) == len(r.body)
        parts = parse_multipart(r.headers["content-type"], r.body)
        got = []
        for cr, data in parts:
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", cr)
            assert m and int(m[3]) == BIG, cr
            a, b = int(m[1]), int(m[2]) + 1
            assert data == body[a:b], cr
            got.append((a, b))
        # every requested byte is in some part, and no part overlaps another
        wanted = {*range(2 * CHUNK + 5, 2 * CHUNK + 101), *range(0, 21),
                  *range(CHUNK - 3, CHUNK + 4), *range(BIG - 7, BIG)}
        covered = [i for a, b in got for i in range(a, b)]
        assert len(covered) == len(set(covered)) and set(covered) == wanted


async def test_adjacent_ranges_coalesced_into_one_part(origin, make_edge, client):
    body = payload(1000, 10)
    origin.put("/adj", body, headers={"Cache-Control": "max-age=600"})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/adj")
    r = await fetch(client, edge.url + "/adj", headers={"Range": "bytes=10-19,0-9"})
    assert r.status == 206
    if r.headers["content-type"].startswith("multipart/"):
        parts = parse_multipart(r.headers["content-type"], r.body)
        assert b"".join(d for _, d in parts) in (body[10:20] + body[0:10], body[0:20])
    else:
        assert r.headers["content-range"] == "bytes 0-19/1000" and r.body == body[:20]


async def test_ranges_on_a_zero_length_object(origin, make_edge, client):
    """An empty representation has no byte to select: the edge ignores Range (a 200 with an
    empty body; §14.2 lets a server ignore Range), documented in ranges.py. A 416 would be
    defensible too; what matters is a well-framed answer and no error."""
    origin.put("/empty", b"", headers={"Cache-Control": "max-age=600", "ETag": '"z"'})
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/empty")
    assert r.status == 200 and r.body == b"" and r.headers["content-length"] == "0"
    n = origin.count("/empty")  # the fill's chunk range got a 416, then a plain GET
    for rng in ("bytes=0-0", "bytes=-1", "bytes=0-"):
        r = await fetch(client, edge.url + "/empty", headers={"Range": rng})
        assert r.status in (200, 416) and r.body in (b"", b"range not satisfiable\n"), rng
        if r.status == 416:
            assert r.headers["content-range"] == "bytes */0"
    r = await fetch(client, edge.url + "/empty")
    assert _hit(r) and origin.count("/empty") == n


async def test_range_past_the_end_is_416_with_length(origin, make_edge, client):
    body = payload(BIG, 11)
    origin.put("/far.ts", body, headers={"Cache-Control": "max-age=600", "ETag": '"f"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/far.ts")
    r = await fetch(client, edge.url + "/far.ts", headers={"Range": f"bytes={BIG}-"})
    assert r.status == 416 and r.headers["content-range"] == f"bytes */{BIG}"
    check_edge_member(r.cache)


# ==== HEAD and GET =========================================================================
async def test_head_then_get_and_get_then_head(origin, make_edge, client):
    """RFC 9110 §9.3.2: HEAD gets the GET's header fields, no body; a HEAD miss may be filled
    with a GET so the following GET is a hit."""
    body = payload(BIG, 12)
    origin.put("/hg.ts", body, headers={"Cache-Control": "max-age=600", "ETag": '"hg"'})
    origin.put("/gh.ts", body, headers={"Cache-Control": "max-age=600", "ETag": '"gh"'})
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/hg.ts", "HEAD")
    assert r.status == 200 and r.body == b"" and r.headers["content-length"] == str(BIG)
    assert r.headers["etag"] == '"hg"'
    edge.settle()
    r = await fetch(client, edge.url + "/hg.ts")
    assert r.status == 200 and r.body == body
    r = await fetch(client, edge.url + "/gh.ts")
    assert r.body == body
    r = await fetch(client, edge.url + "/gh.ts", "HEAD")
    assert r.status == 200 and _hit(r) and r.body == b""
    assert r.headers["content-length"] == str(BIG) and r.headers["etag"] == '"gh"'
    assert origin.count("/gh.ts", "HEAD") == 0


# ==== invalidation =========================================================================
async def test_post_201_location_relative_invalidates_that_uri(loc_origin, make_edge, client):
    """§4.4: a cache MAY invalidate the URIs in Location/Content-Location on the same
    authority; the edge does it for Content-Location (tested elsewhere) and Location."""
    loc_origin.put("/col/item1", b"v1", headers={"Cache-Control": "max-age=600"})
    edge = make_edge(loc_origin.url)
    await fetch(client, edge.url + "/col/item1")
    assert _hit(await fetch(client, edge.url + "/col/item1"))
    r = await fetch(client, edge.url + "/col", "POST", data=b"x",
                    headers={"X-Test-Loc": "/col/item1"})
    assert r.status == 201
    loc_origin.put("/col/item1", b"v2", headers={"Cache-Control": "max-age=600"})
    r = await fetch(client, edge.url + "/col/item1")
    assert r.body == b"v2"


async def test_failed_unsafe_method_does_not_invalidate(origin, make_edge, client):
    """§4.4: only a non-error status invalidates."""
    origin.put("/keep", b"k", headers={"Cache-Control": "max-age=600"})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/keep")
    origin.fail = 500
    r = await fetch(client, edge.url + "/keep", "DELETE")
    assert r.status == 500
    origin.fail = None
    assert _hit(await fetch(client, edge.url + "/keep"))


async def test_delete_and_put_invalidate_query_variants_separately(origin, make_edge, client):
    """The target URI includes the query: DELETE /q?a=1 drops that entry, not /q?a=2."""
    origin.put("/q", b"q", headers={"Cache-Control": "max-age=600"})
    edge = make_edge(origin.url)
    for q in ("?a=1", "?a=2"):
        await fetch(client, edge.url + "/q" + q)
        assert _hit(await fetch(client, edge.url + "/q" + q))
    r = await fetch(client, edge.url + "/q?a=1", "DELETE")
    assert r.status == 200
    assert not _hit(await fetch(client, edge.url + "/q?a=1"))
    assert _hit(await fetch(client, edge.url + "/q?a=2"))
    r = await fetch(client, edge.url + "/q?a=2", "PUT", data=b"new")
    assert r.status == 200
    assert not _hit(await fetch(client, edge.url + "/q?a=2"))


# ==== Cache-Status =========================================================================
async def test_cache_status_is_a_well_formed_list_in_every_outcome(origin, make_edge, client):
    """RFC 9211 §2: an sf-list, one member per cache; hit xor fwd; stored only with fwd;
    ttl an integer."""
    body = payload(BIG, 13)
    origin.put("/cs.ts", body, headers={"Cache-Control": "max-age=600", "ETag": '"cs"'})
    origin.put("/csr", b"r", headers={"Cache-Control": "max-age=0", "ETag": '"csr"'})
    origin.put("/csn", b"n", headers={"Cache-Control": "no-store"})
    edge = make_edge(origin.url)
    seen = []
    r = await fetch(client, edge.url + "/cs.ts")
    p = check_edge_member(r.cache)
    assert p.get("fwd") == "miss" and "stored" in p and "ttl" in p
    r = await fetch(client, edge.url + "/cs.ts")
    p = check_edge_member(r.cache)
    assert "hit" in p and 590 <= int(p["ttl"] or 0) <= 600
    for path, method, hdrs in (
        ("/cs.ts", "GET", {"Range": "bytes=0-0,5-6"}),
        ("/cs.ts", "HEAD", {}),
        ("/cs.ts", "GET", {"If-None-Match": '"cs"'}),
        ("/csr", "GET", {}), ("/csr", "GET", {}),
        ("/csn", "GET", {}), ("/csn", "GET", {}),
        ("/cs.ts", "GET", {"Cache-Control": "only-if-cached", "Range": "bytes=9-9"}),
        ("/never", "GET", {"Cache-Control": "only-if-cached"}),
        ("/missing", "GET", {}),
        ("/cs.ts", "POST", {}),
    ):
        r = await fetch(client, edge.url + path, method, headers=hdrs)
        seen.append((path, method, r.status, r.cache))
        check_edge_member(r.cache)
    assert [s[2] for s in seen] == [206, 200, 304, 200, 200, 200, 200, 206, 504, 404, 200]


async def test_cache_status_from_an_upstream_cache_is_preserved(origin, make_edge, client):
    """RFC 9211 §2: caches SHOULD preserve the existing Cache-Status value and append their
    own member (the list is ordered origin to client): a shield's member is kept, on the
    miss that stores the answer and on the hits that replay it."""
    origin.put("/up", b"u", headers={"Cache-Control": "max-age=600",
                                     "Cache-Status": "shield; hit; ttl=30"})
    edge = make_edge(origin.url)
    for _ in range(4):  # the miss, a general-path hit, then the prepared (hot) answers
        r = await fetch(client, edge.url + "/up")
        members = parse_cache_status(r.cache)
        assert members[0][0] == "shield" and members[-1][0] == "edgecdn", r.cache
        assert len(members) == 2 and r.cache.startswith("shield; hit; ttl=30, "), r.cache
    assert "hit" in members[-1][1] and origin.count("/up") == 1


async def test_cache_status_from_upstream_on_a_relayed_answer_is_preserved(origin, make_edge,
                                                                           client):
    """The same for answers the edge relays without storing (a 404 here)."""
    origin.put("/up404", b"x", status=404, headers={"Cache-Status": "shield; fwd=miss"})
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/up404")
    assert r.status == 404
    members = parse_cache_status(r.cache)
    assert [m[0] for m in members] == ["shield", "edgecdn"], r.cache


def test_cache_status_parser_self_check() -> None:
    assert parse_cache_status('a; hit, "b c"; fwd=miss; ttl=-3; detail="x y"') == [
        ("a", {"hit": None}), ('"b c"', {"fwd": "miss", "ttl": "-3", "detail": '"x y"'})]
    with pytest.raises(AssertionError):
        parse_cache_status("edgecdn; hit;; ttl=1")


_ = aiohttp  # the client fixture's type


async def test_vary_field_split_over_two_lines_matches_the_combined_value(origin, make_edge,
                                                                          client):
    """RFC 9111 §4.1 / RFC 9110 §5.3: field lines with the same name are one list; "en" and
    "fr" on two lines select the same variant as "en, fr" on one."""
    from multidict import CIMultiDict

    origin.put("/vl", b"l" * 10, headers={"Cache-Control": "max-age=600",
                                          "Vary": "Accept-Language"})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/vl", headers={"Accept-Language": "en, fr"})
    two = CIMultiDict([("Accept-Language", "en"), ("Accept-Language", "fr")])
    async with client.get(edge.url + "/vl", headers=two) as r:
        assert r.status == 200 and await r.read() == b"l" * 10
        assert "hit" in r.headers["Cache-Status"].split("; "), r.headers["Cache-Status"]
    assert origin.count("/vl") == 1
