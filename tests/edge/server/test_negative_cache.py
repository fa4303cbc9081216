"""Negative caching (edge.server.negative): 404, 410, 301... stored for their freshness, or a
404/410 without any for origin.negative_ttl, and dropped by a new object, a purge (key or
prefix, from any worker) or an unsafe method. Real edges and origins through sockets."""

from __future__ import annotations

import asyncio
import json
import time

import boto3

from edge.http.model import StoredResponse
from edge.server.negative import NegativeCache
from tests.conftest import free_port
from tests.edge.server.conftest import EdgeProcess, fetch
from tests.edge.server.test_processes import _args

AUTH = {"Authorization": "Bearer sekrit"}


def _hit(r) -> bool:
    return "hit" in r.cache.split("; ")


async def _purge(client, edge_url: str, doc: dict) -> None:
    r = await fetch(client, edge_url + "/admin/purge", "POST", headers=AUTH,
                    data=json.dumps(doc).encode())
    assert r.status == 200, r.body


async def test_a_404_with_freshness_is_one_origin_request_until_it_expires(
        origin, make_edge, client):
    origin.put("/live/seg9.ts", b"not yet\n", status=404, headers={"Cache-Control": "max-age=1"})
    edge = make_edge(origin.url)
    first = await fetch(client, edge.url + "/live/seg9.ts")
    assert first.status == 404 and "fwd=miss" in first.cache and "stored" in first.cache
    for _ in range(5):
        r = await fetch(client, edge.url + "/live/seg9.ts")
        assert r.status == 404 and _hit(r) and r.body == b"not yet\n"
        assert int(r.headers["age"]) <= 1
    head = await fetch(client, edge.url + "/live/seg9.ts", "HEAD")
    assert head.status == 404 and _hit(head) and head.body == b""
    assert origin.count("/live/seg9.ts") == 1
    m = await fetch(client, edge.url + "/metrics")
    assert b"\nedgecdn_negative_answers 1.0\n" in m.body
    await asyncio.sleep(1.2)  # stale: fetched again (never revalidated)
    origin.put("/live/seg9.ts", b"seg", headers={"Cache-Control": "max-age=60"})
    r = await fetch(client, edge.url + "/live/seg9.ts")
    assert r.status == 200 and r.body == b"seg"
    assert origin.count("/live/seg9.ts") == 2


async def test_without_freshness_a_404_is_kept_only_with_negative_ttl(origin, make_edge,
                                                                      client):
    origin.put("/a/x.ts", b"nope\n", status=404)  # no Cache-Control, no Expires
    plain = make_edge(origin.url)
    for _ in range(2):
        r = await fetch(client, plain.url + "/a/x.ts")
        assert r.status == 404 and not _hit(r) and "stored" not in r.cache
    assert origin.count("/a/x.ts") == 2

    neg = make_edge(origin.url, origin={"negative_ttl": 30})
    r = await fetch(client, neg.url + "/a/x.ts")
    assert r.status == 404 and "stored" in r.cache and "ttl=" in r.cache
    r = await fetch(client, neg.url + "/a/x.ts")
    assert r.status == 404 and _hit(r)
    assert origin.count("/a/x.ts") == 3
    # the object appears at the origin: the negative answer stands until it is purged
    origin.put("/a/x.ts", b"here", headers={"Cache-Control": "max-age=60"})
    assert (await fetch(client, neg.url + "/a/x.ts")).status == 404
    await _purge(client, neg.url, {"key": "/a/x.ts"})
    r = await fetch(client, neg.url + "/a/x.ts")
    assert r.status == 200 and r.body == b"here"


async def test_prefix_and_soft_purges_and_unsafe_methods_drop_negative_answers(
        origin, make_edge, client):
    paths = ["/t1/a.ts", "/t1/b.ts", "/t2/c.ts", "/t3/d.ts"]
    for p in paths:
        origin.put(p, b"gone\n", status=410, headers={"Cache-Control": "max-age=600"})
    edge = make_edge(origin.url)
    for p in paths:
        await fetch(client, edge.url + p)
        assert _hit(await fetch(client, edge.url + p))
    await _purge(client, edge.url, {"prefix": "/t1/"})
    await _purge(client, edge.url, {"key": "/t2/c.ts", "soft": True})
    r = await fetch(client, edge.url + "/t3/d.ts", "DELETE")
    assert r.status == 200
    for p in paths:
        r = await fetch(client, edge.url + p)
        assert r.status == 410 and not _hit(r), p
    assert all(origin.count(p) == 2 for p in paths)


async def test_what_is_never_kept(origin, make_edge, client):
    cases = {
        "/nc": (404, {"Cache-Control": "no-cache, max-age=600"}),
        "/vary": (404, {"Cache-Control": "max-age=600", "Vary": "Accept-Language"}),
        "/priv": (404, {"Cache-Control": "private, max-age=600"}),
        "/forbidden": (403, {"Cache-Control": "max-age=600"}),  # not a status we keep
        "/cookie": (404, {"Cache-Control": "max-age=600", "Set-Cookie": "a=b"}),
    }
    for p, (st, h) in cases.items():
        origin.put(p, b"x", status=st, headers=h)
    edge = make_edge(origin.url, origin={"negative_ttl": 600})
    for p, (st, _) in cases.items():
        for _ in range(2):
            r = await fetch(client, edge.url + p)
            assert r.status == st and not _hit(r), p
        assert origin.count(p) == 2, p


async def test_a_client_asking_for_a_fresh_answer_goes_to_the_origin(origin, make_edge,
                                                                     client):
    origin.put("/r.ts", b"no\n", status=404, headers={"Cache-Control": "max-age=600"})
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/r.ts")
    r = await fetch(client, edge.url + "/r.ts", headers={"Cache-Control": "no-cache"})
    assert r.status == 404 and not _hit(r)
    r = await fetch(client, edge.url + "/r.ts", headers={"Pragma": "no-cache"})
    assert not _hit(r)
    assert origin.count("/r.ts") == 3
    assert _hit(await fetch(client, edge.url + "/r.ts"))


async def test_s3_missing_key_with_negative_ttl(s3_endpoint, s3_bucket, make_edge, client):
    """S3's 404 has no freshness (default_ttl applies to objects only): negative_ttl keeps it,
    and a purge after the upload makes the object appear at once."""
    edge = make_edge(f"s3://{s3_bucket}", origin={"endpoint_url": s3_endpoint,
                                                  "default_ttl": 600, "negative_ttl": 600})
    r = await fetch(client, edge.url + "/late/seg.ts")
    assert r.status == 404 and "stored" in r.cache and "max-age" not in \
        r.headers.get("cache-control", "")
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").put_object(
        Bucket=s3_bucket, Key="late/seg.ts", Body=b"now")
    r = await fetch(client, edge.url + "/late/seg.ts")
    assert r.status == 404 and _hit(r)
    await _purge(client, edge.url, {"prefix": "/late/"})
    r = await fetch(client, edge.url + "/late/seg.ts")
    assert r.status == 200 and r.body == b"now"


async def _get(port: int, path: str) -> tuple[int, str]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(f"GET {path} HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n".encode())
        head = (await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)).decode("latin-1")
        await asyncio.wait_for(r.read(), 10)
    finally:
        w.close()
    cs = next((ln.split(":", 1)[1].strip() for ln in head.split("\r\n")
               if ln.lower().startswith("cache-status:")), "")
    return int(head.split()[1]), cs


async def test_two_workers_share_one_origin_request_and_any_worker_s_purge(
        origin, edge_procs, tmp_path):
    paths = [f"/w/{i}.ts" for i in range(4)]
    for p in paths:
        origin.put(p, b"missing\n", status=404, headers={"Cache-Control": "max-age=600"})
    port = free_port()
    e = EdgeProcess(_args(origin.url, tmp_path / "cache", port, "--workers", "2",
                          "--admin-token", "sekrit"))
    edge_procs.append(e)
    e.wait_ready(2)
    for _ in range(6):  # new connections: SO_REUSEPORT spreads them over both workers
        for p in paths:
            assert (await _get(port, p))[0] == 404
    # the worker that owns a key asks the origin; the other asks that worker
    assert all(origin.count(p) == 1 for p in paths), [origin.count(p) for p in paths]
    for p in paths:
        origin.put(p, b"found", headers={"Cache-Control": "max-age=600"})
    r, w = await asyncio.open_connection("127.0.0.1", port)
    doc = b'{"prefix": "/w/"}'
    w.write(b"POST /admin/purge HTTP/1.1\r\nHost: e\r\nAuthorization: Bearer sekrit\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(doc), doc))
    assert int((await asyncio.wait_for(r.readline(), 10)).split()[1]) == 200
    w.close()
    await asyncio.sleep(0.3)  # the other worker reads the journal every 50 ms
    for _ in range(6):
        for p in paths:
            assert (await _get(port, p))[0] == 200, p
    assert e.term() == 0


def _stored(status: int, headers: dict[str, str], t: float) -> StoredResponse:
    return StoredResponse(status, headers, t, t)


def test_lifetime_rules_and_bounds() -> None:
    now = time.time()
    nc = NegativeCache(default_ttl=7)
    assert nc.lifetime(_stored(404, {"cache-control": "max-age=30"}, now)) == 30
    assert nc.lifetime(_stored(404, {}, now)) == 7  # no freshness: the operator's TTL
    assert nc.lifetime(_stored(301, {}, now)) == 0  # only 404/410 get it
    assert nc.lifetime(_stored(404, {"cache-control": "max-age=0"}, now)) == 0  # explicit 0
    assert nc.lifetime(_stored(500, {"cache-control": "max-age=30"}, now)) == 0
    assert nc.lifetime(_stored(404, {"cache-control": "max-age=9", "vary": "x"}, now)) == 0

    small = NegativeCache(default_ttl=60, max_entries=3, max_bytes=10_000)
    for i in range(5):
        assert small.put(f"/k{i}", _stored(404, {}, now), b"b" * 10) == 60
    assert list(small.entries) == ["/k2", "/k3", "/k4"]  # oldest out first
    assert small.get("/k2", now) is not None  # and a hit makes it the newest
    small.put("/big", _stored(404, {}, now), b"x" * 9_000)
    assert "/big" in small.entries and small.bytes <= 10_000
    assert small.put("/huge", _stored(404, {}, now), b"x" * 20_000) == 0
    small.forget("/k", prefix=True)
    assert list(small.entries) == ["/big"]
    assert small.get("/big", now + 61) is None and not small.entries and small.bytes == 0
