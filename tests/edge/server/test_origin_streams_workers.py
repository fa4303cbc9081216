"""Real edge processes: --workers 2 stream one unknown-length body fetched by the chunk owner;
a kill -9 mid-stream keeps nothing of it."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import free_port
from tests.edge.server.conftest import CHUNK, EdgeProcess, payload
from tests.edge.server.test_processes import _args

CC = {"Cache-Control": "max-age=600", "ETag": '"w"'}


async def test_two_workers_stream_one_unknown_length_body_and_store_it(origin, edge_procs,
                                                                       tmp_path):
    body = payload(5 * CHUNK + 11, 4)
    origin.put("/wc.ts", body, headers=CC, framing="chunked")
    origin.delay = 0.05
    port = free_port()
    e = EdgeProcess(_args(origin.url, tmp_path / "cache", port, "--workers", "2"))
    edge_procs.append(e)
    e.wait_ready(2)
    url = f"http://127.0.0.1:{port}/wc.ts"

    async def one() -> tuple[bytes, str]:
        async with aiohttp.ClientSession() as s:  # a new connection each: spread over workers
            async with s.get(url) as r:
                assert r.status == 200
                return await r.read(), r.headers.get("cache-status", "")

    got = await asyncio.gather(*(one() for _ in range(16)))
    assert all(g == body for g, _ in got)
    # one origin fetch: the owner's; the other worker reads along through the owner
    assert origin.count("/wc.ts") == 1, origin.requests
    for _ in range(20):  # the owner stores it: every later request, on either worker, hits
        if all("hit" in c for _, c in await asyncio.gather(*(one() for _ in range(4)))):
            break
        await asyncio.sleep(0.1)
    got = await asyncio.gather(*(one() for _ in range(8)))
    assert all(g == body and c.startswith("edgecdn; hit") for g, c in got), got[0][1]
    assert origin.count("/wc.ts") == 1


async def test_kill9_mid_stream_stores_nothing_partial(origin, edge_procs, tmp_path):
    body = payload(4 * CHUNK + 3, 5)
    origin.put("/k.ts", body, headers=CC, framing="chunked")
    origin.held.add("/k.ts")  # one piece, then the origin waits
    port = free_port()
    cache = tmp_path / "cache"
    e = EdgeProcess(_args(origin.url, cache, port))
    edge_procs.append(e)
    e.wait_ready()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /k.ts HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
    assert b"transfer-encoding: chunked" in head
    assert await asyncio.wait_for(r.read(100), 10)  # bytes are flowing: mid-stream
    e.kill9()
    w.close()
    origin.held.discard("/k.ts")
    origin.release()
    e2 = EdgeProcess(_args(origin.url, cache, port))
    edge_procs.append(e2)
    e2.wait_ready()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/k.ts") as resp:
            got, cs = await resp.read(), resp.headers["cache-status"]
    assert got == body and cs == "edgecdn; fwd=miss"  # nothing of the cut stream was kept
    assert origin.count("/k.ts") == 2


async def test_two_workers_first_request_for_uncacheable_urls_costs_one_origin_request(
        origin, edge_procs, tmp_path):
    port = free_port()
    e = EdgeProcess(_args(origin.url, tmp_path / "cache", port, "--workers", "2"))
    edge_procs.append(e)
    e.wait_ready(2)
    paths = [f"/private/{i}" for i in range(8)]  # chunk 0 of these is owned by either worker
    for i, p in enumerate(paths):
        origin.put(p, payload(1000 + i, i), headers={"Cache-Control": "private"})
    for i, p in enumerate(paths):
        async with aiohttp.ClientSession() as s:  # a new connection each: spread over workers
            async with s.get(f"http://127.0.0.1:{port}{p}") as r:
                assert r.status == 200 and await r.read() == payload(1000 + i, i)
                assert r.headers["cache-status"].startswith("edgecdn; fwd=uri-miss")
        assert origin.count(p) == 1, (p, origin.requests)
