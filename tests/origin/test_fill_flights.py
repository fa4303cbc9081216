"""The proactive fill and client misses share one flight per chunk (edge.flights.claim).

A real edge process fills from moto through a recording proxy while clients ask for the
object being filled: each chunk is fetched from the origin once, a client waiting on a chunk
the fill claimed is not held to the fill's bandwidth cap, and a fill that fails mid-object
leaves its claimed chunks to the waiting clients, who get the whole object."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from edge.flights import ChunkFlight, FlightAbandoned, Flights
from edge.store.meta import ObjectMeta
from tests.origin.test_audit_fill import CS, _coverage, _edge_running, _one_object_fill, _wait_fill


async def _get(http: aiohttp.ClientSession, url: str) -> bytes:
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def test_a_client_joining_the_fill_is_not_held_to_its_cap(
        tmp_path, s3_endpoint, s3_bucket, edge_origin) -> None:
    proxy = edge_origin
    body, p0, port = _one_object_fill(s3_endpoint, s3_bucket, 24 * CS + 7)
    # 256 KiB/s: the fill alone would take ~24 s for this object
    async with _edge_running(tmp_path, s3_endpoint, s3_bucket, proxy, port, "256KiB") as url:
        async with aiohttp.ClientSession() as http:
            await _wait_fill(http, url, lambda st: st.get("chunks_committed", 0) >= 1)
            t0 = time.monotonic()
            got = await asyncio.wait_for(_get(http, url + p0), 30)
            took = time.monotonic() - t0
            assert got == body
            st = await _wait_fill(http, url, lambda st: st.get("state") == "complete")
            assert st["errors"] == 0, st
        assert took < 10, f"the client read at the fill's cap: {took:.1f} s"
        cov = _coverage(proxy.gets(p0), len(body))
        assert max(cov) == 1, (cov, [g.range for g in proxy.gets(p0)])


async def test_a_fill_cut_mid_object_leaves_its_chunks_to_the_waiting_client(
        tmp_path, s3_endpoint, s3_bucket, edge_origin) -> None:
    proxy = edge_origin
    size = 12 * CS + 99
    # the fill's GET is cut 6.5 chunks in; the proxy cuts only the first GET of the path
    body, p0, port = _one_object_fill(s3_endpoint, s3_bucket, size, (proxy, int(6.5 * CS)))
    async with _edge_running(tmp_path, s3_endpoint, s3_bucket, proxy, port, "256KiB",
                             retry=3600) as url:
        async with aiohttp.ClientSession() as http:
            await _wait_fill(http, url, lambda st: st.get("chunks_committed", 0) >= 1)
            got = await asyncio.wait_for(_get(http, url + p0), 30)
            assert got == body
            st = await _wait_fill(http, url, lambda st: st.get("errors", 0) >= 1)
            assert st["chunks_committed"] <= 6, st
            assert await _get(http, url + p0) == body
        ranges = [g.range for g in proxy.gets(p0)]
        assert ranges[0] is None and len(ranges) >= 2, ranges  # the fill's, then the client's
        assert all(r is not None and int(r[6:].partition("-")[0]) % CS == 0
                   for r in ranges[1:]), ranges
        assert len(set(ranges[1:])) == len(ranges) - 1, ranges  # each chunk asked for once


def _meta(size: int) -> ObjectMeta:
    return ObjectMeta(key="/t/a.ts", size=size, etag='"v1"', last_modified=None, status=200,
                      headers={}, request_time=0.0, response_time=0.0)


async def test_claim_is_refused_while_the_chunk_is_in_flight_and_release_hands_it_back() -> None:
    fls = Flights(store=None, origin=None, chunk_size=4)  # type: ignore[arg-type]
    meta = _meta(10)
    fl = fls.claim(meta, 1)
    assert isinstance(fl, ChunkFlight) and fl.length == 4
    assert fls.claim(meta, 1) is None
    last = fls.claim(meta, 2)
    assert last is not None and last.length == 2  # the object's short last chunk

    fl.feed(b"ab")
    reader = asyncio.ensure_future(fl.read(2, 4))
    await asyncio.sleep(0)
    assert fl.joined and not last.joined
    fls.release(fl)  # abandoned before it was whole
    with pytest.raises(FlightAbandoned):
        await reader
    assert fls.claim(meta, 1) is not None  # free again: the next fetch starts anew

    last.feed(b"xy")
    last.finish()
    fls.release(last)
    assert await last.read(0, 2) == b"xy" and await last.settled()
