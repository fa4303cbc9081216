"""The hot path (prepared answers for plain GETs of whole stored objects: small ones from
memory, larger ones by sendfile from their chunk files) answers, logs and counts exactly like
the general path, and follows the clock, purges, new versions and evicted chunks."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.logs import AccessRecord
from edge.http.cachestatus import cache_status
from edge.server.hot import HotEntry
from edge.server.protocol import HttpConnection
from tests.edge.server.conftest import CHUNK, fetch, payload

CC = {"Cache-Control": "max-age=600", "ETag": '"h1"', "Content-Type": "video/mp2t"}
BODY = b"hot!" * 1000


async def _warm_hot(edge, client, path: str) -> None:
    """Miss, disk hits (promoted to memory), memory hit: the answer is now prepared."""
    for _ in range(4):
        r = await fetch(client, edge.url + path)
        assert r.body == BODY
        edge.settle()
        edge.call(edge.node.store.flush)
    await fetch(client, edge.url + path)
    assert path in edge.node.app.hot


async def _keepalive_gets(port: int, path: str, n: int) -> list[tuple[bytes, bytes]]:
    """n plain GETs one after another on one keep-alive connection: (head, body) each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for _ in range(n):
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        m = re.search(rb"content-length: (\d+)", head)
        assert m is not None
        out.append((head, await reader.readexactly(int(m.group(1)))))
    writer.close()
    return out


def _header(head: bytes, name: str) -> str:
    m = re.search(rb"\r\n" + name.encode() + rb": ([^\r]*)\r\n", head)
    assert m is not None, head
    return m.group(1).decode()


def _counted(edge) -> tuple[int, int]:
    """The edge's requests and body bytes so far, hot answers folded in (as readers see them)."""
    app = edge.node.app

    def read() -> tuple[int, int]:
        app.fold_hot_counts()
        return app.counters.requests, app.counters.bytes_sent

    return edge.call(read)


async def _small_window_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection with a 4 KiB receive buffer: the edge's socket fills while we read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return await asyncio.open_connection(sock=sock)


async def test_hot_answers_are_logged_and_counted_like_general_hits(origin, make_edge, client,
                                                                    tmp_path):
    origin.put("/h.ts", BODY, headers=CC)
    log_file = tmp_path / "access.jsonl"
    edge = make_edge(origin.url, log={"access": str(log_file)})
    await _warm_hot(edge, client, "/h.ts")
    edge.call(edge.node.ops.flush_log_now)
    before = len(log_file.read_text().splitlines())
    general = AccessRecord.from_json(log_file.read_text().splitlines()[-1])
    answers = await _keepalive_gets(edge.node.port, "/h.ts", 5)
    for head, body in answers:
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == BODY
        assert _header(head, "cache-status").startswith("edgecdn; hit; ttl=")
        assert _header(head, "etag") == '"h1"' and _header(head, "content-type") == "video/mp2t"
        assert int(_header(head, "age")) >= 0
    edge.call(edge.node.ops.flush_log_now)
    lines = log_file.read_text().splitlines()[before:]
    recs = [AccessRecord.from_json(x) for x in lines]
    assert len(recs) == 5
    for r in recs:
        assert (r.method, r.path, r.status, r.bytes, r.cache, r.range, r.client) == \
            ("GET", "/h.ts", 200, len(BODY), "hit", "", "127.0.0.1")
        assert r.dur_ms >= 0 and r.edge == general.edge and abs(r.ts - time.time()) < 60
    # the same JSON fields, in the same order, as a general-path line
    assert list(json.loads(lines[0])) == list(
        json.loads(log_file.read_text().splitlines()[before - 1]))
    assert edge.node.app.hot["/h.ts"].resp  # these were answered by the hot path
    # ...and counted in requests and bytes (folded from the hot path's two integers)
    await _keepalive_gets(edge.node.port, "/h.ts", 1)
    n0, b0 = _counted(edge)
    await _keepalive_gets(edge.node.port, "/h.ts", 3)
    n1, b1 = _counted(edge)
    assert (n1 - n0, b1 - b0) == (3, 3 * len(BODY))
    # /metrics and /healthz count them as hits
    m = await fetch(client, edge.url + "/metrics")
    hits = re.search(rb'edgecdn_requests_total\{cache="hit"\} (\d+)', m.body)
    assert hits is not None and int(float(hits.group(1))) >= 6
    h = json.loads((await fetch(client, edge.url + "/healthz")).body)
    assert h["hit_ratio"] > 0.5


async def test_hot_answer_age_and_ttl_follow_the_clock_and_expiry(origin, make_edge, client):
    origin.put("/age.ts", BODY, headers=CC)
    edge = make_edge(origin.url)
    await _warm_hot(edge, client, "/age.ts")
    app = edge.node.app
    (head, _), = await _keepalive_gets(edge.node.port, "/age.ts", 1)
    age0 = int(_header(head, "age"))
    t = time.time()
    edge.call(setattr, app, "clock", lambda: t + 100)  # 100 s later: the answer is rebuilt
    (head, body), = await _keepalive_gets(edge.node.port, "/age.ts", 1)
    assert body == BODY and int(_header(head, "age")) in (age0 + 100, age0 + 101)
    ttl = int(_header(head, "cache-status").rpartition("ttl=")[2])
    assert 600 - 102 <= ttl <= 600 - 99
    edge.call(setattr, app, "clock", lambda: t + 700)  # expired: the general path revalidates
    (head, body), = await _keepalive_gets(edge.node.port, "/age.ts", 1)
    assert body == BODY and "fwd=stale" in _header(head, "cache-status")
    assert origin.count("/age.ts") == 2


async def test_hot_answer_dropped_by_a_new_version(origin, make_edge, client):
    origin.put("/v.ts", BODY, headers=CC)
    edge = make_edge(origin.url)
    await _warm_hot(edge, client, "/v.ts")
    new = b"new!" * 1000
    origin.put("/v.ts", new, headers={**CC, "ETag": '"h2"'})
    # an unsafe method invalidates the stored response; the next plain GET must not be hot
    await fetch(client, edge.url + "/v.ts", "POST", data=b"x")
    (head, body), = await _keepalive_gets(edge.node.port, "/v.ts", 1)
    assert body == new and _header(head, "etag") == '"h2"'


async def test_nothing_is_answered_after_a_connection_close_request(origin, make_edge, client):
    origin.put("/c.ts", BODY, headers=CC)
    edge = make_edge(origin.url)
    await _warm_hot(edge, client, "/c.ts")
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.node.port)
    writer.write(b"GET /c.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                 b"GET /c.ts HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)  # until the edge closes
    writer.close()
    assert data.count(b"HTTP/1.1 200") == 1 and data.endswith(BODY)
    assert b"connection: close" in data.split(b"\r\n\r\n")[0]


async def test_hot_hits_reach_the_store_policy_counted_and_capped(origin, make_edge, client):
    origin.put("/p.ts", BODY, headers=CC)
    edge = make_edge(origin.url)
    await _warm_hot(edge, client, "/p.ts")
    app, store = edge.node.app, edge.node.store
    edge.call(app.flush_hot_hits)
    seen: list[tuple[str, int]] = []
    original = store.record_hit

    def counting(meta, index):
        seen.append((meta.key, index))
        original(meta, index)

    edge.call(setattr, store, "record_hit", counting)
    await _keepalive_gets(edge.node.port, "/p.ts", 5)
    edge.call(app.flush_hot_hits)
    for _ in range(100):  # the store calls run in slices on the edge's loop
        if edge.call(len, seen) >= 5:
            break
    assert seen == [("/p.ts", 0)] * 5
    seen.clear()
    await _keepalive_gets(edge.node.port, "/p.ts", 30)
    edge.call(app.flush_hot_hits)
    for _ in range(100):
        if edge.call(len, seen) >= 8:
            break
    assert 8 <= len(seen) <= 16  # capped per entry and flush (the 1 s tick may split them)


# ---- larger objects: prepared headers, body by sendfile from the chunk files ---------------
BIG = 3 * CHUNK + 17  # spans four chunks, the last one short


async def _warm_hot_file(edge, client, path: str, body: bytes) -> None:
    """A miss, then a general-path hit once every chunk is on disk: the header is prepared."""
    r = await fetch(client, edge.url + path)
    assert r.body == body
    edge.settle()
    edge.call(edge.node.store.flush)
    r = await fetch(client, edge.url + path)
    assert r.body == body and r.headers["cache-status"].startswith("edgecdn; hit")
    e = edge.node.app.hot[path]
    assert e.items is not None and e.size == 0  # from files, no body bytes held


async def test_large_hits_are_answered_from_chunk_files_logged_like_general_hits(
        origin, make_edge, client, tmp_path):
    body = payload(BIG, 7)
    origin.put("/big.ts", body, headers=CC)
    log_file = tmp_path / "access.jsonl"
    edge = make_edge(origin.url, log={"access": str(log_file)})
    await _warm_hot_file(edge, client, "/big.ts", body)
    fetched = origin.count("/big.ts")
    answers = await _keepalive_gets(edge.node.port, "/big.ts", 4)
    for head, got in answers:
        assert got == body
        assert _header(head, "cache-status").startswith("edgecdn; hit; ttl=")
        assert _header(head, "content-length") == str(BIG)
        assert _header(head, "etag") == '"h1"' and _header(head, "accept-ranges") == "bytes"
    assert edge.node.app.hot["/big.ts"].resp  # answered by the prepared header
    assert origin.count("/big.ts") == fetched
    edge.call(edge.node.ops.flush_log_now)
    recs = [AccessRecord.from_json(x) for x in log_file.read_text().splitlines()[-4:]]
    assert [(r.path, r.status, r.bytes, r.cache) for r in recs] == \
        [("/big.ts", 200, BIG, "hit")] * 4
    # a range of the same object still takes the general path, and is right
    r = await fetch(client, edge.url + "/big.ts", headers={"Range": "bytes=100-70000"})
    assert r.status == 206 and r.body == body[100:70001]


async def test_a_chunk_evicted_under_a_file_entry_is_fetched_again(origin, make_edge, client):
    body = payload(BIG, 8)
    origin.put("/ev.ts", body, headers=CC)
    edge = make_edge(origin.url)
    await _warm_hot_file(edge, client, "/ev.ts", body)
    chunk_file = next(p for _, _, _, r in edge.node.app.hot["/ev.ts"].items
                      for p in [r.path] if p.endswith(".1"))
    fetched = origin.count("/ev.ts")
    os.unlink(chunk_file)  # as another worker's eviction would
    edge.call(edge.node.app.fds.clear)
    (head, got), = await _keepalive_gets(edge.node.port, "/ev.ts", 1)
    assert got == body  # never a short or shifted body
    assert "/ev.ts" not in edge.node.app.hot  # the entry named a file that is gone
    # the chunk's bytes came from the memory tier if it held them, else from the origin
    mem = edge.call(lambda: edge.node.store._objs["/ev.ts"].mem.get(1))
    assert origin.count("/ev.ts") == fetched + (mem is None)
    for _ in range(2):
        (head, got), = await _keepalive_gets(edge.node.port, "/ev.ts", 1)
        assert got == body


async def test_a_chunk_evicted_from_disk_while_in_memory_is_served_from_memory(
        origin, make_edge, client):
    """General path, no hot entry: the disk file of a chunk the memory tier holds is gone."""
    body = payload(BIG, 12)
    origin.put("/em.ts", body, headers=CC)
    edge = make_edge(origin.url)
    assert (await fetch(client, edge.url + "/em.ts")).body == body
    edge.settle()
    edge.call(edge.node.store.flush)
    store = edge.node.store
    for _ in range(50):  # hits promote the chunks to the memory tier
        r = await fetch(client, edge.url + "/em.ts", headers={"Range": "bytes=0-"})
        assert r.body == body
        edge.settle()
        if edge.call(lambda: 1 in store._objs["/em.ts"].mem):
            break
    ref = edge.call(lambda: store._objs["/em.ts"].mem[1])
    assert ref.path and ref.data is not None
    fetched = origin.count("/em.ts")
    os.unlink(ref.path)
    edge.call(edge.node.app.fds.clear)
    r = await fetch(client, edge.url + "/em.ts", headers={"Range": "bytes=0-"})
    assert r.status == 206 and r.body == body
    assert origin.count("/em.ts") == fetched  # from memory: no refetch, and no endless retry


async def test_a_file_entry_never_outlives_its_version(origin, make_edge, client):
    body = payload(BIG, 9)
    origin.put("/nv.ts", body, headers=CC)
    edge = make_edge(origin.url)
    await _warm_hot_file(edge, client, "/nv.ts", body)
    new = payload(BIG + 5, 10)
    origin.put("/nv.ts", new, headers={**CC, "ETag": '"h2"'})
    await fetch(client, edge.url + "/nv.ts", "POST", data=b"x")  # invalidates the stored one
    (head, got), = await _keepalive_gets(edge.node.port, "/nv.ts", 1)
    assert got == new and _header(head, "etag") == '"h2"'


async def test_a_slow_reader_of_a_file_entry_gets_every_byte(origin, make_edge, client,
                                                             tmp_path, monkeypatch):
    """sendfile takes what the socket holds, the rest follows as the client reads (the hot
    answer holds the connection and goes on from writability callbacks): a client with a
    small receive buffer reading slowly gets the whole body, then the next answer (queued
    behind it), and each is logged and counted once, whole."""
    body = payload(160 * CHUNK, 11)  # 10 MiB: more than the socket buffers hold
    origin.put("/slow.ts", body, headers=CC)
    log_file = tmp_path / "access.jsonl"
    edge = make_edge(origin.url, log={"access": str(log_file)})
    await _warm_hot_file(edge, client, "/slow.ts", body)
    held = []
    real_hold = HttpConnection.hold
    monkeypatch.setattr(HttpConnection, "hold", lambda c: (held.append(c), real_hold(c)))
    edge.call(edge.node.ops.flush_log_now)
    before = len(log_file.read_text().splitlines())
    n0, b0 = _counted(edge)
    reader, writer = await _small_window_client(edge.node.port)
    # the second request arrives while the first answer is in progress, so it queues
    # (sent in one write, both would take the general path: a hot answer is given only to a
    # read that holds one whole request)
    writer.write(b"GET /slow.ts HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.write(b"GET /slow.ts HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    for _ in range(2):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"edgecdn; hit" in head
        got = bytearray()
        while len(got) < len(body):
            got += await reader.read(min(65536, len(body) - len(got)))
            await asyncio.sleep(0.0005)
        assert bytes(got) == body
    writer.close()
    assert len(held) == 1  # the first answer went on from callbacks (the second: send_body)
    n1, b1 = _counted(edge)
    assert (n1 - n0, b1 - b0) == (2, 2 * len(body))
    edge.call(edge.node.ops.flush_log_now)
    recs = [AccessRecord.from_json(x) for x in log_file.read_text().splitlines()[before:]]
    assert [(r.path, r.status, r.bytes, r.cache) for r in recs] == [("/slow.ts", 200, len(body), "hit")] * 2


async def test_a_client_gone_mid_file_answer_is_logged_short_and_forgotten(
        origin, make_edge, client, tmp_path):
    """The socket is full, the answer waits for writability, the client resets: the wait ends,
    the line logs the bytes actually sent, and the edge keeps nothing of the connection."""
    body = payload(160 * CHUNK, 14)  # 10 MiB: more than the socket buffers hold
    origin.put("/gone.ts", body, headers=CC)
    log_file = tmp_path / "access.jsonl"
    edge = make_edge(origin.url, log={"access": str(log_file)})
    await _warm_hot_file(edge, client, "/gone.ts", body)
    app = edge.node.app
    n0, _ = _counted(edge)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", edge.node.port))
    sock.sendall(b"GET /gone.ts HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.recv(1024)  # the answer has started; then nothing is read
    for _ in range(200):
        waiting = edge.call(lambda: [c for c in app.conns if c._on_writable is not None])
        if waiting:
            break
        await asyncio.sleep(0.01)
    assert waiting, "the answer should be waiting for the socket"
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # RST
    conn, = waiting
    for _ in range(200):
        if edge.call(lambda: conn not in app.conns):
            break
        await asyncio.sleep(0.01)
    assert edge.call(lambda: conn not in app.conns and conn.closed and conn.dupfd < 0)
    edge.call(edge.node.ops.flush_log_now)
    rec = AccessRecord.from_json(log_file.read_text().splitlines()[-1])
    assert (rec.path, rec.status, rec.cache) == ("/gone.ts", 200, "hit")
    assert 0 < rec.bytes < len(body)
    assert _counted(edge)[0] == n0 + 1  # counted once, by the general rules that logged it
    # the edge still answers in full on a new connection
    (head, got), = await _keepalive_gets(edge.node.port, "/gone.ts", 1)
    assert got == body


@pytest.mark.parametrize("kind", ["memory", "file"])
async def test_signed_urls_share_one_prepared_answer_and_every_token_is_checked(
        origin, make_edge, client, kind):
    """Each player's URL carries its own token; the prepared answer is found by the path, and
    each request's token must still verify (expired, foreign or missing -> 403)."""
    from contracts.tokens import sign, token_query

    path = f"/titles/t1/r/{kind}.ts"
    body = BODY if kind == "memory" else payload(BIG, 13)
    origin.put(path, body, headers=CC)
    edge = make_edge(origin.url, tokens={"required": True, "secrets": {"k1": "s-one"}})
    now = int(time.time())

    def url(token: str) -> str:
        return f"{path}?{token_query(token)}"

    for i in range(6):  # different tokens (expiry differs): warm-up and promotion
        tok = sign(b"s-one", "k1", "/titles/t1/", now + 60 + i)
        r = await fetch(client, edge.url + url(tok))
        assert r.status == 200 and r.body == body
        edge.settle()
        edge.call(edge.node.store.flush)
    app = edge.node.app
    assert path in app.hot and (app.hot[path].items is None) == (kind == "memory")
    direct = []  # answers given by the prepared entry straight from the parser
    real = app.hot_direct

    def counting(conn, target, t0):
        ok = real(conn, target, t0)
        direct.append((target, ok))
        return ok

    edge.call(setattr, app, "hot_direct", counting)
    fresh = [sign(b"s-one", "k1", "/titles/t1/", now + 120 + i) for i in range(3)]
    for tok in fresh:
        (head, got), = await _keepalive_gets(edge.node.port, url(tok), 1)
        assert got == body and _header(head, "cache-status").startswith("edgecdn; hit")
    assert direct == [(url(t), True) for t in fresh]  # one entry answered all three
    expired = sign(b"s-one", "k1", "/titles/t1/", now - 5)
    foreign = sign(b"s-one", "k1", "/titles/t2/", now + 60)
    forged = sign(b"wrong", "k1", "/titles/t1/", now + 60)
    for bad, why in ((expired, b"expired"), (foreign, b"does not cover"), (forged, b"signature")):
        r = await fetch(client, edge.url + url(bad))
        assert r.status == 403 and why in r.body
    r = await fetch(client, edge.url + path)
    assert r.status == 403 and b"missing token" in r.body
    # a token that does not verify is never answered from the entry
    assert len(direct) == 7 and not any(ok for _, ok in direct[3:])


async def test_a_refetched_chunk_then_files_to_a_slow_reader(origin, make_edge, client):
    """The first chunk's file is gone: it streams from a new origin fetch, and the chunk files
    after it go out by sendfile from the same response task, waiting for a slow reader's
    socket (BodySender._send_file -> HttpConnection.writable)."""
    body = payload(160 * CHUNK + 5, 15)  # 10 MiB: more than the socket buffers hold
    origin.put("/re.ts", body, headers=CC)
    edge = make_edge(origin.url, cache={"memory": "0"})
    await _warm_hot_file(edge, client, "/re.ts", body)
    fetched = origin.count("/re.ts")
    first = next(r.path for i, _, _, r in edge.node.app.hot["/re.ts"].items if i == 0)
    os.unlink(first)
    edge.call(edge.node.app.fds.clear)
    waits = []
    original = HttpConnection.writable

    async def counting(self):
        waits.append(1)
        await original(self)

    HttpConnection.writable = counting
    try:
        reader, writer = await _small_window_client(edge.node.port)
        writer.write(b"GET /re.ts HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        got = bytearray()
        while len(got) < len(body):
            got += await reader.read(min(16384, len(body) - len(got)))
            await asyncio.sleep(0.001)
        writer.close()
    finally:
        HttpConnection.writable = original
    assert bytes(got) == body
    assert origin.count("/re.ts") == fetched + 1  # only the missing chunk came again
    assert waits  # the disk chunks after it waited for the socket


class _View:
    """The parts of MetaView a HotEntry reads."""

    def __init__(self, age_at: float, rt: float, lifetime: float) -> None:
        self.age_at, self.rt, self.lifetime = age_at, rt, lifetime
        self.upstream = None  # no upstream Cache-Status member

    def hit_status(self, ttl: float) -> str:
        return cache_status(hit=True, ttl=ttl)


@given(age_at=st.floats(0, 1e5), lifetime=st.floats(1, 1e6),
       steps=st.lists(st.floats(0, 3), min_size=1, max_size=40),
       body=st.sampled_from([b"", b"0123456789"]))
def test_a_prepared_response_always_equals_one_built_at_that_instant(age_at, lifetime, steps,
                                                                     body):
    """The prepared answer is reused until Age's or ttl's whole second changes: at any instant
    (fresh or not) it is byte for byte what building it then would give."""
    rt = 1_800_000_000.0
    meta = type("M", (), {"size": len(body)})()
    view = _View(age_at, rt, lifetime)
    e = HotEntry("k", meta, view, b"HTTP/1.1 200 OK\r\n", body, (0,), (), "")  # type: ignore[arg-type]
    now = rt
    for dt in steps:
        now += dt
        age = max(0.0, age_at + (now - rt))
        want = b"".join((b"HTTP/1.1 200 OK\r\n", b"age: %d\r\ncache-status: " % int(age),
                         cache_status(hit=True, ttl=lifetime - age).encode(), b"\r\n\r\n",
                         body))
        assert e.response(now) == want
        assert (now < e.fresh_until) == (lifetime - age > 0) or abs(lifetime - age) < 1e-5


async def test_a_chunk_file_cut_short_on_disk_is_fetched_again_not_waited_on(
        origin, make_edge, client):
    """A chunk file that ends before its length (cut on disk behind the cache's back):
    sendfile's 0 at end of file is not "the socket is full" (the answer used to wait for
    writability forever, spinning, with the client hung). The chunk counts as missing and
    the rest of the answer comes from a new origin fetch: whole and right, under a hot file
    entry and on the general path (a range across the cut chunk) alike."""
    body = payload(BIG, 16)
    origin.put("/cut.ts", body, headers=CC)
    edge = make_edge(origin.url, cache={"memory": "0"})
    await _warm_hot_file(edge, client, "/cut.ts", body)

    def cut() -> None:
        ref = edge.call(lambda: edge.node.store._objs["/cut.ts"].chunks[1])
        assert os.path.getsize(ref.path) == CHUNK
        os.truncate(ref.path, CHUNK // 2)  # same file: a cached open fd sees it too

    cut()
    fetched = origin.count("/cut.ts")
    (head, got), = await asyncio.wait_for(_keepalive_gets(edge.node.port, "/cut.ts", 1), 10)
    assert head.startswith(b"HTTP/1.1 200") and got == body
    assert origin.count("/cut.ts") == fetched + 1  # that chunk, fetched again
    edge.settle()
    edge.call(edge.node.store.flush)
    cut()
    r = await asyncio.wait_for(fetch(client, edge.url + "/cut.ts",
                                     headers={"Range": f"bytes=10-{2 * CHUNK + 9}"}), 10)
    assert r.status == 206 and r.body == body[10:2 * CHUNK + 10]
