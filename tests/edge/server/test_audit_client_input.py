"""Audit: hostile or unusual client input through real sockets (bytes exactly as written).

Every answer is read with its own framing (Content-Length, chunked or close-delimited), so a
body that is short, shifted or followed by stray bytes fails the test, and every test sends a
later request on the same connection where keep-alive is promised."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import aiohttp
import pytest

from tests.edge.server.conftest import CHUNK, OriginServer, fetch, payload
from tests.edge.server.test_hot_path import BODY, _warm_hot, _warm_hot_file

LM = "Tue, 01 Sep 2026 10:00:00 GMT"
CC = {"Cache-Control": "max-age=600", "ETag": '"b1"', "Content-Type": "video/mp2t",
      "Last-Modified": LM}
HOT_CC = {"Cache-Control": "max-age=600", "ETag": '"h1"', "Content-Type": "video/mp2t"}
BIG = 3 * CHUNK + 17  # four chunks, the last one short
GET = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"

Answer = tuple[int, dict[str, str], bytes]


# ---- a strict little HTTP/1.1 response reader ----------------------------------------------
async def _read_answer(reader: asyncio.StreamReader, head_request: bool = False,
                       timeout: float = 10.0) -> Answer:
    """One response: (status, lower-case headers with repeats joined, body by its framing)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head[:-4].decode("latin-1").split("\r\n")
    m = re.fullmatch(r"HTTP/1\.1 (\d{3}) .*", lines[0])
    assert m is not None, head
    status = int(m.group(1))
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        assert sep and k == k.strip(), head
        k = k.lower()
        headers[k] = f"{headers[k]}, {v.strip()}" if k in headers else v.strip()
    if head_request or status in (204, 304) or status < 200:
        return status, headers, b""
    if "content-length" in headers:
        assert "transfer-encoding" not in headers, head
        n = int(headers["content-length"])
        return status, headers, await asyncio.wait_for(reader.readexactly(n), timeout)
    if headers.get("transfer-encoding") == "chunked":
        body = bytearray()
        while True:
            size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout))[:-2], 16)
            if size == 0:
                assert await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout) == b"\r\n"
                return status, headers, bytes(body)
            body += await asyncio.wait_for(reader.readexactly(size + 2), timeout)
            assert body[-2:] == b"\r\n"
            del body[-2:]
    assert headers.get("connection") == "close", head  # close-delimited
    return status, headers, await asyncio.wait_for(reader.read(), timeout)


async def _closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True when the edge closed the connection (within timeout) with nothing more to read."""
    try:
        return await asyncio.wait_for(reader.read(1), timeout) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


async def _quiet(reader: asyncio.StreamReader, wait: float = 0.3) -> bytes:
    """Whatever arrives within ``wait`` seconds (b"" if nothing)."""
    try:
        return await asyncio.wait_for(reader.read(65536), wait)
    except (TimeoutError, ConnectionError):
        return b""


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _send(writer: asyncio.StreamWriter, data: bytes, bytewise: bool = False) -> None:
    if not bytewise:
        writer.write(data)
        await writer.drain()
        return
    for i in range(len(data)):
        writer.write(data[i:i + 1])
        await writer.drain()
        if i % 16 == 0:
            await asyncio.sleep(0)


async def _one(port: int, data: bytes, head_request: bool = False,
               wait: float = 0.5) -> tuple[Answer, bool]:
    """Send data on a new connection: its first answer, and whether the edge then closed
    it (within ``wait`` seconds)."""
    reader, writer = await _open(port)
    try:
        await _send(writer, data)
        ans = await _read_answer(reader, head_request)
        return ans, await _closed(reader, wait)
    finally:
        writer.close()


async def _warm(edge: Any, client: aiohttp.ClientSession, path: str, body: bytes) -> None:
    """A miss, then a hit once every chunk is stored."""
    for _ in range(2):
        r = await fetch(client, edge.url + path)
        assert r.status == 200 and r.body == body
        edge.settle()
        edge.call(edge.node.store.flush)


def _multipart(headers: dict[str, str], body: bytes) -> list[tuple[str, bytes]]:
    """The (Content-Range, bytes) parts of a multipart/byteranges body (RFC 9110 14.6)."""
    m = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", headers["content-type"])
    assert m is not None, headers
    delim = b"--" + m.group(1).encode()
    assert body.startswith(delim + b"\r\n"), body[:80]
    assert body.endswith(b"\r\n" + delim + b"--\r\n"), body[-80:]
    parts = []
    for raw in body[len(delim) + 2:-len(delim) - 6].split(b"\r\n" + delim + b"\r\n"):
        head, _, data = raw.partition(b"\r\n\r\n")
        cr = re.search(rb"(?im)^content-range: (.*)$", head)
        assert cr is not None, head
        parts.append((cr.group(1).decode().strip(), data))
    return parts


async def _two_hot(origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession,
                   seed: int) -> tuple[Any, bytes]:
    """An edge with two prepared answers: /s.ts from memory, /b.ts (returned) from files."""
    big = payload(BIG, seed)
    origin.put("/s.ts", BODY, headers=HOT_CC)
    origin.put("/b.ts", big, headers={**HOT_CC, "ETag": '"b1"'})
    edge = make_edge(origin.url)
    await _warm_hot(edge, client, "/s.ts")
    await _warm_hot_file(edge, client, "/b.ts", big)
    return edge, big


# ---- pipelining: hot and general answers in order -------------------------------------------
@pytest.mark.parametrize("bytewise", [False, True], ids=["one-write", "byte-by-byte"])
async def test_pipelined_mix_of_hot_and_general_requests_answers_in_order(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession,
        bytewise: bool) -> None:
    """GET (hot memory entry), HEAD, Range, conditional, GET (hot file entry), a 404 and a
    multipart range, all pipelined: each answer in order, whole, and the connection then
    still answers a plain GET (from the read, hot)."""
    edge, big = await _two_hot(origin, make_edge, client, 21)
    reqs = [
        (GET % b"/s.ts", False),
        (b"HEAD /s.ts HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"GET /b.ts HTTP/1.1\r\nHost: x\r\nRange: bytes=%d-%d\r\n\r\n"
         % (CHUNK - 3, 2 * CHUNK + 2), False),
        (b"GET /s.ts HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"h1\"\r\n\r\n", False),
        (GET % b"/b.ts", False),
        (GET % b"/nothing-here.ts", False),
        (b"GET /b.ts HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0,-1\r\n\r\n", False),
        (b"HEAD /b.ts HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (GET % b"/s.ts", False),
    ]
    reader, writer = await _open(edge.node.port)
    await _send(writer, b"".join(r for r, _ in reqs), bytewise)
    got = [await _read_answer(reader, h) for _, h in reqs]
    assert [s for s, _, _ in got] == [200, 200, 206, 304, 200, 404, 206, 200, 200]
    assert got[0][2] == BODY and got[8][2] == BODY
    assert got[1][1]["content-length"] == str(len(BODY)) and got[1][2] == b""
    assert got[2][2] == big[CHUNK - 3:2 * CHUNK + 3]
    assert got[2][1]["content-range"] == f"bytes {CHUNK - 3}-{2 * CHUNK + 2}/{BIG}"
    assert got[4][2] == big and got[7][1]["content-length"] == str(BIG)
    assert _multipart(got[6][1], got[6][2]) == [(f"bytes 0-0/{BIG}", big[:1]),
                                                (f"bytes {BIG - 1}-{BIG - 1}/{BIG}", big[-1:])]
    assert await _quiet(reader) == b""  # nothing stray after the last answer
    await _send(writer, GET % b"/s.ts")
    assert (await _read_answer(reader))[::2] == (200, BODY)
    writer.close()


async def test_a_hot_request_split_at_every_byte_boundary(origin: OriginServer,
                                                          make_edge: Any,
                                                          client: aiohttp.ClientSession
                                                          ) -> None:
    """One keep-alive connection; the same plain GET split in two at each byte, then sent
    whole: every answer whole (memory and file entries), never a stray or missing byte."""
    edge, big = await _two_hot(origin, make_edge, client, 22)
    reader, writer = await _open(edge.node.port)
    for path, body in ((b"/s.ts", BODY), (b"/b.ts", big)):
        req = GET % path
        for i in range(1, len(req)):
            writer.write(req[:i])
            await writer.drain()
            await asyncio.sleep(0.003)
            writer.write(req[i:])
            await writer.drain()
            status, headers, got = await _read_answer(reader)
            assert (status, got == body) == (200, True), i
            assert headers["cache-status"].startswith("edgecdn; hit")
            await _send(writer, req)  # whole: straight from the read
            status, _, got = await _read_answer(reader)
            assert (status, got == body) == (200, True), i
    assert await _quiet(reader) == b""
    writer.close()


async def test_head_of_a_hot_entry_then_get_on_the_same_connection(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession) -> None:
    """HEAD of a prepared (hot) object: its headers and no body; the GET after it whole."""
    edge, big = await _two_hot(origin, make_edge, client, 23)
    reader, writer = await _open(edge.node.port)
    for path, body in ((b"/s.ts", BODY), (b"/b.ts", big)):
        for _ in range(2):
            await _send(writer, b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
            status, headers, _ = await _read_answer(reader, head_request=True)
            assert status == 200 and headers["content-length"] == str(len(body))
            assert await _quiet(reader, 0.2) == b""  # no body bytes after a HEAD's header
            await _send(writer, GET % path)
            assert (await _read_answer(reader))[::2] == (200, body)
    writer.close()


# ---- ranges ----------------------------------------------------------------------------------
def _range_cases(n: int) -> list[tuple[str, int, list[tuple[int, int]] | None]]:
    """(Range value, status, half-open ranges expected in the 206; None: whole body)."""
    return [
        ("bytes=0-0", 206, [(0, 1)]),
        (f"bytes={n - 1}-{n - 1}", 206, [(n - 1, n)]),
        (f"bytes={n - 1}-", 206, [(n - 1, n)]),
        ("bytes=-1", 206, [(n - 1, n)]),
        (f"bytes=-{n + 5000}", 206, [(0, n)]),
        (f"bytes=0-{n + 5000}", 206, [(0, n)]),
        (f"bytes={CHUNK - 1}-{CHUNK}", 206, [(CHUNK - 1, CHUNK + 1)]),
        (f"bytes={CHUNK - 5}-{3 * CHUNK + 5}", 206, [(CHUNK - 5, 3 * CHUNK + 6)]),
        (f"bytes={2 * CHUNK}-{2 * CHUNK}", 206, [(2 * CHUNK, 2 * CHUNK + 1)]),
        ("bytes=5-2", 200, None),  # invalid: ignored (RFC 9110 14.1.1)
        ("items=0-1", 200, None),  # unknown unit: ignored (RFC 9110 14.2)
        ("bytes=abc", 200, None),
        ("BYTES=1-2", 206, [(1, 3)]),  # the unit is case-insensitive
        ("bytes=1-2 , 4-5", 206, [(1, 3), (4, 6)]),  # OWS around list commas
        (f"bytes=0-9,5-{CHUNK + 9}", 206, [(0, CHUNK + 10)]),  # overlapping: coalesced
        (f"bytes={CHUNK - 2}-{CHUNK + 1},-3", 206, [(CHUNK - 2, CHUNK + 2), (n - 3, n)]),
        (f"bytes=0-0,{n}-", 206, [(0, 1)]),  # the unsatisfiable member is dropped
        (f"bytes={n}-", 416, None),
        (f"bytes={n}-{n + 10}", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=99999999999999999999999-", 416, None),
    ]


async def test_range_edge_cases_on_a_multi_chunk_object(origin: OriginServer, make_edge: Any,
                                                        client: aiohttp.ClientSession,
                                                        sender: str) -> None:
    """Each Range form on a stored four-chunk object, one keep-alive connection, both disk
    senders: the right status, Content-Range and bytes (multipart parts included)."""
    big = payload(BIG, 24)
    origin.put("/r.ts", big, headers=CC)
    edge = make_edge(origin.url, edge={"sendfile": sender == "sendfile"},
                     cache={"memory": "0"})
    await _warm(edge, client, "/r.ts", big)
    reader, writer = await _open(edge.node.port)
    for value, status, ranges in _range_cases(BIG):
        await _send(writer, b"GET /r.ts HTTP/1.1\r\nHost: x\r\nRange: %s\r\n\r\n"
                    % value.encode())
        st, h, body = await _read_answer(reader)
        assert st == status, value
        if status == 416:
            assert h["content-range"] == f"bytes */{BIG}", value
        elif ranges is None:
            assert body == big and "content-range" not in h, value
        elif len(ranges) == 1:
            (a, b), = ranges
            assert h["content-range"] == f"bytes {a}-{b - 1}/{BIG}", value
            assert body == big[a:b], value
        else:
            assert _multipart(h, body) == [(f"bytes {a}-{b - 1}/{BIG}", big[a:b])
                                           for a, b in ranges], value
    # a Range on HEAD is ignored (range handling is defined for GET only, RFC 9110 14.2)
    await _send(writer, b"HEAD /r.ts HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\n\r\n")
    st, h, _ = await _read_answer(reader, head_request=True)
    assert st == 200 and h["content-length"] == str(BIG)
    await _send(writer, GET % b"/r.ts")
    assert (await _read_answer(reader))[::2] == (200, big)
    writer.close()


async def test_if_range_with_etags_and_dates(origin: OriginServer, make_edge: Any,
                                             client: aiohttp.ClientSession) -> None:
    """If-Range (RFC 9110 13.1.5): a strong matching tag or the exact (strong) Last-Modified
    date -> 206; a weak tag, another tag or another date -> the whole 200."""
    big = payload(BIG, 25)
    origin.put("/ir.ts", big, headers=CC)  # its Date is now: LM is a strong validator
    edge = make_edge(origin.url)
    await _warm(edge, client, "/ir.ts", big)
    rng = f"bytes={CHUNK - 1}-{CHUNK + 1}"
    want = big[CHUNK - 1:CHUNK + 2]
    cases = [('"b1"', 206), ('W/"b1"', 200), ('"zz"', 200), (LM, 206),
             ("Tue, 01 Sep 2026 10:00:01 GMT", 200), ("not a date", 200), ('"b1", "zz"', 200)]
    reader, writer = await _open(edge.node.port)
    for value, status in cases:
        await _send(writer, b"GET /ir.ts HTTP/1.1\r\nHost: x\r\nRange: %s\r\nIf-Range: %s"
                    b"\r\n\r\n" % (rng.encode(), value.encode()))
        st, _, body = await _read_answer(reader)
        assert (st, body) == ((206, want) if status == 206 else (200, big)), value
    writer.close()


async def test_if_none_match_lists_weak_tags_and_star(origin: OriginServer, make_edge: Any,
                                                      client: aiohttp.ClientSession) -> None:
    """If-None-Match uses the weak comparison over a list; `*` matches any stored object;
    it wins over If-Modified-Since; a 304 carries no body and the connection goes on."""
    big = payload(BIG, 26)
    origin.put("/n.ts", big, headers=CC)
    edge = make_edge(origin.url)
    await _warm(edge, client, "/n.ts", big)
    later = "Wed, 02 Sep 2026 10:00:00 GMT"
    cases: list[tuple[str, int]] = [
        ('If-None-Match: "a", "b1"', 304), ('If-None-Match: "a","b1"', 304),
        ('If-None-Match: W/"b1"', 304), ("If-None-Match: *", 304), ('If-None-Match: "a"', 200),
        ('If-None-Match: "a"\r\nIf-None-Match: W/"b1"', 304),  # two lines: one list
        (f'If-None-Match: "a"\r\nIf-Modified-Since: {later}', 200),  # INM wins over IMS
        (f"If-Modified-Since: {later}", 304), (f"If-Modified-Since: {LM}", 304),
        ("If-Modified-Since: Mon, 31 Aug 2026 10:00:00 GMT", 200),
        ('If-Match: "zz"', 412), ('If-Match: "b1"', 200), ("If-Match: *", 200),
        ('If-Match: W/"b1"', 412),  # If-Match compares strongly
        ('If-None-Match: "b1"\r\nRange: bytes=0-0', 304),
    ]
    reader, writer = await _open(edge.node.port)
    for field, status in cases:
        for method in (b"GET", b"HEAD"):
            await _send(writer, b"%s /n.ts HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n"
                        % (method, field.encode()))
            st, h, body = await _read_answer(reader, head_request=method == b"HEAD")
            assert st == status, (method, field)
            if st == 304:
                assert h.get("etag") == '"b1"' and "content-range" not in h
            if st == 200 and method == b"GET":
                assert body == big
    assert await _quiet(reader) == b""  # no body bytes after a 304 or a HEAD
    await _send(writer, GET % b"/n.ts")
    assert (await _read_answer(reader))[::2] == (200, big)
    writer.close()


# ---- request bodies and framing --------------------------------------------------------------
async def test_bodies_on_get_and_post_keep_the_connection_in_step(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession) -> None:
    """A GET with a Content-Length or a chunked body (with trailers), a chunked POST, all
    pipelined with plain GETs: the bodies are consumed as bodies, never read as requests,
    and the POST's body reaches the origin whole."""
    origin.put("/s.ts", BODY, headers=HOT_CC)
    edge = make_edge(origin.url)
    await _warm_hot(edge, client, "/s.ts")
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    data = (b"GET /s.ts HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
            + smuggled
            + b"GET /s.ts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(smuggled) + smuggled + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
            + b"POST /s.ts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            + GET % b"/s.ts")
    for bytewise in (False, True):
        reader, writer = await _open(edge.node.port)
        await _send(writer, data, bytewise)
        got = [await _read_answer(reader) for _ in range(4)]
        assert [(s, b) for s, _, b in got] == [(200, BODY), (200, BODY),
                                               (200, b"POST ok 11\n"), (200, BODY)]
        assert await _quiet(reader) == b""
        writer.close()
    assert origin.count("/smuggled") == 0


SMUGGLE = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("head", [
    b"POST /s.ts HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /s.ts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nContent-Length: 37\r\nContent-Length: 37\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 37\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nContent-Length: +37\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nX\x00A: b\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4;x=\"\r\n\r\nabcd\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-4\r\n",
], ids=["cl-then-te", "te-then-cl", "two-cl-differ", "two-cl-same", "cl-list", "cl-plus",
        "te-identity", "te-chunked-identity", "te-xchunked", "te-space-colon", "obs-fold",
        "nul-value", "bare-cr", "nul-name", "bad-chunk-ext", "negative-chunk"])
async def test_ambiguous_framing_is_refused_and_nothing_is_smuggled(
        origin: OriginServer, make_edge: Any, head: bytes) -> None:
    """RFC 9112 6.1-6.3, 5.2, 2.2: a request whose framing is ambiguous or invalid is
    answered 400 with a reason and the connection closed; the bytes after it are never
    taken as a request (the origin never sees /smuggled)."""
    origin.put("/s.ts", BODY, headers=HOT_CC)
    edge = make_edge(origin.url)
    reader, writer = await _open(edge.node.port)
    await _send(writer, head + b"0\r\n\r\n" + SMUGGLE)
    status, h, body = await _read_answer(reader)
    assert status == 400 and body.startswith(b"bad request") and h["connection"] == "close"
    assert await _closed(reader)
    writer.close()
    assert origin.count("/smuggled") == 0


async def test_expect_100_continue_gets_an_interim_or_final_answer_before_the_body(
        origin: OriginServer, make_edge: Any) -> None:
    """RFC 9110 10.1.1 / 15.2.1 (and nginx): a request with Expect: 100-continue and a
    body gets 100 Continue (or its final answer) without first waiting for the body; the
    client then sends the body and gets the final answer."""
    edge = make_edge(origin.url)
    reader, writer = await _open(edge.node.port)
    await _send(writer, b"POST /up.ts HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                b"Content-Length: 5\r\n\r\n")
    first = await _quiet(reader, 1.5)
    assert first.startswith(b"HTTP/1.1 100 "), first  # curl waits a whole second otherwise
    await _send(writer, b"hello")
    status, _, body = await _read_answer(reader)
    assert (status, body) == (200, b"POST ok 5\n")
    writer.close()


async def test_expect_100_continue_over_the_body_limit_gets_413_at_once(
        origin: OriginServer, make_edge: Any) -> None:
    """A body the edge will refuse is refused from the head alone (no 100, no wait)."""
    edge = make_edge(origin.url, http={"max_body_bytes": 1000})
    (status, h, body), closed = await _one(
        edge.node.port, b"POST /up.ts HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                        b"Content-Length: 5000\r\n\r\n")
    assert status == 413 and b"too large" in body and closed


# ---- the request target and Host ---------------------------------------------------------
@pytest.mark.parametrize("target,status,reason", [
    (b"/%2E%2E/etc/passwd", 400, b"traversal"),
    (b"/a/%2e%2e%2fb", 400, b""),
    (b"/a/..%2fb", 400, b""),
    (b"/a/%2e/b", 400, b"traversal"),
    (b"/a/.%2e/b", 400, b"traversal"),
    (b"/a%5c..%5cb", 400, b"backslash"),
    (b"/a%0d%0aX-Injected:%201", 400, b"control character"),
    (b"/a/./b", 400, b"traversal"),
    (b"/a/..", 400, b"traversal"),
])
async def test_traversal_and_control_encodings_are_refused(origin: OriginServer,
                                                           make_edge: Any, target: bytes,
                                                           status: int, reason: bytes) -> None:
    """Every spelling of a dot segment, an encoded slash around one, a backslash or CR/LF:
    400 with the reason; the origin never asked."""
    edge = make_edge(origin.url)
    (st, _, body), _ = await _one(edge.node.port, GET % target)
    assert st == status and reason in body, body
    assert not origin.requests


async def test_double_encoded_dots_are_decoded_once(origin: OriginServer, make_edge: Any,
                                                    client: aiohttp.ClientSession) -> None:
    """/%252e%252e/x is the path segment '%2e%2e' (decoded once): the origin receives it
    encoded again, never a '..' it would decode itself."""
    edge = make_edge(origin.url)
    (st, _, _), _ = await _one(edge.node.port, GET % b"/%252e%252e/etc/passwd")
    assert st == 404
    assert [p for _, p, _ in origin.requests] == ["/%2e%2e/etc/passwd"]


async def test_a_fragment_in_the_target_never_names_another_resource(
        origin: OriginServer, make_edge: Any) -> None:
    """A request-target has no fragment (RFC 9112 3.2; RFC 3986 3.5): `/s.ts#frag` is
    either refused (400) or served as /s.ts (nginx cuts the URI at '#'), as the edge already
    does for `/s.ts?x#frag`; never fetched from the origin as the object `/s.ts#frag`."""
    origin.put("/s.ts", BODY, headers=HOT_CC)
    edge = make_edge(origin.url)
    for target in (b"/s.ts?x=1#frag", b"/s.ts#frag"):
        (st, _, body), _ = await _one(edge.node.port, GET % target)
        assert st == 400 or (st, body) == (200, BODY), (target, st, body[:60])
    assert "/s.ts#frag" not in [p for _, p, _ in origin.requests]


async def test_long_targets_at_the_limit(origin: OriginServer, make_edge: Any) -> None:
    """A target of exactly max_url_bytes is served; one byte more is 414 with a reason."""
    edge = make_edge(origin.url, http={"max_url_bytes": 512})
    ok = b"/" + b"a" * 511
    origin.put(ok.decode(), b"long", headers={"Cache-Control": "max-age=60"})
    (st, _, body), closed = await _one(edge.node.port, GET % ok)
    assert (st, body, closed) == (200, b"long", False)
    (st, _, body), closed = await _one(edge.node.port, GET % (ok + b"b"))
    assert st == 414 and b"too long" in body and closed


@pytest.mark.parametrize("head", [
    b"GET /s.ts HTTP/1.1\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nUser-Agent: t\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: a b\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: a/b\r\n\r\n",
], ids=["no-host", "no-host-other-field", "two-hosts", "host-space", "host-slash"])
async def test_http11_request_without_one_valid_host_is_400(origin: OriginServer,
                                                            make_edge: Any,
                                                            client: aiohttp.ClientSession,
                                                            head: bytes) -> None:
    """RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request lacking Host, with more
    than one Host line, or with an invalid Host value (nginx: 400 "client sent HTTP/1.1
    request without Host header" / "client sent duplicate host header"); also when the
    object is a prepared hot answer."""
    origin.put("/s.ts", BODY, headers=HOT_CC)
    edge = make_edge(origin.url)
    await _warm_hot(edge, client, "/s.ts")
    (st, _, body), _ = await _one(edge.node.port, head)
    assert st == 400, (head, st, body[:80])


async def test_absolute_form_target_is_accepted(origin: OriginServer, make_edge: Any,
                                                client: aiohttp.ClientSession) -> None:
    """RFC 9112 3.2.2: "a server MUST accept the absolute-form in requests" (nginx serves
    `GET http://host/path` as /path); the Host field is then ignored for the target."""
    origin.put("/s.ts", BODY, headers=HOT_CC)
    edge = make_edge(origin.url)
    (st, _, body), _ = await _one(edge.node.port,
                                  b"GET http://x/s.ts HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (st, body) == (200, BODY)


@pytest.mark.parametrize("version,status", [(b"HTTP/2.0", (400, 505)), (b"HTTP/3.0", (400, 505)),
                                            (b"HTTP/1.2", (200,)), (b"HTTP/0.9", (505,)),
                                            (b"HTTP/9.9", (505,))])
async def test_request_line_versions(origin: OriginServer, make_edge: Any, version: bytes,
                                     status: tuple[int, ...]) -> None:
    """RFC 9110 2.5 / 15.6.6 (nginx alike): another major version is refused (505, or 400),
    never answered as if it were HTTP/1.1; a higher minor version of 1 SHOULD be served as
    HTTP/1.1 (nginx serves HTTP/1.2)."""
    origin.put("/s.ts", BODY, headers=HOT_CC)
    edge = make_edge(origin.url)
    (st, _, body), _ = await _one(edge.node.port,
                                  b"GET /s.ts %s\r\nHost: x\r\n\r\n" % version)
    assert st in status, (version, st, body[:80])


# ---- connection management -------------------------------------------------------------------
async def test_http10_keep_alive_and_close(origin: OriginServer, make_edge: Any,
                                           client: aiohttp.ClientSession) -> None:
    """HTTP/1.0 with Connection: keep-alive stays open (and says so); without it, the answer
    says close and the edge closes. A body with no length (chunked origin) is never sent
    chunked to HTTP/1.0: close-delimited, whole."""
    origin.put("/s.ts", BODY, headers=HOT_CC)
    stream = payload(100_000, 27)
    origin.put("/dyn.ts", stream, headers={"Cache-Control": "max-age=60"}, framing="chunked")
    edge = make_edge(origin.url)
    await _warm_hot(edge, client, "/s.ts")
    reader, writer = await _open(edge.node.port)
    for _ in range(2):
        await _send(writer, b"GET /s.ts HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        st, h, body = await _read_answer(reader)
        assert (st, body, h.get("connection")) == (200, BODY, "keep-alive")
    await _send(writer, b"GET /s.ts HTTP/1.0\r\n\r\nGET /s.ts HTTP/1.0\r\n\r\n")
    st, h, body = await _read_answer(reader)
    assert (st, body, h.get("connection")) == (200, BODY, "close")
    assert await _closed(reader)
    writer.close()
    for _ in range(2):  # the miss (streamed as it arrives), then again
        (st, h, body), closed = await _one(
            edge.node.port, b"GET /dyn.ts HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert st == 200 and body == stream and "transfer-encoding" not in h
        assert h.get("connection") == "close" or "content-length" in h
        assert closed or "content-length" in h


@pytest.mark.parametrize("req", [
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /b.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /b.ts HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n",
    b"HEAD /b.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /b.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\nIf-None-Match: *\r\n\r\n",
    b"GET /b.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\nRange: bytes=999999-\r\n\r\n",
    b"GET /none.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /b.ts HTTP/1.1\r\nHost: x\r\nConnection: CLOSE\r\nRange: bytes=1-2,4-5\r\n\r\n",
    b"GET /m.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /m.ts HTTP/1.0\r\n\r\n",
], ids=["hot-small", "file", "ka-and-close", "head", "304", "416", "404", "multipart", "miss",
        "http10-miss"])
async def test_connection_close_is_honoured_after_the_answer(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession,
        req: bytes) -> None:
    """RFC 9112 9.6: after a request with Connection: close (or a plain HTTP/1.0 one) the
    edge sends the whole answer marked close, then closes; a request pipelined after it gets
    nothing. (An answer given from a task, a miss or a 404, was dropped whole: the parser's
    "data after close" error closed the connection under it.)"""
    big = payload(BIG, 28)
    origin.put("/m.ts", big, headers=CC)
    origin.put("/s.ts", BODY, headers=HOT_CC)
    origin.put("/b.ts", big, headers={**HOT_CC, "ETag": '"b1"'})
    edge = make_edge(origin.url)
    await _warm_hot(edge, client, "/s.ts")
    await _warm_hot_file(edge, client, "/b.ts", big)
    reader, writer = await _open(edge.node.port)
    await _send(writer, req + GET % b"/s.ts")
    st, h, body = await _read_answer(reader, head_request=req.startswith(b"HEAD"))
    assert h.get("connection") == "close", (st, h)
    assert st in (200, 206, 304, 404, 416), st
    if st == 200 and not req.startswith(b"HEAD"):
        assert body in (BODY, big)
    assert await _closed(reader)
    writer.close()


@pytest.mark.parametrize("req", [
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    b"GET /s.ts HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    + GET % b"/s.ts",
    b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
], ids=["upgrade-h2c", "upgrade-then-get", "connect"])
async def test_upgrade_or_connect_answer_says_close_when_the_edge_closes(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession,
        req: bytes) -> None:
    """The edge does not switch protocols and closes after such a request (the parser
    stops there): its answer must then say `connection: close` (RFC 9112 9.6), so the
    client does not send its next request into a closing connection."""
    origin.put("/s.ts", BODY, headers=HOT_CC)
    edge = make_edge(origin.url)
    await _warm_hot(edge, client, "/s.ts")
    (st, h, body), closed = await _one(edge.node.port, req)
    assert st < 500 and closed, (st, body[:80])
    assert h.get("connection") == "close", (st, h)


async def test_half_close_after_the_request_still_gets_the_whole_answer(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession) -> None:
    """A client that shuts its sending side right after its requests gets every answer
    whole (hit, hot hit and a miss in a task), then the close."""
    big = payload(BIG, 29)
    origin.put("/s.ts", BODY, headers=HOT_CC)
    origin.put("/m.ts", big, headers=CC)
    edge = make_edge(origin.url)
    await _warm_hot(edge, client, "/s.ts")
    for reqs in ([GET % b"/s.ts"], [GET % b"/m.ts"], [GET % b"/s.ts", GET % b"/m.ts"]):
        reader, writer = await _open(edge.node.port)
        await _send(writer, b"".join(reqs))
        writer.write_eof()
        for r in reqs:
            st, _, body = await _read_answer(reader)
            assert (st, body) == (200, BODY if b"/s.ts" in r else big)
        assert await _closed(reader)
        writer.close()


async def test_a_client_gone_mid_answer_leaves_the_next_connection_whole(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession) -> None:
    """A client that resets mid-body of a miss, then of a hit: the next connections get the
    whole object, the stored copy is right, and the edge keeps no dead connection."""
    body = payload(40 * CHUNK, 30)
    origin.put("/g.ts", body, headers=CC)
    edge = make_edge(origin.url)
    for _ in range(2):  # the first time a miss, then a hit
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", edge.node.port))
        sock.sendall(GET % b"/g.ts")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        await asyncio.sleep(0.1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
        sock.close()  # RST
        edge.settle()
        r = await fetch(client, edge.url + "/g.ts")
        assert r.status == 200 and r.body == body
        r = await fetch(client, edge.url + "/g.ts", headers={"Range": f"bytes={CHUNK}-"})
        assert r.status == 206 and r.body == body[CHUNK:]
    for _ in range(100):
        if edge.call(lambda: all(not c.busy for c in edge.node.app.conns)):
            break
        await asyncio.sleep(0.02)
    assert edge.call(lambda: all(not c.busy for c in edge.node.app.conns))


async def test_leading_empty_lines_before_a_request_are_ignored(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession) -> None:
    """RFC 9112 2.2: a server SHOULD ignore at least one empty line before a request-line
    (sent by some clients after a POST body); the connection stays in step."""
    origin.put("/s.ts", BODY, headers=HOT_CC)
    edge = make_edge(origin.url)
    await _warm_hot(edge, client, "/s.ts")
    reader, writer = await _open(edge.node.port)
    for data in (b"\r\n" + GET % b"/s.ts", GET % b"/s.ts" + b"\r\n", GET % b"/s.ts"):
        await _send(writer, data)
        assert (await _read_answer(reader))[::2] == (200, BODY)
    assert await _quiet(reader) == b""
    writer.close()


async def test_a_valid_request_pipelined_before_garbage_is_still_answered(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession) -> None:
    """Requests that parsed before an unparseable one are answered in full and in order,
    then the 400 with its reason, then the close (nginx: the same). The edge used to drop
    the answer in progress (a miss, answered from a task) and send no 400 at all."""
    big = payload(BIG, 31)
    origin.put("/m.ts", big, headers=CC)
    origin.put("/s.ts", BODY, headers=HOT_CC)
    edge = make_edge(origin.url)
    await _warm_hot(edge, client, "/s.ts")
    for first in (b"/s.ts", b"/m.ts"):  # a hit answered at once, then a miss
        reader, writer = await _open(edge.node.port)
        await _send(writer, GET % first + GET % b"/s.ts" + b"GARBAGE\r\n\r\n")
        for want in (BODY if first == b"/s.ts" else big, BODY):
            st, _, body = await _read_answer(reader)
            assert (st, body == want) == (200, True), first
        st, h, body = await _read_answer(reader)
        assert st == 400 and body.startswith(b"bad request") and h["connection"] == "close"
        assert await _closed(reader)
        writer.close()


async def test_a_client_that_never_reads_cannot_fill_the_edge_memory(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession) -> None:
    """A client that pipelines many GETs and reads nothing: the edge stops taking requests
    once its send buffer for the connection is full (as nginx does: one request at a time,
    the next read only after the answer went out), instead of buffering every answer in
    memory (here ~6 MB for one connection)."""
    body = payload(32 * 1024, 32)
    origin.put("/p.ts", body, headers=HOT_CC)
    edge = make_edge(origin.url)
    await _warm(edge, client, "/p.ts", body)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", edge.node.port))
    sock.setblocking(False)
    for _ in range(20):
        try:
            sock.send((GET % b"/p.ts") * 10)
        except BlockingIOError:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.3)
    buffered = edge.call(lambda: max(c.buffered() for c in edge.node.app.conns))
    sock.close()
    assert buffered < 2 * 1024 * 1024, buffered


async def test_http10_keep_alive_holds_for_every_kind_of_answer(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession) -> None:
    """An HTTP/1.0 client asking for keep-alive (ApacheBench -k) keeps its connection only
    when the answer says `connection: keep-alive` (RFC 9112 C.2.2): every answer the edge
    keeps the connection open after (404 relayed, 412, 416, 400 bad path, 304, 200) must say
    so, and the connection then answers the next request."""
    big = payload(BIG, 33)
    origin.put("/b.ts", big, headers=CC)
    edge = make_edge(origin.url)
    await _warm(edge, client, "/b.ts", big)
    reader, writer = await _open(edge.node.port)
    ka = b"Connection: keep-alive\r\n"
    for req, status in ((b"GET /none.ts HTTP/1.0\r\n" + ka, 404),
                        (b"GET /b.ts HTTP/1.0\r\nIf-Match: \"zz\"\r\n" + ka, 412),
                        (b"GET /b.ts HTTP/1.0\r\nRange: bytes=999999-\r\n" + ka, 416),
                        (b"GET /a/../b.ts HTTP/1.0\r\n" + ka, 400),
                        (b"GET /b.ts HTTP/1.0\r\nIf-None-Match: \"b1\"\r\n" + ka, 304),
                        (b"GET /b.ts HTTP/1.0\r\n" + ka, 200)):
        await _send(writer, req + b"\r\n")
        st, h, _ = await _read_answer(reader)
        assert st == status
        assert h.get("connection") == "keep-alive", (status, h)
    writer.close()


async def test_more_pipelined_requests_than_the_queue_holds(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession) -> None:
    """80 pipelined requests in one write (the queue pauses reading past 32): misses, hits,
    HEADs and ranges, every answer in order and whole, then the connection still works."""
    bodies = {f"/q{i}.ts": payload(1000 + 97 * i, 40 + i) for i in range(8)}
    for path, body in bodies.items():
        origin.put(path, body, headers=CC)
    origin.delay = 0.02
    edge = make_edge(origin.url)
    reqs: list[tuple[bytes, str, str]] = []
    for i in range(80):
        path = f"/q{i % 8}.ts"
        kind = ("GET", "HEAD", "RANGE", "GET")[i % 4]
        if kind == "HEAD":
            raw = b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode()
        elif kind == "RANGE":
            raw = b"GET %s HTTP/1.1\r\nHost: x\r\nRange: bytes=7-500\r\n\r\n" % path.encode()
        else:
            raw = GET % path.encode()
        reqs.append((raw, path, kind))
    reader, writer = await _open(edge.node.port)
    await _send(writer, b"".join(r for r, _, _ in reqs))
    for i, (_, path, kind) in enumerate(reqs):
        st, h, body = await _read_answer(reader, head_request=kind == "HEAD", timeout=20)
        want = bodies[path]
        if kind == "RANGE":
            assert (st, body) == (206, want[7:501]), i
        elif kind == "HEAD":
            assert (st, h["content-length"]) == (200, str(len(want))), i
        else:
            assert (st, body) == (200, want), i
    assert await _quiet(reader) == b""
    await _send(writer, GET % b"/q0.ts")
    assert (await _read_answer(reader))[::2] == (200, bodies["/q0.ts"])
    writer.close()


async def test_head_of_an_uncached_object_then_get_on_the_same_connection(
        origin: OriginServer, make_edge: Any) -> None:
    """HEAD first (a miss), then GET pipelined behind it: the HEAD has the length and no
    body bytes, the GET the whole object; then both again from the store."""
    big = payload(BIG, 34)
    origin.put("/hm.ts", big, headers=CC)
    dyn = payload(70_000, 35)
    origin.put("/hd.ts", dyn, headers={"Cache-Control": "max-age=60"}, framing="chunked")
    edge = make_edge(origin.url)
    reader, writer = await _open(edge.node.port)
    for path, body in ((b"/hm.ts", big), (b"/hd.ts", dyn)):
        for _ in range(2):
            await _send(writer, b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n" % path + GET % path)
            st, h, _ = await _read_answer(reader, head_request=True)
            assert st == 200 and h.get("content-length", str(len(body))) == str(len(body))
            assert (await _read_answer(reader))[::2] == (200, body), path
            edge.settle()
    assert await _quiet(reader) == b""
    writer.close()


async def test_a_trailer_field_that_never_ends_is_refused_like_a_head_field(
        origin: OriginServer, make_edge: Any) -> None:
    """A chunked request's trailer section is header fields too (RFC 9112 7.1.2): one that
    grows without end must be refused (431/400, then close) as an endless head field is,
    not buffered without limit by the parser (here 1 MiB with a 2 KiB field limit)."""
    origin.put("/s.ts", BODY, headers=HOT_CC)
    edge = make_edge(origin.url, http={"max_header_bytes": 2048, "max_url_bytes": 512})
    reader, writer = await _open(edge.node.port)
    await _send(writer, b"GET /s.ts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"0\r\nX-Endless: ")
    out = b""
    for _ in range(128):
        try:
            await _send(writer, b"a" * 8192)
        except ConnectionError:
            break
        out += await _quiet(reader, 0.005)
        if out:
            break
    writer.close()
    assert out.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 ")), out[:120]
    (st, _, body), _ = await _one(edge.node.port, GET % b"/s.ts")
    assert (st, body) == (200, BODY)
