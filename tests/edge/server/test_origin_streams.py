"""Origin answers without Content-Length (chunked or close-delimited) are streamed and stored;
the first request for an uncacheable URL costs one origin request."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest

from tests.edge.server.conftest import CHUNK, fetch, payload

CC = {"Cache-Control": "max-age=300", "ETag": '"s1"',
      "Last-Modified": "Tue, 01 Sep 2026 10:00:00 GMT", "Content-Type": "video/mp2t"}


async def _until(pred, timeout: float = 5.0) -> None:
    """Wait for a condition the edge's own thread brings about."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)


def _tmp_files(edge) -> list[str]:
    return os.listdir(edge.node.store.layout.tmp)


async def _raw(port: int, request: bytes) -> bytes:
    """Send one request, read until the server closes."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(request)
    data = await asyncio.wait_for(r.read(), 10)
    w.close()
    return data


def _dechunk(body: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        line_end = body.index(b"\r\n", pos)
        n = int(body[pos:line_end], 16)
        if n == 0:
            assert body[line_end:] == b"\r\n\r\n"  # the terminating chunk: the body is whole
            return bytes(out)
        out += body[line_end + 2:line_end + 2 + n]
        pos = line_end + 2 + n + 2


@pytest.mark.parametrize("framing", ["chunked", "close"])
async def test_body_without_length_is_streamed_then_stored(origin, make_edge, client, framing):
    body = payload(3 * CHUNK + 123)
    origin.put("/live.ts", body, headers=CC, framing=framing)
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/live.ts")
    assert r.status == 200 and r.body == body
    assert r.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.headers
    assert r.headers["etag"] == '"s1"' and r.cache == "edgecdn; fwd=miss"
    edge.settle()
    assert _tmp_files(edge) == []
    r = await fetch(client, edge.url + "/live.ts")
    assert r.status == 200 and r.body == body and r.cache.startswith("edgecdn; hit")
    assert r.headers["content-length"] == str(len(body))
    assert r.headers["etag"] == '"s1"' and r.headers["last-modified"] == CC["Last-Modified"]
    assert r.headers["content-type"] == "video/mp2t"
    a, b = CHUNK - 10, 2 * CHUNK + 10  # a range across chunk boundaries of the stored copy
    r = await fetch(client, edge.url + "/live.ts", headers={"Range": f"bytes={a}-{b}"})
    assert r.status == 206 and r.body == body[a:b + 1]
    assert r.headers["content-range"] == f"bytes {a}-{b}/{len(body)}"
    r = await fetch(client, edge.url + "/live.ts", headers={"If-None-Match": '"s1"'})
    assert r.status == 304
    assert origin.count("/live.ts") == 1


async def test_http10_client_gets_a_close_delimited_stream(origin, make_edge):
    body = payload(2 * CHUNK + 7)
    origin.put("/h10.ts", body, headers=CC, framing="chunked")
    edge = make_edge(origin.url)
    raw = await _raw(edge.node.port, b"GET /h10.ts HTTP/1.0\r\n\r\n")
    head, _, got = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
    assert got == body
    raw = await _raw(edge.node.port,
                     b"GET /h10.ts HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n")
    head, _, got = raw.partition(b"\r\n\r\n")
    # the HTTP/1.1 reader got a stored hit or chunks: either way the bytes are the body
    assert (_dechunk(got) if b"transfer-encoding: chunked" in head else got) == body


async def test_head_request_on_an_unknown_length_miss(origin, make_edge, client):
    body = payload(CHUNK + 1)
    origin.put("/hd.ts", body, headers=CC, framing="chunked")
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/hd.ts", "HEAD")
    assert r.status == 200 and r.body == b"" and r.headers["etag"] == '"s1"'
    edge.settle()
    r = await fetch(client, edge.url + "/hd.ts")
    assert r.body == body and r.cache.startswith("edgecdn; hit")
    assert origin.count("/hd.ts") == 1


async def test_empty_chunked_body_is_stored_as_an_empty_object(origin, make_edge, client):
    origin.put("/empty", b"", headers=CC, framing="chunked")
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/empty")
    assert r.status == 200 and r.body == b""
    edge.settle()
    r = await fetch(client, edge.url + "/empty")
    assert r.status == 200 and r.body == b"" and r.headers["content-length"] == "0"
    assert r.cache.startswith("edgecdn; hit") and origin.count("/empty") == 1


@pytest.mark.parametrize("framing", ["chunked", "close"])
async def test_origin_dying_mid_body_cuts_the_client_and_stores_nothing(origin, make_edge,
                                                                       client, framing):
    body = payload(4 * CHUNK)
    origin.put("/cut.ts", body, headers=CC, framing=framing)
    origin.fail_mid.add("/cut.ts")
    edge = make_edge(origin.url)
    with pytest.raises(aiohttp.ClientPayloadError):  # no terminating chunk: never whole
        await fetch(client, edge.url + "/cut.ts")
    edge.settle()
    assert _tmp_files(edge) == []
    assert edge.call(edge.node.store.get_meta, "/cut.ts") is None
    origin.fail_mid.clear()
    r = await fetch(client, edge.url + "/cut.ts")
    assert r.status == 200 and r.body == body and r.cache == "edgecdn; fwd=miss"
    assert origin.count("/cut.ts") == 2


async def test_concurrent_requests_during_the_stream_collapse_into_one_fetch(origin,
                                                                            make_edge, client):
    body = payload(3 * CHUNK + 5)
    origin.put("/col.ts", body, headers=CC, framing="chunked")
    origin.held.add("/col.ts")  # one piece, then the origin waits for release()
    edge = make_edge(origin.url)
    first = asyncio.ensure_future(fetch(client, edge.url + "/col.ts"))
    await asyncio.to_thread(origin.wait_requests, "/col.ts", 1)
    streams = edge.node.flights.streams
    await _until(lambda: "/col.ts" in streams)  # the first piece arrived: under way
    fl = streams["/col.ts"]
    later = [asyncio.ensure_future(fetch(client, edge.url + "/col.ts")) for _ in range(5)]
    await _until(lambda: len(fl.readers) == 6)  # all six read along the one origin body
    assert not first.done()
    origin.release()
    rs = await asyncio.wait_for(asyncio.gather(first, *later), 10)
    assert all(r.status == 200 and r.body == body for r in rs)
    assert sum("collapsed" in r.cache for r in rs) == 5
    assert origin.count("/col.ts") == 1
    edge.settle()
    r = await fetch(client, edge.url + "/col.ts")
    assert r.cache.startswith("edgecdn; hit") and origin.count("/col.ts") == 1


async def test_a_stream_larger_than_the_disk_tier_is_relayed_not_stored(origin, make_edge,
                                                                       client):
    body = payload(20 * CHUNK + 3)  # 1.25 MiB through a 1 MiB disk tier
    origin.put("/big.ts", body, headers=CC, framing="chunked")
    edge = make_edge(origin.url, cache={"disk": "1MiB"})
    r = await fetch(client, edge.url + "/big.ts")
    assert r.status == 200 and r.body == body
    edge.settle()
    assert _tmp_files(edge) == []
    assert edge.call(edge.node.store.get_meta, "/big.ts") is None
    r = await fetch(client, edge.url + "/big.ts")
    assert r.body == body and "hit" not in r.cache.split("; ")
    assert origin.count("/big.ts") == 2


async def test_stored_stream_refills_an_evicted_chunk_from_a_range_ignoring_origin(
        origin, make_edge, client):
    body = payload(3 * CHUNK + 9)
    origin.put("/ev.ts", body, headers=CC, framing="chunked")
    edge = make_edge(origin.url, cache={"memory": "0"})
    await fetch(client, edge.url + "/ev.ts")
    edge.settle()
    store = edge.node.store
    meta = edge.call(store.get_meta, "/ev.ts")
    assert meta is not None and meta.size == len(body)
    edge.call(store.remove_object, "/ev.ts")  # gone: refetched whole, stored again
    edge.call(store.put_meta, meta)  # the meta back, without chunks: every chunk misses
    r = await fetch(client, edge.url + "/ev.ts",
                    headers={"Range": f"bytes={CHUNK}-{CHUNK + 99}"})
    assert r.status == 206 and r.body == body[CHUNK:CHUNK + 100]
    edge.settle()
    r = await fetch(client, edge.url + "/ev.ts")
    assert r.status == 200 and r.body == body


# ---- uncacheable: the fill's own answer is relayed -----------------------------------------
@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("cc", ["private, max-age=60", "no-store"])
async def test_first_request_for_an_uncacheable_url_costs_one_origin_request(
        origin, make_edge, client, cc, framing):
    body = payload(CHUNK // 2)
    origin.put("/u", body, headers={"Cache-Control": cc, "ETag": '"u"'}, framing=framing)
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/u")
    assert r.status == 200 and r.body == body and r.headers["cache-control"] == cc
    assert r.cache == "edgecdn; fwd=uri-miss" and origin.count("/u") == 1
    r = await fetch(client, edge.url + "/u")  # hit-for-pass: straight to the origin
    assert r.status == 200 and r.body == body and r.cache == "edgecdn; fwd=bypass"
    assert origin.count("/u") == 2
    edge.settle()
    assert edge.call(edge.node.store.get_meta, "/u") is None


async def test_uncacheable_with_a_client_range_is_still_answered_by_the_origin(
        origin, make_edge, client):
    body = payload(CHUNK // 2)
    origin.put("/ur", body, headers={"Cache-Control": "private"})
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/ur", headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == body[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(body)}"


async def test_varying_stream_is_stored_as_its_variant(origin, make_edge, client):
    body = payload(CHUNK + 77)
    origin.put("/vs.ts", body, headers={**CC, "Vary": "Accept-Encoding"}, framing="chunked")
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/vs.ts", headers={"Accept-Encoding": "gzip"})
    assert r.body == body and r.headers.get("transfer-encoding") == "chunked"
    edge.settle()
    r = await fetch(client, edge.url + "/vs.ts", headers={"Accept-Encoding": "gzip"})
    assert r.cache.startswith("edgecdn; hit") and r.body == body
    r = await fetch(client, edge.url + "/vs.ts", headers={"Accept-Encoding": "br"})
    assert "hit" not in r.cache.split("; ") and r.body == body
    assert origin.count("/vs.ts") == 2


async def test_stream_while_the_disk_is_full_is_relayed_once(origin, make_edge, client):
    body = payload(2 * CHUNK)
    origin.put("/full.ts", body, headers=CC, framing="chunked")
    edge = make_edge(origin.url)
    edge.node.store._disk_full = True  # as after an ENOSPC: the store says so
    edge.node.store._full_retry_at = float("inf")
    r = await fetch(client, edge.url + "/full.ts")
    assert r.status == 200 and r.body == body and origin.count("/full.ts") == 1
    assert "hit" not in r.cache.split("; ")
    edge.settle()
    assert edge.call(edge.node.store.get_meta, "/full.ts") is None


async def test_uncacheable_first_conditional_request_is_answered_from_the_one_fetch(
        origin, make_edge, client):
    body = payload(100)
    origin.put("/uc", body, headers={"Cache-Control": "private", "ETag": '"e1"'})
    edge = make_edge(origin.url)
    r = await fetch(client, edge.url + "/uc", headers={"If-None-Match": '"e1"'})
    assert r.status == 304 and r.body == b"" and r.headers["etag"] == '"e1"'
    assert origin.count("/uc") == 1
    origin.put("/uc2", body, headers={"Cache-Control": "no-store", "ETag": '"e2"'})
    r = await fetch(client, edge.url + "/uc2", headers={"If-Match": '"other"'})
    assert r.status == 412 and origin.count("/uc2") == 1
    origin.put("/uc3", body, headers={"Cache-Control": "no-store", "ETag": '"e3"'})
    r = await fetch(client, edge.url + "/uc3", headers={"If-None-Match": '"old"'})
    assert r.status == 200 and r.body == body and origin.count("/uc3") == 1

