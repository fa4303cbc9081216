"""--workers 2: every worker's prepared (hot) answers give way to a purge or a new version
made through any worker. Hot answers skip the general path, so they rest on the meta re-check
against the store, which learns the other worker's changes from the shared journal."""

from __future__ import annotations

import asyncio

from tests.conftest import free_port
from tests.edge.server.conftest import CHUNK, EdgeProcess, payload
from tests.edge.server.test_processes import _args

CONNS = 16  # kept-alive connections, spread over both workers by SO_REUSEPORT
BIG = 2 * CHUNK + 5  # answered from its chunk files (sendfile)
SMALL = 1000  # answered from memory


async def _get(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str,
               extra: str = "") -> tuple[int, dict[str, str], bytes]:
    """One plain keep-alive GET on an open connection (the hot path's kind of request)."""
    r, w = conn
    w.write(f"GET {path} HTTP/1.1\r\nHost: edge\r\n{extra}\r\n".encode())
    head = (await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    body = await asyncio.wait_for(r.readexactly(int(hdrs.get("content-length", "0"))), 10)
    return status, hdrs, body


async def test_purge_and_new_version_reach_every_worker_s_hot_answers(origin, edge_procs,
                                                                      tmp_path):
    paths = {"/hot/big.ts": BIG, "/hot/small.ts": SMALL}
    for i, (p, n) in enumerate(paths.items()):
        origin.put(p, payload(n, i), headers={"Cache-Control": "max-age=600", "ETag": '"v1"'})
    port = free_port()
    e = EdgeProcess(_args(origin.url, tmp_path / "cache", port, "--workers", "2",
                          "--admin-token", "sekrit"))
    edge_procs.append(e)
    e.wait_ready(2)
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(CONNS)]
    try:
        # warm: miss, general-path hit (prepares the answer), then hot answers
        for _ in range(4):
            for c in conns:
                for i, (p, n) in enumerate(paths.items()):
                    status, h, body = await _get(c, p)
                    assert status == 200 and body == payload(n, i)
        fetched = {p: origin.count(p) for p in paths}
        assert fetched == {"/hot/big.ts": 3, "/hot/small.ts": 1}  # one fetch per chunk

        # new bytes at the origin, then a hard purge through whichever worker takes it
        for i, (p, n) in enumerate(paths.items()):
            origin.put(p, payload(n, i + 7), headers={"Cache-Control": "max-age=600",
                                                      "ETag": '"v2"'})
        admin = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"prefix": "/hot/"}'
        admin[1].write(b"POST /admin/purge HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer "
                       b"sekrit\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        status = int((await asyncio.wait_for(admin[0].readline(), 10)).split()[1])
        admin[1].close()
        assert status == 200
        await asyncio.sleep(0.3)  # the other worker reads the journal every 50 ms
        for c in conns:
            for i, (p, n) in enumerate(paths.items()):
                for _ in range(2):  # the first answer after the purge, and the prepared one
                    status, h, got = await _get(c, p)
                    assert status == 200 and got == payload(n, i + 7), (p, h)
                    assert h["etag"] == '"v2"'
        assert all(origin.count(p) > fetched[p] for p in paths)
    finally:
        for _, w in conns:
            w.close()
    assert e.term() == 0
