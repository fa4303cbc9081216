"""Hits, misses, ranges and conditionals through real sockets, with both disk senders."""

from __future__ import annotations

import re

from tests.edge.server.conftest import CHUNK, fetch, payload

CC = {"Cache-Control": "max-age=300", "ETag": '"e1"', "Content-Type": "video/mp2t",
      "Last-Modified": "Tue, 01 Sep 2026 10:00:00 GMT"}


def _edge(make_edge, origin, sender, memory="8MiB"):
    return make_edge(origin.url, edge={"sendfile": sender == "sendfile"},
                     cache={"memory": memory})


async def test_miss_then_hit_same_bytes_one_origin_fetch_per_chunk(origin, make_edge, client,
                                                                   sender):
    body = payload(5 * CHUNK + 123)
    origin.put("/v/seg_00001.ts", body, headers=CC)
    edge = _edge(make_edge, origin, sender, memory="0")
    r1 = await fetch(client, edge.url + "/v/seg_00001.ts")
    assert r1.status == 200 and r1.body == body
    assert r1.cache.startswith("edgecdn; fwd=miss; stored")
    assert r1.headers["etag"] == '"e1"' and r1.headers["accept-ranges"] == "bytes"
    assert r1.headers["content-type"] == "video/mp2t"
    r2 = await fetch(client, edge.url + "/v/seg_00001.ts")
    assert r2.status == 200 and r2.body == body
    assert r2.cache.startswith("edgecdn; hit; ttl=")
    assert "age" in r2.headers
    # one ranged origin request per chunk, never the whole object
    assert origin.count("/v/seg_00001.ts") == 6
    assert all(r and r.startswith("bytes=") for r in origin.ranges("/v/seg_00001.ts"))


async def test_hit_from_memory_tier(origin, make_edge, client, sender):
    body = payload(3 * CHUNK)
    origin.put("/m.ts", body, headers=CC)
    edge = _edge(make_edge, origin, sender)
    for _ in range(4):
        r = await fetch(client, edge.url + "/m.ts")
        assert r.body == body
    assert origin.count("/m.ts") == 3


async def test_head_has_length_and_no_body(origin, make_edge, client, sender):
    body = payload(2 * CHUNK + 5)
    origin.put("/h.ts", body, headers=CC)
    edge = _edge(make_edge, origin, sender)
    r = await fetch(client, edge.url + "/h.ts", "HEAD")
    assert r.status == 200 and r.body == b""
    assert r.headers["content-length"] == str(len(body))
    r = await fetch(client, edge.url + "/h.ts")
    assert r.body == body


async def test_ranges_single_open_suffix_and_cross_chunk(origin, make_edge, client, sender):
    body = payload(4 * CHUNK + 999)
    origin.put("/r.ts", body, headers=CC)
    edge = _edge(make_edge, origin, sender, memory="0")
    n = len(body)
    cases = [
        ("bytes=0-0", 0, 1), ("bytes=10-20", 10, 21), (f"bytes={CHUNK - 5}-{CHUNK + 5}",
                                                       CHUNK - 5, CHUNK + 6),
        (f"bytes={CHUNK}-", CHUNK, n), ("bytes=-100", n - 100, n),
        (f"bytes=100-{3 * CHUNK + 7}", 100, 3 * CHUNK + 8), (f"bytes=0-{10 * n}", 0, n),
    ]
    for spec, a, b in cases:
        for _ in range(2):  # miss (or partial), then hit
            r = await fetch(client, edge.url + "/r.ts", headers={"Range": spec})
            assert r.status == 206, spec
            assert r.body == body[a:b], spec
            assert r.headers["content-range"] == f"bytes {a}-{b - 1}/{n}"
            assert r.headers["content-length"] == str(b - a)
    # a range into the middle fetched only the chunks it covers
    assert origin.count("/r.ts") <= 5


async def test_range_miss_fetches_only_covered_chunks(origin, make_edge, client, sender):
    body = payload(10 * CHUNK)
    origin.put("/big.bin", body, headers=CC)
    edge = _edge(make_edge, origin, sender)
    r = await fetch(client, edge.url + "/big.bin",
                    headers={"Range": f"bytes={7 * CHUNK + 10}-{7 * CHUNK + 20}"})
    assert r.status == 206 and r.body == body[7 * CHUNK + 10:7 * CHUNK + 21]
    assert origin.ranges("/big.bin") == [f"bytes={7 * CHUNK}-{8 * CHUNK - 1}"]


async def test_multi_range_is_multipart_byteranges(origin, make_edge, client, sender):
    body = payload(3 * CHUNK)
    origin.put("/mr.ts", body, headers=CC)
    edge = _edge(make_edge, origin, sender, memory="0")
    await fetch(client, edge.url + "/mr.ts")
    r = await fetch(client, edge.url + "/mr.ts",
                    headers={"Range": f"bytes=0-9,{CHUNK - 3}-{CHUNK + 3},-4"})
    assert r.status == 206
    ct = r.headers["content-type"]
    m = re.match(r"multipart/byteranges; boundary=(\S+)", ct)
    assert m, ct
    boundary = m.group(1).encode()
    assert int(r.headers["content-length"]) == len(r.body)
    parts = r.body.split(b"--" + boundary)
    assert parts[-1].strip() == b"--"
    got = []
    for p in parts[1:-1]:
        head, _, data = p.partition(b"\r\n\r\n")
        assert b"Content-Type: video/mp2t" in head
        cr = re.search(rb"Content-Range: bytes (\d+)-(\d+)/(\d+)", head)
        assert cr
        a, b = int(cr.group(1)), int(cr.group(2)) + 1
        data = data[:-2] if data.endswith(b"\r\n") else data
        assert data == body[a:b]
        got.append((a, b))
    n = len(body)
    assert got == [(0, 10), (CHUNK - 3, CHUNK + 4), (n - 4, n)]


async def test_unsatisfiable_range_is_416_with_length(origin, make_edge, client, sender):
    body = payload(CHUNK + 1)
    origin.put("/u.ts", body, headers=CC)
    edge = _edge(make_edge, origin, sender)
    for _ in range(2):  # miss, then from the stored meta
        r = await fetch(client, edge.url + "/u.ts", headers={"Range": f"bytes={len(body)}-"})
        assert r.status == 416
        assert r.headers["content-range"] == f"bytes */{len(body)}"
    # an invalid Range header is ignored: full 200
    r = await fetch(client, edge.url + "/u.ts", headers={"Range": "bytes=abc"})
    assert r.status == 200 and r.body == body


async def test_conditionals_304_and_if_range(origin, make_edge, client, sender):
    body = payload(CHUNK * 2)
    origin.put("/c.ts", body, headers=CC)
    edge = _edge(make_edge, origin, sender)
    await fetch(client, edge.url + "/c.ts")
    r = await fetch(client, edge.url + "/c.ts", headers={"If-None-Match": '"e1"'})
    assert r.status == 304 and r.body == b"" and r.headers["etag"] == '"e1"'
    assert "cache-status" in r.headers
    r = await fetch(client, edge.url + "/c.ts", headers={"If-None-Match": '"other"'})
    assert r.status == 200 and r.body == body
    r = await fetch(client, edge.url + "/c.ts",
                    headers={"If-Modified-Since": "Wed, 02 Sep 2026 10:00:00 GMT"})
    assert r.status == 304
    r = await fetch(client, edge.url + "/c.ts", headers={"Range": "bytes=0-9",
                                                         "If-Range": '"e1"'})
    assert r.status == 206 and r.body == body[:10]
    r = await fetch(client, edge.url + "/c.ts", headers={"Range": "bytes=0-9",
                                                         "If-Range": '"stale"'})
    assert r.status == 200 and r.body == body
    r = await fetch(client, edge.url + "/c.ts", headers={"If-Match": '"nope"'})
    assert r.status == 412


async def test_origin_ignoring_range_fills_all_chunks_with_one_request(origin, make_edge,
                                                                       client, sender):
    body = payload(4 * CHUNK + 17)
    origin.put("/nr.ts", body, headers=CC, honor_range=False)
    edge = _edge(make_edge, origin, sender, memory="0")
    r = await fetch(client, edge.url + "/nr.ts", headers={"Range": f"bytes={2 * CHUNK}-"})
    assert r.status == 206 and r.body == body[2 * CHUNK:]
    r = await fetch(client, edge.url + "/nr.ts")
    assert r.body == body and r.cache.startswith("edgecdn; hit")
    assert origin.count("/nr.ts") == 1


async def test_empty_object(origin, make_edge, client, sender):
    origin.put("/empty.txt", b"", headers=CC)
    edge = _edge(make_edge, origin, sender)
    for _ in range(2):
        r = await fetch(client, edge.url + "/empty.txt")
        assert r.status == 200 and r.body == b""
        assert r.headers["content-length"] == "0"


async def test_keep_alive_and_pipelining(origin, make_edge, sender):
    import asyncio

    body = payload(CHUNK // 2)
    origin.put("/p.ts", body, headers=CC)
    edge = _edge(make_edge, origin, sender)
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.node.port)
    req = b"GET /p.ts HTTP/1.1\r\nHost: x\r\n\r\n"
    writer.write(req * 3)
    await writer.drain()
    for _ in range(3):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        n = int(re.search(rb"content-length: (\d+)", head).group(1))
        assert await reader.readexactly(n) == body
    writer.close()


async def test_hot_small_objects_still_see_purges_new_versions_and_expiry(origin, make_edge,
                                                                          client):
    import json as _json

    origin.put("/hot.ts", b"v1" * 100, headers={"Cache-Control": "max-age=600", "ETag": '"1"'})
    edge = make_edge(origin.url)
    for _ in range(4):  # miss, disk hits (promoted to memory), memory hits (hot)
        r = await fetch(client, edge.url + "/hot.ts")
        assert r.body == b"v1" * 100
        edge.settle()
        edge.call(edge.node.store.flush)
    r = await fetch(client, edge.url + "/hot.ts")
    assert r.cache.startswith("edgecdn; hit") and "/hot.ts" in edge.node.app.hot
    assert int(r.headers["age"]) >= 0 and r.headers["etag"] == '"1"'
    # a conditional or ranged request is not answered by the hot path but still correctly
    r = await fetch(client, edge.url + "/hot.ts", headers={"If-None-Match": '"1"'})
    assert r.status == 304
    r = await fetch(client, edge.url + "/hot.ts", headers={"Range": "bytes=0-1"})
    assert r.status == 206 and r.body == b"v1"
    # purge: the hot answer is dropped at once
    origin.put("/hot.ts", b"v2" * 100, headers={"Cache-Control": "max-age=1", "ETag": '"2"'})
    r = await fetch(client, edge.url + "/admin/purge", "POST",
                    headers={"Authorization": "Bearer sekrit"}, data=b'{"key": "/hot.ts"}')
    assert _json.loads(r.body)["purged"] == 1
    r = await fetch(client, edge.url + "/hot.ts")
    assert r.body == b"v2" * 100 and "fwd=miss" in r.cache


async def test_http_origin_prefix_and_query_in_key(origin, make_edge, client):
    origin.put("/base/dir/a.ts", b"A" * 10, headers=CC)
    edge = make_edge(origin.url + "/base/")
    r = await fetch(client, edge.url + "/dir/a.ts?b=2&a=1")
    assert r.status == 200 and r.body == b"A" * 10
    assert origin.requests[-1][1] == "/base/dir/a.ts"
    # same parameters in another order: the same cache entry
    r = await fetch(client, edge.url + "/dir/a.ts?a=1&b=2")
    assert r.cache.startswith("edgecdn; hit")
    r = await fetch(client, edge.url + "/dir/a.ts?a=9")
    assert "fwd=miss" in r.cache
