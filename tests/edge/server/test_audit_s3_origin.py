"""Audit: the edge serving from an S3 origin (moto server mode) under faults and odd inputs,
through real sockets.

Edges point ``origin.endpoint_url`` at ``S3Proxy``: bench.faultproxy's proxy (5xx, slow,
reset) plus what an audit needs on top: a log of every request that reached it (method,
key, Range), per-request scripted faults (any status with an S3 error body, a stall or a
cut after N body bytes, a hold until the test releases it). moto does not check
signatures, so a presigned URL for the proxy's host is accepted as is.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import boto3
import pytest
from aiohttp import web

from bench.faultproxy import HOP, FaultProxy
from tests.edge.server.conftest import CHUNK, Resp, payload, run_then_close, start_site
from tests.edge.server.test_audit_origin_faults import Outcome, attempt


def _s3(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


# ---- a scriptable S3 proxy -----------------------------------------------------------------
@dataclass
class Seen:
    method: str
    key: str  # decoded, bucket included ("bucket/key")
    range: str | None
    inm: str | None
    ims: str | None


@dataclass
class Fault:
    """What the proxy does to one request: ``status`` answers an S3-style error at once;
    ``stall_after`` / ``cut_after`` forward the real answer's headers and that many body
    bytes, then hang until the proxy stops / abort the connection; ``hold`` waits for the
    event before forwarding at all."""

    status: int | None = None
    code: str = "InternalError"
    stall_after: int | None = None
    cut_after: int | None = None
    hold: threading.Event | None = None


Rule = Callable[[Seen], Fault | None]


@dataclass
class S3Proxy:
    upstream: str
    seen: list[Seen] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fp = FaultProxy(self.upstream)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def gets(self, key: str) -> list[Seen]:
        return [s for s in self.seen if s.key == key and s.method == "GET"]

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self.fp._start)
        app.on_cleanup.append(self.fp._stop)
        self.runner, self.port = start_site(self.loop, app)
        self._stop = asyncio.Event()
        self._ready.set()
        run_then_close(self.loop)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = unquote(request.raw_path.split("?")[0].lstrip("/"))
        s = Seen(request.method, key, request.headers.get("Range"),
                 request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since"))
        self.seen.append(s)
        fault = None
        for rule in self.rules:
            fault = rule(s)
            if fault is not None:
                break
        if fault is None:
            return await self.fp.proxy(request)
        if fault.hold is not None:
            await asyncio.to_thread(fault.hold.wait, 10)
            return await self.fp.proxy(request)
        if fault.status is not None:
            return web.Response(
                status=fault.status, content_type="application/xml",
                text=f"<Error><Code>{fault.code}</Code><Message>injected</Message></Error>")
        limit = fault.stall_after if fault.stall_after is not None else fault.cut_after
        assert limit is not None and self.fp.http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with self.fp.http.request(request.method, self.fp.upstream + request.path_qs,
                                        headers=headers) as up:
            resp = web.StreamResponse(status=up.status)
            for k, v in up.headers.items():
                if k.lower() not in HOP:
                    resp.headers.add(k, v)
            if up.content_length is not None:
                resp.content_length = up.content_length
            await resp.prepare(request)
            body = await up.read()
            await resp.write(body[:limit])
            if fault.stall_after is not None:
                assert self._stop is not None
                await self._stop.wait()
            assert request.transport is not None
            request.transport.abort()
            return resp

    def stop(self) -> None:
        async def _stop() -> None:
            assert self._stop is not None
            self._stop.set()
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def s3proxy(s3_endpoint: str) -> Iterator[S3Proxy]:
    p = S3Proxy(s3_endpoint)
    yield p
    p.stop()


@pytest.fixture
def s3edge(s3_endpoint: str, s3_bucket: str, s3proxy: S3Proxy, make_edge: Any) -> Any:
    """make(prefix="", **origin settings): an edge on s3://bucket[/prefix] via the proxy."""

    def make(prefix: str = "", **origin: Any) -> Any:
        o = {"endpoint_url": s3proxy.url, "default_ttl": 60, "read_timeout": 0.5,
             "first_byte_timeout": 1.0, "connect_timeout": 0.5, **origin}
        url = f"s3://{s3_bucket}" + (f"/{prefix}" if prefix else "")
        return make_edge(url, origin=o)

    return make


# ---- client side -----------------------------------------------------------------------------


def whole(r: Outcome, body: bytes) -> None:
    """A complete, correct 200 for ``body``."""
    assert isinstance(r, Resp), r
    assert r.status == 200, (r.status, r.body[:200])
    assert r.headers.get("content-length") == str(len(body))
    assert r.body == body


async def _cached(s3edge: Any, client: Any, s3: Any, bucket: str, key: str, body: bytes,
                  **put: Any) -> tuple[Any, str]:
    """key put in S3 (with put's extra fields), then fetched whole through a new edge and
    left stored (settled): the edge and the object's URL."""
    s3.put_object(Bucket=bucket, Key=key, Body=body, **put)
    edge = s3edge()
    u = f"{edge.url}/{key}"
    whole(await attempt(client, u), body)
    edge.settle()
    return edge, u


def judge(o: Outcome, *bodies: bytes) -> str | None:
    """None when the answer to a request that met a fault is acceptable: a cut (the client
    saw an error), a 502/504 with a reason, or a 200 whose body is exactly one of
    ``bodies``."""
    if isinstance(o, Exception):
        return None
    if o.status in (502, 504):
        return None if o.body.strip() else "error without a reason"
    if o.status == 200 and o.body in bodies and o.headers.get("content-length") == str(
            len(o.body)):
        return None
    return f"status {o.status}, {len(o.body)} bytes, cl={o.headers.get('content-length')}"


def url_of(edge: Any, key: str) -> str:
    return edge.url + "/" + quote(key, safe="/")


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    import time

    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


# ---- odd keys --------------------------------------------------------------------------------
ODD_KEYS = [
    "with space/a b.bin",
    "plus+sign/a+b.bin",
    "percent/100%25/x%41.bin",  # literal '%25' and '%41' in the key
    "unicode/ünï-cødé/视频.ts",
    "reserved/a;b=c,d@e$f&g!'()*.bin",
    "tilde~/-_.bin",
    "long/" + "x" * 900 + ".bin",
]


@pytest.mark.parametrize("key", ODD_KEYS, ids=lambda k: k.split("/")[0])
async def test_odd_keys_round_trip(key, s3_endpoint, s3_bucket, s3edge, s3proxy, client):
    body = payload(CHUNK + 5, seed=len(key))
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key=key, Body=body)
    edge = s3edge()
    u = url_of(edge, key)
    r = await attempt(client, u)
    whole(r, body)
    r = await attempt(client, u)
    whole(r, body)
    assert r.cache.startswith("edgecdn; hit"), r.cache
    assert s3proxy.gets(f"{s3_bucket}/{key}"), [s.key for s in s3proxy.seen]


async def test_plus_is_not_a_space(s3_endpoint, s3_bucket, s3edge, client):
    """'+' in a path is a literal plus (RFC 3986), not a form-encoded space: 'a+b' and 'a b'
    are two objects."""
    s3 = _s3(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="k/a+b", Body=b"plus")
    s3.put_object(Bucket=s3_bucket, Key="k/a b", Body=b"space")
    edge = s3edge()
    whole(await attempt(client, edge.url + "/k/a+b"), b"plus")
    whole(await attempt(client, edge.url + "/k/a%20b"), b"space")
    whole(await attempt(client, edge.url + "/k/a%2Bb"), b"plus")


async def test_key_with_prefix_and_percent_encoded_slash(s3_endpoint, s3_bucket, s3edge,
                                                          client):
    s3 = _s3(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="pre/dir/x.bin", Body=b"in dir")
    edge = s3edge("pre")
    whole(await attempt(client, edge.url + "/dir/x.bin"), b"in dir")
    # '%2F' decodes to '/': the same object (the edge's paths are decoded)
    whole(await attempt(client, edge.url + "/dir%2Fx.bin"), b"in dir")


async def test_double_slash_key_refused_400(s3_endpoint, s3_bucket, s3edge, client):
    """The edge refuses empty path segments (contracts.keys.normalize_path): an S3 key with
    '//' cannot be served. Documented behaviour, asserted as such (nginx merge_slashes would
    instead serve a different key, which is worse)."""
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="a//b.bin", Body=b"x")
    edge = s3edge()
    r = await attempt(client, edge.url + "/a//b.bin")
    assert isinstance(r, Resp) and r.status == 400


async def test_directory_prefix_is_404_not_listing(s3_endpoint, s3_bucket, s3edge, s3proxy,
                                                   client):
    s3 = _s3(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="dir/x.bin", Body=b"x")
    edge = s3edge()
    for p in ("/dir", "/dir/"):
        r = await attempt(client, edge.url + p)
        assert isinstance(r, Resp), r
        # a bucket listing (GET /bucket?prefix) must never be what a path returns
        assert r.status == 404, (p, r.status, r.body[:200])
        assert b"ListBucketResult" not in r.body


async def test_root_path_does_not_list_the_bucket(s3_endpoint, s3_bucket, s3edge, client):
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="secret/list-me.bin", Body=b"x")
    edge = s3edge()
    r = await attempt(client, edge.url + "/")
    assert isinstance(r, Resp), r
    assert b"list-me" not in r.body and b"ListBucketResult" not in r.body, r.body[:300]
    assert r.status in (400, 403, 404), r.status


# ---- sizes, ranges, HEAD, conditionals --------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 1])
async def test_sizes_at_chunk_boundaries(size, s3_endpoint, s3_bucket, s3edge, s3proxy,
                                         client):
    body = payload(size, seed=size)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="s.bin", Body=body)
    edge = s3edge()
    u = edge.url + "/s.bin"
    whole(await attempt(client, u), body)
    edge.settle()
    r = await attempt(client, u)
    whole(r, body)
    assert r.cache.startswith("edgecdn; hit"), r.cache
    r = await attempt(client, u, method="HEAD")
    assert isinstance(r, Resp) and r.status == 200 and r.body == b""
    assert r.headers["content-length"] == str(size)
    n = len(s3proxy.gets(f"{s3_bucket}/s.bin"))
    # one GET per chunk (an empty object: the first ranged GET gets 416, then one plain GET)
    assert n == max(1, -(-size // CHUNK)) + (1 if size == 0 else 0), n


async def test_ranges_at_chunk_boundaries(s3_endpoint, s3_bucket, s3edge, client):
    size = 3 * CHUNK + 1
    body = payload(size, seed=7)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="r.bin", Body=body)
    edge = s3edge()
    u = edge.url + "/r.bin"
    cases = [(0, 0), (CHUNK - 1, CHUNK - 1), (CHUNK - 1, CHUNK), (CHUNK, 2 * CHUNK - 1),
             (2 * CHUNK - 1, 3 * CHUNK), (3 * CHUNK, 3 * CHUNK), (0, size - 1), (5, size + 100)]
    for cold in (True, False):
        for a, b in cases:
            if cold:
                edge.call(edge.node.store.purge, "/r.bin", None, False)
                edge.settle()
            r = await attempt(client, u, {"Range": f"bytes={a}-{b}"})
            assert isinstance(r, Resp), (a, b, r)
            end = min(b, size - 1)
            assert r.status == 206, (a, b, r.status, r.body[:100])
            assert r.body == body[a:end + 1], (a, b)
            assert r.headers["content-range"] == f"bytes {a}-{end}/{size}"
            assert r.headers["content-length"] == str(end - a + 1)


async def test_suffix_open_and_unsatisfiable_ranges(s3_endpoint, s3_bucket, s3edge, client):
    size = 2 * CHUNK + 3
    body = payload(size, seed=8)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="q.bin", Body=body)
    edge = s3edge()
    u = edge.url + "/q.bin"
    for cold in (True, False):
        if cold:
            edge.call(edge.node.store.purge, "/q.bin", None, False)
            edge.settle()
        r = await attempt(client, u, {"Range": f"bytes=-{size + 1000}"})
        # a suffix longer than the object is the whole object (RFC 9110 §14.1.2)
        assert isinstance(r, Resp) and r.status == 206, r
        assert r.body == body and r.headers["content-range"] == f"bytes 0-{size - 1}/{size}"
        r = await attempt(client, u, {"Range": "bytes=-5"})
        assert isinstance(r, Resp) and r.status == 206 and r.body == body[-5:], r
        r = await attempt(client, u, {"Range": f"bytes={CHUNK}-"})
        assert isinstance(r, Resp) and r.status == 206 and r.body == body[CHUNK:], r
        r = await attempt(client, u, {"Range": f"bytes={size}-"})
        assert isinstance(r, Resp) and r.status == 416, r
        assert r.headers["content-range"] == f"bytes */{size}"


async def test_range_on_empty_object(s3_endpoint, s3_bucket, s3edge, client):
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="e.bin", Body=b"")
    edge = s3edge()
    u = edge.url + "/e.bin"
    for _ in range(2):
        r = await attempt(client, u, {"Range": "bytes=0-10"})
        # nothing is satisfiable in an empty representation; the edge ignores the Range and
        # answers the whole (empty) 200, which RFC 9110 §14.2 allows (a server MAY ignore it)
        assert isinstance(r, Resp) and r.status in (200, 416), r
        assert r.body == b"" and r.headers.get("content-length", "0") == "0"
        r = await attempt(client, u, {"Range": "bytes=-10"})
        assert isinstance(r, Resp) and r.status in (200, 416), r
        assert r.body == b""


async def test_multi_range(s3_endpoint, s3_bucket, s3edge, client):
    size = 2 * CHUNK + 10
    body = payload(size, seed=9)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="m.bin", Body=body)
    edge = s3edge()
    u = edge.url + "/m.bin"
    r = await attempt(client, u, {"Range": f"bytes=0-9,{CHUNK - 1}-{CHUNK}"})
    assert isinstance(r, Resp), r
    if r.status == 200:  # ignoring a multi-range is allowed (RFC 9110 §14.2)
        assert r.body == body
    else:
        assert r.status == 206 and r.headers["content-type"].startswith("multipart/byteranges")
        assert body[:10] in r.body and body[CHUNK - 1:CHUNK + 1] in r.body
    whole(await attempt(client, u), body)


async def test_conditionals_against_s3_etag_and_last_modified(s3_endpoint, s3_bucket, s3edge,
                                                              client):
    body = payload(CHUNK + 9, seed=10)
    s3 = _s3(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="c.bin", Body=body)
    head = s3.head_object(Bucket=s3_bucket, Key="c.bin")
    etag = head["ETag"]
    edge = s3edge()
    u = edge.url + "/c.bin"
    for _ in range(2):  # miss, then hit
        r = await attempt(client, u, {"If-None-Match": etag})
        assert isinstance(r, Resp) and r.status == 304 and r.body == b"", r
        assert r.headers["etag"] == etag
        r = await attempt(client, u, {"If-None-Match": '"other"'})
        whole(r, body)
        lm = r.headers["last-modified"]
        r = await attempt(client, u, {"If-Modified-Since": lm})
        assert isinstance(r, Resp) and r.status == 304, r
        r = await attempt(client, u, {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"})
        whole(r, body)
        r = await attempt(client, u, {"If-Range": etag, "Range": "bytes=0-3"})
        assert isinstance(r, Resp) and r.status == 206 and r.body == body[:4], r
        r = await attempt(client, u, {"If-Range": '"other"', "Range": "bytes=0-3"})
        whole(r, body)


# ---- the object changes or goes away --------------------------------------------------------
def _chunk_rule(key: str, index: int, fault: Fault) -> Rule:
    def rule(s: Seen) -> Fault | None:
        if s.key.endswith("/" + key) and s.method == "GET" and s.range \
                and s.range.startswith(f"bytes={index * CHUNK}-"):
            return fault
        return None

    return rule


async def test_overwrite_between_chunk_fetches_of_one_request(s3_endpoint, s3_bucket, s3edge,
                                                              s3proxy, client):
    """Chunk 1's GET is held until S3 holds a new version of the same size: the edge must not
    join old chunk 0 to new chunk 1 (the ETag changed)."""
    old, new = payload(3 * CHUNK, seed=1), payload(3 * CHUNK, seed=2)
    s3 = _s3(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="v.bin", Body=old)
    gate = threading.Event()
    s3proxy.rules.append(_chunk_rule("v.bin", 1, Fault(hold=gate)))
    edge = s3edge()
    u = edge.url + "/v.bin"
    task = asyncio.ensure_future(attempt(client, u))
    await asyncio.to_thread(wait_until, lambda: any(
        (s.range or "").startswith(f"bytes={CHUNK}-") for s in s3proxy.seen))
    s3.put_object(Bucket=s3_bucket, Key="v.bin", Body=new)
    gate.set()
    r = await task
    assert judge(r, old, new) is None, judge(r, old, new)
    s3proxy.rules.clear()
    edge.settle()
    whole(await attempt(client, u), new)
    whole(await attempt(client, u), new)


async def test_overwrite_after_partial_cache_never_mixes(s3_endpoint, s3_bucket, s3edge, client):
    """Chunk 0 cached (by a Range request), then S3 gets a same-size new version: a full GET
    within the TTL must not splice cached old chunk 0 to fresh new chunks."""
    old, new = payload(3 * CHUNK, seed=3), payload(3 * CHUNK, seed=4)
    s3 = _s3(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="p.bin", Body=old)
    edge = s3edge()
    u = edge.url + "/p.bin"
    r = await attempt(client, u, {"Range": "bytes=0-99"})
    assert isinstance(r, Resp) and r.status == 206 and r.body == old[:100]
    edge.settle()
    s3.put_object(Bucket=s3_bucket, Key="p.bin", Body=new)
    r = await attempt(client, u)
    assert judge(r, old, new) is None, judge(r, old, new)
    edge.settle()
    whole(await attempt(client, u), new)
    r = await attempt(client, u, {"Range": "bytes=0-99"})
    assert isinstance(r, Resp) and r.body == new[:100], r


async def test_deleted_while_cached_then_revalidated(s3_endpoint, s3_bucket, s3edge, s3proxy,
                                                     client):
    body = payload(2 * CHUNK, seed=5)
    s3 = _s3(s3_endpoint)
    edge, u = await _cached(s3edge, client, s3, s3_bucket, "d.bin", body)
    s3.delete_object(Bucket=s3_bucket, Key="d.bin")
    whole(await attempt(client, u), body)  # fresh for its TTL: a hit, S3 not asked
    edge.call(edge.node.store.purge, "/d.bin", None, True)  # stale: revalidate before reuse
    r = await attempt(client, u)
    assert isinstance(r, Resp) and r.status == 404, r
    revalidation = s3proxy.gets(f"{s3_bucket}/d.bin")[-1]
    assert revalidation.inm or revalidation.ims  # it was a conditional request
    s3.put_object(Bucket=s3_bucket, Key="d.bin", Body=b"back")
    edge.call(edge.node.store.purge, "/d.bin", None, False)
    whole(await attempt(client, u), b"back")


async def test_deleted_then_chunk_fetch_404_cuts_and_forgets(s3_endpoint, s3_bucket, s3edge,
                                                             client):
    """Chunk 0 cached, object deleted: a full GET meets a 404 for chunk 1. The client gets a
    cut (never a short 200); the next request learns the 404."""
    body = payload(3 * CHUNK, seed=6)
    s3 = _s3(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="g.bin", Body=body)
    edge = s3edge()
    u = edge.url + "/g.bin"
    r = await attempt(client, u, {"Range": "bytes=0-9"})
    assert isinstance(r, Resp) and r.status == 206
    edge.settle()
    s3.delete_object(Bucket=s3_bucket, Key="g.bin")
    r = await attempt(client, u)
    assert judge(r, body) is None, judge(r, body)
    edge.settle()
    r = await attempt(client, u)
    assert isinstance(r, Resp) and r.status == 404, r


# ---- S3 errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("status,code", [(500, "InternalError"), (503, "SlowDown")])
async def test_s3_5xx_on_miss_is_502_with_reason_and_not_cached(status, code, s3_endpoint,
                                                                s3_bucket, s3edge, s3proxy,
                                                                client):
    body = payload(CHUNK + 1, seed=11)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="f.bin", Body=body)
    s3proxy.rules.append(lambda s: Fault(status=status, code=code))
    edge = s3edge()
    u = edge.url + "/f.bin"
    r = await attempt(client, u)
    assert isinstance(r, Resp) and r.status == 502 and str(status).encode() in r.body, r
    assert b"<Error>" not in r.body  # the edge's reason, not S3's XML
    s3proxy.rules.clear()
    whole(await attempt(client, u), body)


async def test_s3_5xx_on_second_chunk_cuts_then_recovers(s3_endpoint, s3_bucket, s3edge,
                                                         s3proxy, client):
    body = payload(3 * CHUNK, seed=12)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="h.bin", Body=body)
    s3proxy.rules.append(_chunk_rule("h.bin", 1, Fault(status=503, code="SlowDown")))
    edge = s3edge()
    u = edge.url + "/h.bin"
    r = await attempt(client, u)
    assert judge(r, body) is None and not isinstance(r, Resp), r
    s3proxy.rules.clear()
    edge.settle()
    whole(await attempt(client, u), body)


async def test_s3_slowdown_on_revalidation_serves_stale(s3_endpoint, s3_bucket, s3edge,
                                                        s3proxy, client):
    body = payload(CHUNK + 2, seed=13)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="st.bin", Body=body)
    edge = s3edge()
    u = edge.url + "/st.bin"
    whole(await attempt(client, u), body)
    edge.settle()
    edge.call(edge.node.store.purge, "/st.bin", None, True)
    s3proxy.rules.append(lambda s: Fault(status=503, code="SlowDown"))
    r = await attempt(client, u)
    whole(r, body)
    assert "stale-if-error" in r.cache or "stale" in r.cache, r.cache


async def test_s3_403_is_relayed_not_cached(s3_endpoint, s3_bucket, s3edge, s3proxy, client):
    """A 403 from S3 (AccessDenied: a bucket policy being fixed, a clock skew, an expired
    credential) carries no Cache-Control. nginx (proxy_cache_valid default 200/301/302) and
    Varnish (default TTL only for 200/203/300/301/302/307/404/410) do not cache it: once S3
    allows the read again, the next request must get the object."""
    body = payload(100, seed=14)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="a.bin", Body=body)
    s3proxy.rules.append(lambda s: Fault(status=403, code="AccessDenied"))
    edge = s3edge()
    u = edge.url + "/a.bin"
    r = await attempt(client, u)
    assert isinstance(r, Resp) and r.status == 403, r
    assert not any(k.startswith("x-amz-") for k in r.headers)
    s3proxy.rules.clear()
    whole(await attempt(client, u), body)


async def test_s3_404_then_upload(s3_endpoint, s3_bucket, s3edge, s3proxy, client):
    """A 404 from S3 is relayed, not cached (nginx's default proxy_cache_valid does the same):
    the object uploaded right after is served at once."""
    edge = s3edge(default_ttl=60)
    u = edge.url + "/late.bin"
    r = await attempt(client, u)
    assert isinstance(r, Resp) and r.status == 404, r
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="late.bin", Body=b"now here")
    r = await attempt(client, u)
    whole(r, b"now here")


async def test_bucket_that_does_not_exist(s3_endpoint, make_edge, s3proxy, client):
    edge = make_edge(f"s3://nope-{uuid.uuid4().hex[:10]}",
                     origin={"endpoint_url": s3proxy.url, "read_timeout": 0.5})
    r = await attempt(client, edge.url + "/x.bin")
    # S3 answers 404 NoSuchBucket: relayed as a 404 (an origin error class of its own would
    # be nicer, but a 404 is what nginx in front of S3 gives)
    assert isinstance(r, Resp) and r.status == 404, r
    assert not any(k.startswith("x-amz-") for k in r.headers)


async def test_wrong_credentials_403_not_cached(s3_endpoint, s3_bucket, s3edge, s3proxy,
                                                client):
    """moto does not check signatures; the proxy answers what S3 does for a bad secret."""
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="w.bin", Body=b"w" * 10)
    s3proxy.rules.append(lambda s: Fault(status=403, code="SignatureDoesNotMatch"))
    edge = s3edge(access_key_id="AKIAWRONG", secret_access_key="wrong")
    u = edge.url + "/w.bin"
    for _ in range(2):
        r = await attempt(client, u)
        assert isinstance(r, Resp) and r.status == 403, r
    assert len(s3proxy.gets(f"{s3_bucket}/w.bin")) == 2, "a 403 must not be served from cache"


# ---- S3 stalls or cuts mid-body ---------------------------------------------------------------
@pytest.mark.parametrize("how", ["stall", "cut"])
@pytest.mark.parametrize("index", [0, 1])
async def test_mid_body_fault_cuts_client_then_next_is_whole(how, index, s3_endpoint,
                                                             s3_bucket, s3edge, s3proxy,
                                                             client):
    body = payload(3 * CHUNK + 11, seed=20 + index)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="mb.bin", Body=body)
    n = CHUNK // 2
    fault = Fault(stall_after=n) if how == "stall" else Fault(cut_after=n)
    rule = _chunk_rule("mb.bin", index, fault)
    s3proxy.rules.append(rule)
    edge = s3edge()
    u = edge.url + "/mb.bin"
    r = await attempt(client, u)
    # the client must see a cut (or a 502/504 before any byte), never a short 200
    assert judge(r, body) is None, judge(r, body)
    assert not (isinstance(r, Resp) and r.status == 200), "the fault was not noticed"
    s3proxy.rules.clear()
    edge.settle()
    whole(await attempt(client, u), body)
    whole(await attempt(client, u), body)
    r = await attempt(client, u, {"Range": f"bytes={CHUNK - 3}-{CHUNK + 3}"})
    assert isinstance(r, Resp) and r.body == body[CHUNK - 3:CHUNK + 4]


async def test_stall_before_headers_is_504(s3_endpoint, s3_bucket, s3edge, s3proxy, client):
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="sl.bin", Body=b"slow")
    s3proxy.fp.state.mode, s3proxy.fp.state.delay = "slow", 1.0
    edge = s3edge(first_byte_timeout=0.3, connect_timeout=0.2)
    r = await attempt(client, edge.url + "/sl.bin")
    assert isinstance(r, Resp) and r.status == 504 and r.body.strip(), r
    s3proxy.fp.state.mode = "ok"
    whole(await attempt(client, edge.url + "/sl.bin"), b"slow")


async def test_faultproxy_reset_mode_mid_body(s3_endpoint, s3_bucket, s3edge, s3proxy, client):
    """bench.faultproxy's own 'reset' (half the first read, then abort) on every request."""
    body = payload(2 * CHUNK + 5, seed=30)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="rs.bin", Body=body)
    s3proxy.fp.state.mode = "reset"
    edge = s3edge()
    u = edge.url + "/rs.bin"
    for _ in range(2):
        r = await attempt(client, u)
        assert judge(r, body) is None, judge(r, body)
        assert not (isinstance(r, Resp) and r.status == 200)
    s3proxy.fp.state.mode = "ok"
    edge.settle()
    whole(await attempt(client, u), body)


# ---- collapsing -------------------------------------------------------------------------------
async def test_concurrent_misses_one_get_per_chunk_at_s3(s3_endpoint, s3_bucket, s3edge,
                                                         s3proxy, client):
    body = payload(4 * CHUNK + 1, seed=40)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="cc.bin", Body=body)
    edge = s3edge()
    u = edge.url + "/cc.bin"
    rs = await asyncio.gather(*(attempt(client, u) for _ in range(12)))
    for r in rs:
        whole(r, body)
    gets = s3proxy.gets(f"{s3_bucket}/cc.bin")
    assert len(gets) == 5, [g.range for g in gets]
    assert sorted(g.range or "" for g in gets) == sorted(
        f"bytes={i * CHUNK}-{min((i + 1) * CHUNK, len(body)) - 1}" for i in range(5)) or \
        len({g.range for g in gets}) == 5


async def test_concurrent_ranges_and_heads_on_a_miss(s3_endpoint, s3_bucket, s3edge, s3proxy,
                                                     client):
    body = payload(3 * CHUNK, seed=41)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="cr.bin", Body=body)
    edge = s3edge()
    u = edge.url + "/cr.bin"
    reqs = [({"Range": f"bytes={i * 1000}-{i * 1000 + CHUNK}"}, "GET") for i in range(6)]
    reqs += [({}, "HEAD")] * 3 + [({}, "GET")] * 3
    rs = await asyncio.gather(*(attempt(client, u, h, m) for h, m in reqs))
    for (h, m), r in zip(reqs, rs, strict=True):
        assert isinstance(r, Resp), r
        if m == "HEAD":
            assert r.status == 200 and r.headers["content-length"] == str(len(body))
        elif "Range" in h:
            a = int(h["Range"][6:].split("-")[0])
            assert r.status == 206 and r.body == body[a:a + CHUNK + 1]
        else:
            whole(r, body)
    assert len(s3proxy.gets(f"{s3_bucket}/cr.bin")) == 3
    assert not [s for s in s3proxy.seen if s.method == "HEAD"]


# ---- object metadata that changes caching -----------------------------------------------------
async def test_no_cache_object_revalidates_every_time(s3_endpoint, s3_bucket, s3edge, s3proxy,
                                                      client):
    s3 = _s3(s3_endpoint)
    one, two = payload(CHUNK + 3, seed=50), payload(CHUNK + 3, seed=51)
    edge, u = await _cached(s3edge, client, s3, s3_bucket, "nc.bin", one, CacheControl="no-cache")
    r = await attempt(client, u)
    whole(r, one)
    last = s3proxy.gets(f"{s3_bucket}/nc.bin")[-1]
    assert last.inm, "no-cache: a conditional GET to S3 on every request"
    s3.put_object(Bucket=s3_bucket, Key="nc.bin", Body=two, CacheControl="no-cache")
    r = await attempt(client, u)
    whole(r, two)
    edge.settle()
    whole(await attempt(client, u), two)
    r = await attempt(client, u, {"Range": f"bytes={CHUNK}-"})
    assert isinstance(r, Resp) and r.status == 206 and r.body == two[CHUNK:], r


async def test_no_store_object_is_relayed(s3_endpoint, s3_bucket, s3edge, s3proxy, client):
    s3 = _s3(s3_endpoint)
    body = payload(2 * CHUNK + 1, seed=52)
    s3.put_object(Bucket=s3_bucket, Key="ns.bin", Body=body, CacheControl="no-store")
    edge = s3edge()
    u = edge.url + "/ns.bin"
    for _ in range(2):
        whole(await attempt(client, u), body)
        r = await attempt(client, u, {"Range": f"bytes={CHUNK}-{CHUNK + 9}"})
        assert isinstance(r, Resp) and r.status == 206 and r.body == body[CHUNK:CHUNK + 10], r
        r = await attempt(client, u, method="HEAD")
        assert isinstance(r, Resp) and r.status == 200, r
        assert r.headers["content-length"] == str(len(body)) and r.body == b""
    body2 = payload(10, seed=53)
    s3.put_object(Bucket=s3_bucket, Key="ns.bin", Body=body2, CacheControl="no-store")
    whole(await attempt(client, u), body2)


async def test_weak_if_none_match_from_client(s3_endpoint, s3_bucket, s3edge, client):
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="wk.bin", Body=b"weak")
    edge = s3edge()
    u = edge.url + "/wk.bin"
    r = await attempt(client, u)
    whole(r, b"weak")
    etag = r.headers["etag"]
    for inm in (f"W/{etag}", f'"x", {etag}', "*"):
        r = await attempt(client, u, {"If-None-Match": inm})
        assert isinstance(r, Resp) and r.status == 304, (inm, r)


@pytest.mark.parametrize("before,after", [(CHUNK + 7, 0), (0, CHUNK + 7), (3 * CHUNK, 5)])
async def test_revalidation_when_size_changes(before, after, s3_endpoint, s3_bucket, s3edge,
                                              client):
    s3 = _s3(s3_endpoint)
    b1, b2 = payload(before, seed=60), payload(after, seed=61)
    edge, u = await _cached(s3edge, client, s3, s3_bucket, "sz.bin", b1)
    s3.put_object(Bucket=s3_bucket, Key="sz.bin", Body=b2)
    edge.call(edge.node.store.purge, "/sz.bin", None, True)
    whole(await attempt(client, u), b2)
    edge.settle()
    whole(await attempt(client, u), b2)
    r = await attempt(client, u, method="HEAD")
    assert isinstance(r, Resp) and r.headers["content-length"] == str(after)


MORE_KEYS = ["q/what?.bin", "h/hash#tag.bin", "sp/trailing .bin", "col/a:b.bin",
             "brk/[x]{y}|^`.bin", "quo/\"q\"<>.bin"]


@pytest.mark.parametrize("key", MORE_KEYS, ids=lambda k: k.split("/")[0])
async def test_more_odd_keys(key, s3_endpoint, s3_bucket, s3edge, client):
    body = payload(300, seed=len(key))
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key=key, Body=body)
    edge = s3edge()
    u = edge.url + "/" + quote(key, safe="/")
    whole(await attempt(client, u), body)
    r = await attempt(client, u)
    whole(r, body)
    assert r.cache.startswith("edgecdn; hit"), r.cache


async def test_304_keeps_the_objects_cache_control(s3_endpoint, s3_bucket, s3edge, client):
    """S3 (and moto) send no Cache-Control on a 304: the stored one must stay (RFC 9111
    §4.3.4 updates only the header fields the 304 carries)."""
    s3 = _s3(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="cc.bin", Body=b"cc", CacheControl="max-age=3")
    edge = s3edge(default_ttl=600)
    u = edge.url + "/cc.bin"
    r = await attempt(client, u)
    whole(r, b"cc")
    assert r.headers["cache-control"] == "max-age=3"
    edge.settle()
    edge.call(edge.node.store.purge, "/cc.bin", None, True)  # revalidate: S3 answers 304
    r = await attempt(client, u)
    whole(r, b"cc")
    assert r.headers["cache-control"] == "max-age=3", r.headers["cache-control"]


async def test_s3_stall_on_revalidation_serves_stale(s3_endpoint, s3_bucket, s3edge, s3proxy,
                                                     client):
    body = payload(CHUNK + 2, seed=70)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="sv.bin", Body=body)
    edge = s3edge(first_byte_timeout=0.3, connect_timeout=0.2)
    u = edge.url + "/sv.bin"
    whole(await attempt(client, u), body)
    edge.settle()
    edge.call(edge.node.store.purge, "/sv.bin", None, True)
    s3proxy.fp.state.mode, s3proxy.fp.state.delay = "slow", 1.0
    r = await attempt(client, u)
    whole(r, body)
    assert "stale" in r.cache, r.cache


async def test_concurrent_readers_all_cut_on_stall(s3_endpoint, s3_bucket, s3edge, s3proxy,
                                                   client):
    body = payload(3 * CHUNK, seed=71)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="cs.bin", Body=body)
    s3proxy.rules.append(_chunk_rule("cs.bin", 1, Fault(stall_after=1000)))
    edge = s3edge()
    u = edge.url + "/cs.bin"
    reqs = [None] * 5 + [{"Range": f"bytes={CHUNK}-{CHUNK + 5000}"}] * 3
    rs = await asyncio.gather(*(attempt(client, u, h) for h in reqs))
    for h, r in zip(reqs, rs, strict=True):
        if h is None:
            assert judge(r, body) is None and not isinstance(r, Resp), r
        else:  # a 206 whose body is cut, or a 502/504 before any byte
            assert not isinstance(r, Resp) or r.status in (502, 504), r
    s3proxy.rules.clear()
    edge.settle()
    whole(await attempt(client, u), body)


@pytest.mark.parametrize("size", [0, 5, CHUNK + 1])
async def test_head_first_on_a_miss(size, s3_endpoint, s3_bucket, s3edge, s3proxy, client):
    body = payload(size, seed=72)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="hf.bin", Body=body)
    edge = s3edge()
    u = edge.url + "/hf.bin"
    r = await attempt(client, u, method="HEAD")
    assert isinstance(r, Resp) and r.status == 200 and r.body == b"", r
    assert r.headers["content-length"] == str(size)
    edge.settle()
    whole(await attempt(client, u), body)
    r = await attempt(client, edge.url + "/hf-missing.bin", method="HEAD")
    assert isinstance(r, Resp) and r.status == 404 and r.body == b"", r


async def test_unicode_nfc_and_nfd_keys_are_distinct(s3_endpoint, s3_bucket, s3edge, client):
    import unicodedata

    nfc = unicodedata.normalize("NFC", "u/caf\u00e9.bin")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    s3 = _s3(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key=nfc, Body=b"composed")
    s3.put_object(Bucket=s3_bucket, Key=nfd, Body=b"decomposed")
    edge = s3edge()
    for _ in range(2):
        whole(await attempt(client, url_of(edge, nfc)), b"composed")
        whole(await attempt(client, url_of(edge, nfd)), b"decomposed")


async def test_ranged_revalidation_after_shrink_to_empty(s3_endpoint, s3_bucket, s3edge, client):
    body = payload(3 * CHUNK, seed=73)
    s3 = _s3(s3_endpoint)
    edge, u = await _cached(s3edge, client, s3, s3_bucket, "se.bin", body)
    s3.put_object(Bucket=s3_bucket, Key="se.bin", Body=b"")
    edge.call(edge.node.store.purge, "/se.bin", None, True)
    r = await attempt(client, u, {"Range": f"bytes={2 * CHUNK}-"})
    assert isinstance(r, Resp) and r.status in (200, 416) and r.body == b"", r
    edge.settle()
    whole(await attempt(client, u), b"")


@pytest.mark.parametrize("prefix", ["pre fix", "p+q/r%s", "ünï"])
async def test_odd_prefixes(prefix, s3_endpoint, s3_bucket, s3edge, client):
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key=f"{prefix}/o k.bin", Body=b"pfx")
    edge = s3edge(prefix)
    whole(await attempt(client, edge.url + "/o%20k.bin"), b"pfx")


# ---- pass-through (uncacheable objects) ------------------------------------------------------
async def _hit_for_pass(s3_endpoint: str, s3_bucket: str, edge: Any, client: Any,
                        key: str, body: bytes) -> str:
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key=key, Body=body, CacheControl="no-store")
    r = await attempt(client, edge.url + "/" + key)
    whole(r, body)
    return r.headers["etag"]


async def test_pass_through_range_with_stale_if_range(s3_endpoint, s3_bucket, s3edge, client):
    """A client resuming a download of an uncacheable object sends Range + If-Range with the
    ETag it has. The object changed: it must get the whole new object (200), never a 206 of
    the new bytes to splice onto the old ones (RFC 9110 §13.1.5). S3's GetObject does not
    evaluate If-Range (moto neither), so the edge must: drop the Range, or check the 206's
    ETag against If-Range and fetch the whole object on a mismatch."""
    edge = s3edge()
    old, new = payload(1000, seed=80), payload(1000, seed=81)
    etag = await _hit_for_pass(s3_endpoint, s3_bucket, edge, client, "ir.bin", old)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="ir.bin", Body=new,
                                CacheControl="no-store")
    r = await attempt(client, edge.url + "/ir.bin", {"Range": "bytes=500-", "If-Range": etag})
    assert isinstance(r, Resp), r
    assert (r.status, r.body) == (200, new), (r.status, r.headers.get("content-range"))


async def test_pass_through_range_with_current_if_range(s3_endpoint, s3_bucket, s3edge, client):
    edge = s3edge()
    body = payload(1000, seed=82)
    etag = await _hit_for_pass(s3_endpoint, s3_bucket, edge, client, "ic.bin", body)
    r = await attempt(client, edge.url + "/ic.bin", {"Range": "bytes=500-", "If-Range": etag})
    assert isinstance(r, Resp) and r.status == 206 and r.body == body[500:], r


async def test_pass_through_if_unmodified_since(s3_endpoint, s3_bucket, s3edge, client):
    edge = s3edge()
    body = payload(100, seed=83)
    await _hit_for_pass(s3_endpoint, s3_bucket, edge, client, "ius.bin", body)
    r = await attempt(client, edge.url + "/ius.bin",
                      {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"})
    assert isinstance(r, Resp) and r.status == 412, (r.status, len(r.body))


# ---- two worker processes ---------------------------------------------------------------------
async def _one(url: str, headers: dict[str, str] | None = None) -> Outcome:
    async with aiohttp.ClientSession(auto_decompress=False) as s:  # spread over workers
        return await attempt(s, url, headers)


async def test_two_workers_s3_misses_collapse_and_never_mix(s3_endpoint, s3_bucket, s3proxy,
                                                            edge_procs, tmp_path):
    from tests.conftest import free_port
    from tests.edge.server.conftest import EdgeProcess
    from tests.edge.server.test_processes import _args

    old, new = payload(5 * CHUNK + 3, seed=90), payload(5 * CHUNK + 3, seed=91)
    s3 = _s3(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="w2.bin", Body=old)
    port = free_port()
    e = EdgeProcess(_args(f"s3://{s3_bucket}", tmp_path / "cache", port, "--workers", "2",
                          "--endpoint-url", s3proxy.url, "--default-ttl", "60"))
    edge_procs.append(e)
    e.wait_ready(2)
    u = f"http://127.0.0.1:{port}/w2.bin"
    rs = await asyncio.gather(*(_one(u) for _ in range(12)))
    for r in rs:
        whole(r, old)
    gets = s3proxy.gets(f"{s3_bucket}/w2.bin")
    assert len(gets) == 6, [g.range for g in gets]
    # chunk 0 only of another object, cached via Range requests on both workers; S3 then
    # holds a same-size new version: full GETs must never splice old chunk 0 to new bytes
    s3.put_object(Bucket=s3_bucket, Key="w3.bin", Body=old)
    u3 = f"http://127.0.0.1:{port}/w3.bin"
    for r in await asyncio.gather(*(_one(u3, {"Range": "bytes=0-9"}) for _ in range(6))):
        assert isinstance(r, Resp) and r.status == 206 and r.body == old[:10], r
    for _ in range(100):  # committed: a Range request is a hit on every connection
        rs = await asyncio.gather(*(_one(u3, {"Range": "bytes=0-9"}) for _ in range(4)))
        if all(isinstance(r, Resp) and "hit" in r.cache for r in rs):
            break
        await asyncio.sleep(0.05)
    s3.put_object(Bucket=s3_bucket, Key="w3.bin", Body=new)
    rs = await asyncio.gather(*(_one(u3) for _ in range(6)))
    for r in rs:
        assert judge(r, old, new) is None, judge(r, old, new)
    for _ in range(100):  # and soon after, every worker serves the new object whole
        rs = await asyncio.gather(*(_one(u3) for _ in range(4)))
        if all(isinstance(r, Resp) and r.body == new for r in rs):
            break
        await asyncio.sleep(0.05)
    for r in rs:
        whole(r, new)


@pytest.mark.parametrize("how", ["stall", "cut"])
async def test_fault_mid_body_of_a_changed_object_on_revalidation(how, s3_endpoint, s3_bucket,
                                                                  s3edge, s3proxy, client):
    old, new = payload(2 * CHUNK + 1, seed=95), payload(2 * CHUNK + 1, seed=96)
    s3 = _s3(s3_endpoint)
    edge, u = await _cached(s3edge, client, s3, s3_bucket, "rv.bin", old)
    s3.put_object(Bucket=s3_bucket, Key="rv.bin", Body=new)
    edge.call(edge.node.store.purge, "/rv.bin", None, True)
    fault = Fault(stall_after=1000) if how == "stall" else Fault(cut_after=1000)
    s3proxy.rules.append(_chunk_rule("rv.bin", 0, fault))
    r = await attempt(client, u)
    assert judge(r, old, new) is None, judge(r, old, new)
    s3proxy.rules.clear()
    edge.settle()
    for _ in range(2):
        whole(await attempt(client, u), new)
    r = await attempt(client, u, {"Range": f"bytes={CHUNK}-"})
    assert isinstance(r, Resp) and r.body == new[CHUNK:], r
