"""Request collapsing and read-while-writer: one origin fetch per chunk, streamed to all."""

from __future__ import annotations

import asyncio
import re

from tests.edge.server.conftest import CHUNK, fetch, payload

CC = {"Cache-Control": "max-age=300", "ETag": '"k"'}


async def test_concurrent_misses_cause_one_origin_request_per_chunk(origin, make_edge, client):
    body = payload(4 * CHUNK + 3)
    origin.put("/col.ts", body, headers=CC)
    origin.delay = 0.1
    edge = make_edge(origin.url)
    rs = await asyncio.gather(*(fetch(client, edge.url + "/col.ts") for _ in range(20)))
    assert all(r.status == 200 and r.body == body for r in rs)
    assert origin.count("/col.ts") == 5  # 5 chunks, however many clients
    assert sum("collapsed" in r.cache for r in rs) >= 1


async def _read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    return head, int(re.search(rb"content-length: (\d+)", head).group(1))


async def test_read_while_writer_streams_before_the_fill_completes(origin, make_edge):
    body = payload(CHUNK)  # one chunk: no read-ahead request besides the fill
    origin.put("/rww.ts", body, headers=CC)
    origin.held.add("/rww.ts")  # origin sends one piece then waits
    edge = make_edge(origin.url)
    readers = []
    for _ in range(3):
        r, w = await asyncio.open_connection("127.0.0.1", edge.node.port)
        w.write(b"GET /rww.ts HTTP/1.1\r\nHost: x\r\n\r\n")
        readers.append((r, w))
    for r, _ in readers:  # headers and the first bytes arrive while the origin is stalled
        head, n = await asyncio.wait_for(_read_head(r), 5)
        assert head.startswith(b"HTTP/1.1 200") and n == len(body)
        first = await asyncio.wait_for(r.read(1024), 5)
        assert first == body[:len(first)] and first
    assert origin.count("/rww.ts") == 1
    origin.release()
    for r, w in readers:
        rest = await asyncio.wait_for(r.readexactly(len(body) - len(first)), 10)
        assert first + rest == body
        w.close()


async def test_disconnecting_client_does_not_abort_the_fill(origin, make_edge, client):
    body = payload(3 * CHUNK)
    origin.put("/dc.ts", body, headers=CC)
    origin.held.add("/dc.ts")
    edge = make_edge(origin.url)
    r1, w1 = await asyncio.open_connection("127.0.0.1", edge.node.port)
    w1.write(b"GET /dc.ts HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(_read_head(r1), 5)
    other = asyncio.ensure_future(fetch(client, edge.url + "/dc.ts"))
    await asyncio.sleep(0.05)
    w1.transport.abort()  # the first client goes away mid-body
    origin.release()
    r = await asyncio.wait_for(other, 10)
    assert r.status == 200 and r.body == body
    assert origin.count("/dc.ts") == 3  # one per chunk, none repeated
    r = await fetch(client, edge.url + "/dc.ts")
    assert r.cache.startswith("edgecdn; hit") and r.body == body


async def test_origin_failure_mid_body_closes_clients_and_stores_nothing(origin, make_edge,
                                                                        client):
    body = payload(CHUNK)
    origin.put("/fm.ts", body, headers=CC)
    origin.fail_mid.add("/fm.ts")
    edge = make_edge(origin.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.node.port)
    writer.write(b"GET /fm.ts HTTP/1.1\r\nHost: x\r\n\r\n")
    head, n = await _read_head(reader)
    assert n == len(body)
    got = await asyncio.wait_for(reader.read(), 5)  # EOF before content-length: never whole
    assert len(got) < n
    writer.close()
    origin.fail_mid.clear()
    r = await fetch(client, edge.url + "/fm.ts")
    assert r.status == 200 and r.body == body
    assert "hit" not in r.cache.split("; ")  # the partial chunk was never stored
