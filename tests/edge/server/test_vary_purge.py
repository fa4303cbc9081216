"""A soft purge of a varying URL revalidates its variants (304 -> reused), like a plain one."""

from __future__ import annotations

import json

from tests.edge.server.conftest import CHUNK, fetch, payload

AUTH = {"Authorization": "Bearer sekrit"}
VH = {"Cache-Control": "max-age=600", "Vary": "Accept-Encoding", "ETag": '"v1"'}


async def _soft_purge(client, edge, doc: bytes) -> int:
    r = await fetch(client, edge.url + "/admin/purge", "POST", headers=AUTH, data=doc)
    assert r.status == 200
    return json.loads(r.body)["purged"]


async def test_soft_purged_variants_are_revalidated_not_refetched(origin, make_edge, client):
    body = payload(2 * CHUNK + 5)
    origin.put("/v.ts", body, headers=VH)
    edge = make_edge(origin.url)
    for ae in ("gzip", "br"):
        r = await fetch(client, edge.url + "/v.ts", headers={"Accept-Encoding": ae})
        assert r.body == body
    edge.settle()
    n = origin.count("/v.ts")
    assert await _soft_purge(client, edge, b'{"key": "/v.ts", "soft": true}') == 1
    for ae in ("gzip", "br"):
        r = await fetch(client, edge.url + "/v.ts", headers={"Accept-Encoding": ae})
        assert r.status == 200 and r.body == body
        assert "fwd=stale" in r.cache and "fwd-status=304" in r.cache, r.cache
        _, _, h = origin.requests[-1]
        assert h.get("If-None-Match") == '"v1"' and h.get("Accept-Encoding") == ae
    assert origin.count("/v.ts") == n + 2  # one conditional request per variant, no bodies
    for ae in ("gzip", "br"):  # revalidated: hits again
        r = await fetch(client, edge.url + "/v.ts", headers={"Accept-Encoding": ae})
        assert r.cache.startswith("edgecdn; hit") and r.body == body
    # a variant first stored after the purge is fresh, and the others stay stored
    r = await fetch(client, edge.url + "/v.ts", headers={"Accept-Encoding": "zstd"})
    assert "fwd=miss" in r.cache
    r = await fetch(client, edge.url + "/v.ts", headers={"Accept-Encoding": "zstd"})
    assert r.cache.startswith("edgecdn; hit")
    r = await fetch(client, edge.url + "/v.ts", headers={"Accept-Encoding": "gzip"})
    assert r.cache.startswith("edgecdn; hit")
    assert origin.count("/v.ts") == n + 2 + 3  # zstd: 3 chunks


async def test_soft_purged_variant_that_changed_is_replaced(origin, make_edge, client):
    origin.put("/w", b"old" * 10, headers=VH)
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/w", headers={"Accept-Encoding": "gzip"})
    await fetch(client, edge.url + "/w", headers={"Accept-Encoding": "br"})
    await _soft_purge(client, edge, b'{"key": "/w", "soft": true}')
    origin.put("/w", b"new" * 10, headers={**VH, "ETag": '"v2"'})
    r = await fetch(client, edge.url + "/w", headers={"Accept-Encoding": "gzip"})
    assert r.body == b"new" * 10 and r.headers["etag"] == '"v2"'
    r = await fetch(client, edge.url + "/w", headers={"Accept-Encoding": "gzip"})
    assert r.cache.startswith("edgecdn; hit") and r.body == b"new" * 10
    r = await fetch(client, edge.url + "/w", headers={"Accept-Encoding": "br"})
    assert r.body == b"new" * 10 and "hit" not in r.cache.split("; ")


async def test_soft_purge_twice_revalidates_again(origin, make_edge, client):
    origin.put("/t", b"t" * 10, headers=VH)
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/t", headers={"Accept-Encoding": "gzip"})
    for _ in range(2):
        await _soft_purge(client, edge, b'{"key": "/t", "soft": true}')
        r = await fetch(client, edge.url + "/t", headers={"Accept-Encoding": "gzip"})
        assert "fwd-status=304" in r.cache
        r = await fetch(client, edge.url + "/t", headers={"Accept-Encoding": "gzip"})
        assert r.cache.startswith("edgecdn; hit")
    assert origin.count("/t") == 3


async def test_hard_purge_of_a_varying_url_still_drops_every_variant(origin, make_edge,
                                                                    client):
    origin.put("/h", b"h" * 10, headers=VH)
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/h", headers={"Accept-Encoding": "gzip"})
    await _soft_purge(client, edge, b'{"key": "/h"}')
    r = await fetch(client, edge.url + "/h", headers={"Accept-Encoding": "gzip"})
    assert r.cache.startswith("edgecdn; fwd=miss") and origin.count("/h") == 2
