"""RFC 9111 shared-cache behaviour against an HTTP origin, through real sockets."""

from __future__ import annotations

import asyncio

from tests.edge.server.conftest import CHUNK, fetch, payload


async def _until(pred, timeout=5.0):
    """Wait for a condition driven by another thread (the origin's request log)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


async def test_stale_is_revalidated_with_a_conditional_request_304(origin, make_edge, client):
    body = payload(2 * CHUNK)
    origin.put("/s.ts", body, headers={"Cache-Control": "max-age=0", "ETag": '"a"'})
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/s.ts")
    assert r.body == body
    r = await fetch(client, edge.url + "/s.ts")
    assert r.status == 200 and r.body == body
    assert "fwd=stale" in r.cache and "fwd-status=304" in r.cache
    # the revalidation carried the validator and asked for one chunk only
    _, _, h = [x for x in origin.requests if x[1] == "/s.ts"][-1]
    assert h.get("If-None-Match") == '"a"'
    # chunk bytes were not fetched again: 2 fills + 1 revalidation
    assert origin.count("/s.ts") == 3


async def test_changed_object_after_revalidation_is_served_new(origin, make_edge, client):
    origin.put("/c.ts", payload(CHUNK + 10, 1), headers={"Cache-Control": "max-age=0",
                                                         "ETag": '"v1"'})
    edge = make_edge(origin.url)
    assert (await fetch(client, edge.url + "/c.ts")).body == payload(CHUNK + 10, 1)
    new = payload(3 * CHUNK + 1, 2)
    origin.put("/c.ts", new, headers={"Cache-Control": "max-age=0", "ETag": '"v2"'})
    r = await fetch(client, edge.url + "/c.ts")
    assert r.status == 200 and r.body == new and r.headers["etag"] == '"v2"'


async def test_no_store_and_private_are_never_stored(origin, make_edge, client):
    for path, cc in (("/ns", "no-store"), ("/pv", "private, max-age=60")):
        origin.put(path, b"x" * 100, headers={"Cache-Control": cc})
    edge = make_edge(origin.url)
    for path in ("/ns", "/pv"):
        for _ in range(3):
            r = await fetch(client, edge.url + path)
            assert r.status == 200 and r.body == b"x" * 100
            assert "hit" not in r.cache.split("; ")
        assert origin.count(path) >= 3


async def test_no_cache_response_revalidates_every_time(origin, make_edge, client):
    origin.put("/nc", b"y" * 50, headers={"Cache-Control": "no-cache, max-age=600",
                                          "ETag": '"n"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/nc")
    for _ in range(2):
        r = await fetch(client, edge.url + "/nc")
        assert r.status == 200 and r.body == b"y" * 50
        assert "fwd-status=304" in r.cache
    assert origin.count("/nc") == 3


async def test_expires_and_heuristic_and_request_max_age(origin, make_edge, client):
    origin.put("/e", b"e" * 10, headers={"Expires": "Thu, 01 Jan 2099 00:00:00 GMT"})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/e")
    r = await fetch(client, edge.url + "/e")
    assert r.cache.startswith("edgecdn; hit")
    # a client's no-cache forces validation (request directives honoured)
    r = await fetch(client, edge.url + "/e", headers={"Cache-Control": "no-cache"})
    assert "hit" not in r.cache.split("; ")


async def test_stale_while_revalidate_serves_stale_and_revalidates_once(origin, make_edge,
                                                                       client):
    origin.put("/swr", b"s" * 100, headers={"Cache-Control": "max-age=0, stale-while-revalidate=60",
                                            "ETag": '"w"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/swr")
    origin.delay = 0.3  # revalidation in flight while the next requests arrive
    rs = await asyncio.gather(*(fetch(client, edge.url + "/swr") for _ in range(5)))
    for r in rs:
        assert r.status == 200 and r.body == b"s" * 100
        assert "stale-while-revalidate" in r.cache
    await _until(lambda: origin.count("/swr") == 2)
    await asyncio.sleep(0.4)
    assert origin.count("/swr") == 2  # one background revalidation for five stale hits


async def test_stale_if_error_serves_stale_else_502(origin, make_edge, client):
    origin.put("/sie", b"i" * 100, headers={"Cache-Control": "max-age=0, stale-if-error=600",
                                            "ETag": '"i"'})
    origin.put("/nosie", b"j" * 100, headers={"Cache-Control": "max-age=0", "ETag": '"j"'})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/sie")
    await fetch(client, edge.url + "/nosie")
    origin.fail = 503
    r = await fetch(client, edge.url + "/sie")
    assert r.status == 200 and r.body == b"i" * 100
    assert "fwd=stale" in r.cache and "stale-if-error" in r.cache
    r = await fetch(client, edge.url + "/nosie")
    assert r.status == 502 and b"503" in r.body


async def test_origin_down_or_slow_gives_502_504_with_reason(origin, make_edge, client):
    origin.put("/d", b"d" * 10, headers={"Cache-Control": "max-age=60"})
    edge = make_edge(origin.url, origin={"first_byte_timeout": 0.3, "connect_timeout": 0.3})
    origin.down = True
    r = await fetch(client, edge.url + "/d")
    assert r.status == 502 and r.body.strip()
    origin.down = False
    origin.delay = 1.0
    r = await fetch(client, edge.url + "/d2")
    assert r.status == 504 and b"timed out" in r.body
    origin.delay = 0
    unreachable = make_edge("http://127.0.0.1:9")  # nothing listens on the discard port
    r = await fetch(client, unreachable.url + "/x")
    assert r.status == 502


async def test_vary_variants_do_not_mix(origin, make_edge, client):
    origin.put("/v", b"plain" * 10, headers={"Cache-Control": "max-age=60",
                                             "Vary": "Accept-Encoding"})
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/v", headers={"Accept-Encoding": "gzip"})
    assert r.status == 200
    r = await fetch(client, edge.url + "/v", headers={"Accept-Encoding": "gzip"})
    assert r.cache.startswith("edgecdn; hit")
    r = await fetch(client, edge.url + "/v", headers={"Accept-Encoding": "br"})
    assert "hit" not in r.cache.split("; ")
    _, _, h = origin.requests[-1]
    assert h.get("Accept-Encoding") == "br"
    # both variants are kept side by side (normalised values: gzip == GZIP)
    for ae in ("GZIP", "br", "gzip"):
        r = await fetch(client, edge.url + "/v", headers={"Accept-Encoding": ae})
        assert r.cache.startswith("edgecdn; hit") and r.body == b"plain" * 10, ae
    n = origin.count("/v")
    assert n == 2
    # a request without the field is a third variant
    r = await fetch(client, edge.url + "/v")
    assert "fwd=miss" in r.cache and origin.count("/v") == 3
    # purging the URL drops every variant
    r = await fetch(client, edge.url + "/admin/purge", "POST",
                    headers={"Authorization": "Bearer sekrit"}, data=b'{"key": "/v"}')
    r = await fetch(client, edge.url + "/v", headers={"Accept-Encoding": "gzip"})
    assert "fwd=miss" in r.cache and origin.count("/v") == 4
    origin.put("/star", b"s", headers={"Cache-Control": "max-age=60", "Vary": "*"})
    for _ in range(2):
        r = await fetch(client, edge.url + "/star")
        assert "hit" not in r.cache.split("; ")


async def test_authorization_requests_not_shared_unless_public(origin, make_edge, client):
    origin.put("/a", b"secret", headers={"Cache-Control": "max-age=60"})
    origin.put("/pub", b"public", headers={"Cache-Control": "public, max-age=60"})
    edge = make_edge(origin.url)
    auth = {"Authorization": "Bearer x"}
    counts = []
    for _ in range(3):
        r = await fetch(client, edge.url + "/a", headers=auth)
        assert r.body == b"secret" and "hit" not in r.cache.split("; ")
        counts.append(origin.count("/a"))
    # every request reaches the origin; once known uncacheable, with no extra fill request
    assert counts[2] - counts[1] == 1 and counts[1] - counts[0] == 1
    await fetch(client, edge.url + "/pub", headers=auth)
    r = await fetch(client, edge.url + "/pub", headers=auth)
    assert r.cache.startswith("edgecdn; hit")


async def test_unsafe_method_passes_through_and_invalidates(origin, make_edge, client):
    origin.put("/obj", b"one", headers={"Cache-Control": "max-age=600"})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/obj")
    assert (await fetch(client, edge.url + "/obj")).cache.startswith("edgecdn; hit")
    r = await fetch(client, edge.url + "/obj", "POST", data=b"payload")
    assert r.status == 200 and r.body == b"POST ok 7\n" and "fwd=method" in r.cache
    origin.put("/obj", b"two", headers={"Cache-Control": "max-age=600"})
    r = await fetch(client, edge.url + "/obj")
    assert r.body == b"two"


async def test_404_is_relayed_and_collapsed(origin, make_edge, client):
    edge = make_edge(origin.url)
    origin.delay = 0.2
    rs = await asyncio.gather(*(fetch(client, edge.url + "/missing") for _ in range(5)))
    assert all(r.status == 404 and r.body == b"no such object\n" for r in rs)
    assert origin.count("/missing") == 1


async def test_requests_to_the_origin_carry_via(origin, make_edge, client):
    origin.put("/via", b"v", headers={"Cache-Control": "max-age=60"})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/via", headers={"Via": "1.1 player-proxy"})
    await fetch(client, edge.url + "/via", "POST", data=b"x")
    vias = [h.get("Via") for _, p, h in origin.requests if p == "/via"]
    assert vias == ["1.1 player-proxy, 1.1 edgecdn", "1.1 edgecdn"]


async def test_unsafe_method_also_invalidates_content_location(origin, make_edge, client):
    origin.put("/base/list", b"old list", headers={"Cache-Control": "max-age=600"})
    edge = make_edge(origin.url + "/base")
    await fetch(client, edge.url + "/list")
    assert (await fetch(client, edge.url + "/list")).cache.startswith("edgecdn; hit")
    host = origin.url.split("//")[1]
    r = await fetch(client, edge.url + "/items", "POST", data=b"new",
                    headers={"X-Test-Location": f"http://{host}/base/list"})
    assert r.status == 200
    origin.put("/base/list", b"new list", headers={"Cache-Control": "max-age=600"})
    r = await fetch(client, edge.url + "/list")
    assert r.body == b"new list"
    # another authority's Content-Location is ignored (§4.4)
    await fetch(client, edge.url + "/items", "POST", data=b"x",
                headers={"X-Test-Location": "http://elsewhere.example/base/list"})
    assert (await fetch(client, edge.url + "/list")).cache.startswith("edgecdn; hit")
