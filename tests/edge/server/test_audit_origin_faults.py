"""Audit: a misbehaving HTTP origin, through real sockets.

Faults the ``origin`` fixture cannot produce come from ``RawOrigin``: a TCP server on its own
thread that answers each request with exactly the bytes a test's script chooses (or stalls,
closes, resets). After every fault a follow-up request checks that what the edge now serves
is byte-identical to the origin's current object.
"""

from __future__ import annotations

import asyncio
import http
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.edge.server.conftest import CHUNK, OriginServer, Resp, fetch, payload, run_then_close

LM1 = "Tue, 01 Sep 2026 10:00:00 GMT"
LM2 = "Wed, 02 Sep 2026 10:00:00 GMT"

# ---- a raw origin ------------------------------------------------------------------------
# A step of a scripted answer: bytes are sent, a float sleeps, "close" sends a FIN, "reset"
# aborts with an RST, "hang" waits (without answering) until the origin stops.
Step = bytes | float | str


@dataclass
class RawReq:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names


Script = Callable[[RawReq], list[Step]]


class RawOrigin:
    """A TCP origin on its own thread and loop; ``script(req)`` gives each answer's steps."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[RawReq] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._stop: asyncio.Event | None = None
        self._server: asyncio.AbstractServer | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self._stop = asyncio.Event()
            self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]

        self.loop.run_until_complete(start())
        self._ready.set()
        run_then_close(self.loop)

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        assert self._stop is not None
        self._writers.add(w)
        try:
            while True:
                try:
                    head = await r.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                line, *fields = head.decode("latin-1").split("\r\n")
                method, target, _ = line.split(" ", 2)
                hdrs = {}
                for f in fields:
                    if ":" in f:
                        k, _, v = f.partition(":")
                        hdrs[k.strip().lower()] = v.strip()
                req = RawReq(method, target.split("?")[0], hdrs)
                self.requests.append(req)
                for step in self.script(req):
                    if isinstance(step, bytes):
                        w.write(step)
                        await w.drain()
                    elif isinstance(step, float):
                        await asyncio.sleep(step)
                    elif step == "close":
                        w.close()
                        return
                    elif step == "reset":
                        sock = w.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                        w.transport.abort()
                        return
                    elif step == "hang":
                        await self._stop.wait()
                        w.transport.abort()
                        return
        except (ConnectionError, OSError):
            return
        finally:
            self._writers.discard(w)

    def stop(self) -> None:
        async def _stop() -> None:
            assert self._stop is not None and self._server is not None
            self._stop.set()
            self._server.close()
            for w in list(self._writers):  # readers blocked on a request end cleanly
                w.transport.abort()
            await asyncio.sleep(0.05)

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def raw_origin() -> Iterator[Callable[[Script], RawOrigin]]:
    """Make RawOrigins (stopped at teardown)."""
    made: list[RawOrigin] = []

    def make(script: Script) -> RawOrigin:
        o = RawOrigin(script)
        made.append(o)
        return o

    yield make
    for o in made:
        o.stop()


def answer(status: int, headers: dict[str, str], body: bytes = b"",
           length: int | None = -1) -> bytes:
    """A whole HTTP/1.1 response; ``length`` -1: Content-Length of body, None: none sent."""
    reason = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ \
        else "Whatever"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if length is not None:
        lines.append(f"Content-Length: {len(body) if length == -1 else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def ranged(req: RawReq, body: bytes, headers: dict[str, str]) -> bytes:
    """What an honest origin answers: 206 for a satisfiable ``bytes=a-b``, else 200."""
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", req.headers.get("range", ""))
    if not m:
        return answer(200, headers, body)
    a = int(m.group(1))
    b = min(int(m.group(2)) + 1 if m.group(2) else len(body), len(body))
    if a >= len(body):
        return answer(416, {"Content-Range": f"bytes */{len(body)}"})
    return answer(206, {**headers, "Content-Range": f"bytes {a}-{b - 1}/{len(body)}"},
                  body[a:b])


def chunk_of(req: RawReq) -> int | None:
    """The chunk index a ranged request asks for (None: no Range)."""
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", req.headers.get("range", ""))
    return int(m.group(1)) // CHUNK if m else None


Outcome = Resp | Exception


async def attempt(session: aiohttp.ClientSession, url: str,
                  headers: dict[str, str] | None = None, method: str = "GET") -> Outcome:
    """The response, or the client-side error a cut body raised (never a hang: 15 s cap)."""
    try:
        return await asyncio.wait_for(fetch(session, url, method, headers), 15)
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError) as e:
        return e


def judge(o: Outcome, *bodies: bytes) -> str | None:
    """What is wrong with an answer to a request that met a fault (None: nothing). A body
    the client accepted as complete must be one of ``bodies`` exactly; an error answer must
    be a 502/504 with a short reason; a cut body (the client saw an error) is fine."""
    if isinstance(o, Exception):
        return None
    if o.status in (502, 504):
        return None if 0 < len(o.body) < 300 else f"{o.status} with body {o.body[:300]!r}"
    if o.status != 200:
        return f"answered {o.status}: {o.body[:200]!r}"
    if any(o.body == b for b in bodies):
        return None
    return (f"served {len(o.body)} bytes as whole that match no version of the object "
            f"(first wrong byte per version: {[_first_diff(o.body, b) for b in bodies]})")


def whole_or_cut(o: Outcome, *bodies: bytes) -> None:
    """Assert ``judge`` finds nothing wrong."""
    bad = judge(o, *bodies)
    assert bad is None, bad


def _first_diff(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


async def settled(edge: Any) -> None:
    """Wait (off the test loop) until the edge's fills and commits are done."""
    await asyncio.to_thread(edge.settle)


async def later_problems(session: aiohttp.ClientSession, url: str, body: bytes) -> list[str]:
    """After a fault: two plain GETs must both serve exactly the origin's current ``body``."""
    out = []
    for i in range(2):
        r = await asyncio.wait_for(fetch(session, url), 15)
        if r.status != 200 or r.body != body:
            out.append(f"follow-up {i} ({r.cache}): status {r.status}, {len(r.body)} bytes, "
                       f"first wrong byte at {_first_diff(r.body, body)}")
    return out


async def follow_up(session: aiohttp.ClientSession, url: str, body: bytes) -> None:
    """Assert ``later_problems`` finds nothing."""
    bad = await later_problems(session, url, body)
    assert not bad, bad


async def fault_then_follow_up(session: aiohttp.ClientSession, edge: Any, path: str,
                               now: bytes, *bodies: bytes) -> None:
    """One request meets the fault (its answer judged against ``bodies``), then the edge
    settles and must serve ``now`` (the origin's current object); every problem is listed."""
    bad = [judge(await attempt(session, edge.url + path), *bodies)]
    await settled(edge)
    bad += await later_problems(session, edge.url + path, now)
    problems = [b for b in bad if b]
    assert not problems, problems


class Versions:
    """An object whose version the test switches (by request count or by hand)."""

    def __init__(self, *versions: tuple[bytes, dict[str, str]]) -> None:
        self.versions = list(versions)
        self.cur = 0

    @property
    def body(self) -> bytes:
        return self.versions[self.cur][0]

    def answer(self, req: RawReq) -> list[Step]:
        body, headers = self.versions[self.cur]
        return [ranged(req, body, headers)]


# ---- one object, two versions, between the fetches of its chunks -------------------------
def _flip_after_first(v: Versions) -> Script:
    """Chunk 0 (the first request) from version 0, everything after from version 1."""
    def script(req: RawReq) -> list[Step]:
        out = v.answer(req)
        v.cur = 1
        return out

    return script


@pytest.mark.parametrize("validators", [
    pytest.param(({"ETag": '"v1"'}, {"ETag": '"v2"'}), id="etag"),
    pytest.param(({"ETag": 'W/"v1"'}, {"ETag": 'W/"v2"'}), id="weak-etag"),
    pytest.param(({"ETag": '"v1"', "Last-Modified": LM1},
                  {"ETag": '"v2"', "Last-Modified": LM2}), id="etag+lm"),
    pytest.param(({"Last-Modified": LM1}, {"Last-Modified": LM2}), id="last-modified-only"),
])
async def test_object_replaced_between_chunk_fetches_is_never_stitched(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession, validators: tuple[dict[str, str], dict[str, str]]
        ) -> None:
    """Same length, new validator after chunk 0: no answer (or stored copy) mixes versions."""
    cc = {"Cache-Control": "max-age=300"}
    v1, v2 = payload(4 * CHUNK, 1), payload(4 * CHUNK, 2)
    v = Versions((v1, {**cc, **validators[0]}), (v2, {**cc, **validators[1]}))
    o = raw_origin(_flip_after_first(v))
    edge = make_edge(o.url)
    await fault_then_follow_up(client, edge, "/obj", v2, v1, v2)


async def test_object_replaced_between_chunk_fetches_without_any_validator(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """No ETag/Last-Modified at all, same length: chunks of two bodies must not be joined
    (fetching such an object in one request is the only way to know it is one version)."""
    cc = {"Cache-Control": "max-age=300"}
    v1, v2 = payload(4 * CHUNK, 1), payload(4 * CHUNK, 2)
    o = raw_origin(_flip_after_first(Versions((v1, cc), (v2, cc))))
    edge = make_edge(o.url)
    await fault_then_follow_up(client, edge, "/obj", v2, v1, v2)


async def test_object_replaced_by_a_longer_one_with_the_same_etag(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """The origin keeps the ETag but the total in Content-Range changes after chunk 0."""
    h = {"Cache-Control": "max-age=300", "ETag": '"same"'}
    v1, v2 = payload(4 * CHUNK, 1), payload(5 * CHUNK + 7, 2)
    o = raw_origin(_flip_after_first(Versions((v1, h), (v2, h))))
    edge = make_edge(o.url)
    await fault_then_follow_up(client, edge, "/obj", v2, v1, v2)


async def test_later_chunk_answered_with_a_full_200_of_a_new_version(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """Chunk 0 as a 206 of v1; the origin then ignores Range and sends v2 whole (same
    length, Last-Modified changed): the 200 must not fill v1's missing chunks."""
    v1, v2 = payload(3 * CHUNK, 1), payload(3 * CHUNK, 2)
    h1 = {"Cache-Control": "max-age=300", "Last-Modified": LM1}
    h2 = {"Cache-Control": "max-age=300", "Last-Modified": LM2}
    state = {"n": 0}

    def script(req: RawReq) -> list[Step]:
        state["n"] += 1
        if state["n"] == 1:
            return [ranged(req, v1, h1)]
        return [answer(200, h2, v2)]

    o = raw_origin(script)
    edge = make_edge(o.url)
    await fault_then_follow_up(client, edge, "/obj", v2, v1, v2)


# ---- range answers that do not match the question ----------------------------------------
@pytest.mark.parametrize("size,first,last", [
    pytest.param(3 * CHUNK + 11, 0, CHUNK, id="another-range"),  # chunk 0's, truthfully labelled
    pytest.param(3 * CHUNK, CHUNK, CHUNK + 1000, id="shorter-range"),  # chunk 1's first 1000
])
async def test_chunk_answered_with_a_range_other_than_asked(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession, size: int, first: int, last: int) -> None:
    """Asked for chunk 1, the origin sends (once) a valid 206 of other bytes: they never fill
    chunk 1."""
    body = payload(size)
    h = {"Cache-Control": "max-age=300", "ETag": '"r"'}
    lied = {"done": False}

    def script(req: RawReq) -> list[Step]:
        if chunk_of(req) == 1 and not lied["done"]:
            lied["done"] = True
            return [answer(206, {**h, "Content-Range": f"bytes {first}-{last - 1}/{len(body)}"},
                           body[first:last])]
        return [ranged(req, body, h)]

    o = raw_origin(script)
    edge = make_edge(o.url)
    await fault_then_follow_up(client, edge, "/obj", body, body)


async def test_first_answer_206_whose_length_disagrees_with_its_content_range(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """206 "bytes 0-99/100" with only 50 bytes (Content-Length 50) for an uncacheable URL:
    relayed, it must not become a whole-looking 200 of 50 bytes."""
    body = payload(100)
    h = {"Cache-Control": "private"}
    state = {"n": 0}

    def script(req: RawReq) -> list[Step]:
        state["n"] += 1
        if state["n"] == 1:
            return [answer(206, {**h, "Content-Range": "bytes 0-99/100"}, body[:50])]
        return [ranged(req, body, h)]

    o = raw_origin(script)
    edge = make_edge(o.url)
    r = await attempt(client, edge.url + "/p")
    whole_or_cut(r, body)
    r = await asyncio.wait_for(fetch(client, edge.url + "/p"), 15)
    assert r.status == 200 and r.body == body


# ---- bodies cut short, with several clients on the one fetch -----------------------------
def _cut_chunk1(body: bytes, headers: dict[str, str], how: str, faults: list[int]) -> Script:
    """Chunk 1's first answer: its headers (a full Content-Length) and 30000 bytes, a pause
    (so every client is reading along), then ``how`` ("close": FIN, "reset": RST)."""
    def script(req: RawReq) -> list[Step]:
        if chunk_of(req) == 1 and not faults:
            faults.append(1)
            a, b = CHUNK, min(2 * CHUNK, len(body))
            head = answer(206, {**headers, "Content-Range": f"bytes {a}-{b - 1}/{len(body)}"},
                          body[a:b])
            cut = len(head) - (b - a) + 30000
            return [head[:cut], 0.5, how]
        return [ranged(req, body, headers)]

    return script


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_chunk_cut_short_with_five_clients_waiting(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession, how: str) -> None:
    """206 with fewer bytes than its Content-Length, then FIN or RST, while 5 clients read
    chunk 1 along: each gets an error or the whole body; the next request refetches."""
    body = payload(3 * CHUNK + 5)
    h = {"Cache-Control": "max-age=300", "ETag": '"c"'}
    faults: list[int] = []
    o = raw_origin(_cut_chunk1(body, h, how, faults))
    edge = make_edge(o.url)
    outs = await asyncio.gather(*(attempt(client, edge.url + "/cut") for _ in range(5)))
    assert faults, "the fault never happened"
    bad = [judge(x, body) for x in outs]
    assert sum(isinstance(x, Exception) for x in outs) >= 1
    assert o.count("/cut") <= 1 + 3 + 1  # collapsed: head, chunks 1-3 (+1 read-ahead race)
    await settled(edge)
    bad += await later_problems(client, edge.url + "/cut", body)
    assert not [b for b in bad if b], bad


async def test_full_200_with_content_length_larger_than_the_body(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """A range-ignoring origin's 200 claims 3 chunks + 5 and closes after 2 chunks + 100."""
    body = payload(3 * CHUNK + 5)
    h = {"Cache-Control": "max-age=300", "ETag": '"l"'}
    state = {"n": 0}

    def script(req: RawReq) -> list[Step]:
        state["n"] += 1
        if state["n"] == 1:
            return [answer(200, h, body[:2 * CHUNK + 100], length=len(body)), "close"]
        return [ranged(req, body, h)]

    o = raw_origin(script)
    edge = make_edge(o.url)
    await fault_then_follow_up(client, edge, "/l", body, body)


async def test_head_206_cut_short_for_a_range_request(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """The first (head) 206 stops after 1000 of its bytes with an RST; a client asked a
    range inside it: it must be cut, never a short 206 that looks complete."""
    body = payload(2 * CHUNK)
    h = {"Cache-Control": "max-age=300", "ETag": '"h"'}
    state = {"n": 0}

    def script(req: RawReq) -> list[Step]:
        state["n"] += 1
        if state["n"] == 1:
            full = ranged(req, body, h)
            return [full[:len(full) - CHUNK + 1000], 0.2, "reset"]
        return [ranged(req, body, h)]

    o = raw_origin(script)
    edge = make_edge(o.url)
    r = await attempt(client, edge.url + "/h", {"Range": "bytes=500-4999"})
    if not isinstance(r, Exception) and r.status == 206:
        assert r.body == body[500:5000]
    else:
        whole_or_cut(r, body)
    await settled(edge)
    await follow_up(client, edge.url + "/h", body)


# ---- origins that do not answer ----------------------------------------------------------
async def test_origin_accepting_but_never_answering_gives_504_in_time(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """Five collapsed misses on a silent origin: all 504 with a reason, one origin request,
    within connect_timeout + first_byte_timeout (plus slack)."""
    body = payload(CHUNK + 3)
    h = {"Cache-Control": "max-age=300", "ETag": '"s"'}
    state = {"silent": True}
    o = raw_origin(lambda req: ["hang"] if state["silent"] else [ranged(req, body, h)])
    edge = make_edge(o.url, origin={"connect_timeout": 0.3, "first_byte_timeout": 0.5})
    t0 = time.monotonic()
    rs = await asyncio.gather(*(attempt(client, edge.url + "/s") for _ in range(5)))
    took = time.monotonic() - t0
    for r in rs:
        assert isinstance(r, Resp) and r.status == 504 and b"timed out" in r.body, r
    assert took < 2.5, took
    assert o.count("/s") == 1
    state["silent"] = False
    await follow_up(client, edge.url + "/s", body)


@pytest.mark.parametrize("partial", [b"", b"HTTP/1.1 200 OK\r\nContent-Le"],
                         ids=["nothing", "half-a-head"])
async def test_origin_stalling_before_the_end_of_its_head_gives_504(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession, partial: bytes) -> None:
    """Part of a status line/head then silence: a 504, not a hang or a 500."""
    o = raw_origin(lambda req: [partial, "hang"] if partial else ["hang"])
    edge = make_edge(o.url, origin={"connect_timeout": 0.3, "first_byte_timeout": 0.5,
                                    "read_timeout": 0.5})
    t0 = time.monotonic()
    r = await attempt(client, edge.url + "/x")
    assert isinstance(r, Resp) and r.status == 504 and 0 < len(r.body) < 200, r
    assert time.monotonic() - t0 < 2.5


@pytest.mark.parametrize("length", ["length", "chunked"])
async def test_origin_sending_headers_then_stalling_cuts_the_client(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession, length: str) -> None:
    """Headers and 1000 body bytes, then silence: the read timeout cuts every client (no
    hang, nothing stored), and a later request gets the whole object."""
    body = payload(2 * CHUNK + 9)
    h = {"Cache-Control": "max-age=300", "ETag": '"t"'}
    state = {"n": 0}

    def script(req: RawReq) -> list[Step]:
        state["n"] += 1
        if state["n"] > 1:
            return [ranged(req, body, h)]
        if length == "chunked":
            return [answer(200, {**h, "Transfer-Encoding": "chunked"}, b"3e8\r\n" +
                           body[:1000] + b"\r\n", length=None), "hang"]
        full = ranged(req, body, h)
        return [full[:len(full) - CHUNK + 1000], "hang"]

    o = raw_origin(script)
    edge = make_edge(o.url, origin={"read_timeout": 0.5})
    t0 = time.monotonic()
    rs = await asyncio.gather(*(attempt(client, edge.url + "/t") for _ in range(3)))
    assert all(isinstance(r, Exception) for r in rs), rs
    assert time.monotonic() - t0 < 4
    await settled(edge)
    await follow_up(client, edge.url + "/t", body)


# ---- malformed heads ---------------------------------------------------------------------
@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nthis line has no colon\r\n"
    b"Content-Length: 2\r\n\r\nok",
    b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
    b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
    b"garbage, not HTTP at all\r\n\r\n",
], ids=["no-colon", "bad-status", "huge-field", "two-lengths", "negative-length",
        "bad-chunk-size", "not-http"])
async def test_malformed_origin_answer_is_a_502_and_nothing_is_stored(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession, head: bytes) -> None:
    """A head (or framing) the HTTP parser rejects: 502 with a short reason (or a cut body
    for bad chunk framing), never a 500; then a good answer is served and stored."""
    state = {"n": 0}
    good = answer(200, {"Cache-Control": "max-age=60", "ETag": '"g"'}, b"good")

    def script(req: RawReq) -> list[Step]:
        state["n"] += 1
        return [head, "close"] if state["n"] == 1 else [good]

    o = raw_origin(script)
    edge = make_edge(o.url)
    r = await attempt(client, edge.url + "/m")
    if isinstance(r, Resp):
        assert r.status == 502 and 0 < len(r.body) < 200, (r.status, r.body[:200])
    await settled(edge)
    await follow_up(client, edge.url + "/m", b"good")
    assert o.count("/m") == 2  # the second answer was stored


async def test_bytes_past_content_length_do_not_poison_the_next_origin_request(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """The origin says Content-Length 4 and sends 4 + 40 junk bytes on a kept-alive
    connection: the client gets the 4, and the next fetch (another URL) still works."""
    ok = {"Cache-Control": "max-age=60", "ETag": '"j"'}

    def script(req: RawReq) -> list[Step]:
        if req.path == "/a":
            return [answer(200, ok, b"aaaa") + b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"]
        return [answer(200, ok, b"bbbbbb")]

    o = raw_origin(script)
    edge = make_edge(o.url)
    r = await fetch(client, edge.url + "/a")
    assert r.status == 200 and r.body == b"aaaa"
    await asyncio.sleep(0.1)
    await follow_up(client, edge.url + "/b", b"bbbbbb")


# ---- revalidation ------------------------------------------------------------------------
def _conditional_script(v: Versions, on_conditional: Callable[[RawReq], list[Step] | None]
                        ) -> Script:
    """Plain requests get the current version; conditional ones ``on_conditional`` (None:
    what an honest origin would answer)."""
    def script(req: RawReq) -> list[Step]:
        if "if-none-match" in req.headers or "if-modified-since" in req.headers:
            steps = on_conditional(req)
            if steps is not None:
                return steps
            if req.headers.get("if-none-match") == v.versions[v.cur][1].get("ETag"):
                return [answer(304, v.versions[v.cur][1], length=None)]
        return v.answer(req)

    return script


async def test_304_carrying_another_etag_refetches_the_object(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """The object changed; the origin still says 304 but with the new ETag: the stored
    (old) body must not be served as if it were the new one."""
    cc = {"Cache-Control": "max-age=0"}
    v1, v2 = payload(2 * CHUNK + 1, 1), payload(2 * CHUNK + 1, 2)
    v = Versions((v1, {**cc, "ETag": '"v1"'}), (v2, {**cc, "ETag": '"v2"'}))
    lie = {"on": True}

    def on_conditional(req: RawReq) -> list[Step] | None:
        if lie["on"] and req.headers.get("if-none-match") == '"v1"':
            lie["on"] = False
            return [answer(304, {**cc, "ETag": '"v2"'}, length=None)]
        return None

    o = raw_origin(_conditional_script(v, on_conditional))
    edge = make_edge(o.url)
    assert (await fetch(client, edge.url + "/r")).body == v1
    await settled(edge)
    v.cur = 1
    r = await attempt(client, edge.url + "/r")
    whole_or_cut(r, v2)
    assert isinstance(r, Resp) and r.headers.get("etag") == '"v2"' and r.body == v2
    await settled(edge)
    await follow_up(client, edge.url + "/r", v2)


async def test_304_with_the_same_etag_and_a_newer_last_modified_keeps_the_chunks(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """A strong-ETag match with an updated Last-Modified: the stored response is refreshed
    (RFC 9111 §4.3.4) and its chunks still serve: no chunk is fetched again."""
    body = payload(3 * CHUNK)
    h1 = {"Cache-Control": "max-age=0", "ETag": '"k"', "Last-Modified": LM1}
    h2 = {"Cache-Control": "max-age=0", "ETag": '"k"', "Last-Modified": LM2}
    v = Versions((body, h1), (body, h2))
    o = raw_origin(_conditional_script(v, lambda req: None))
    edge = make_edge(o.url)
    assert (await fetch(client, edge.url + "/k")).body == body
    await settled(edge)
    n = o.count("/k")
    v.cur = 1
    await follow_up(client, edge.url + "/k", body)
    later = [(r.headers.get("range"), r.headers.get("if-none-match")) for r in o.requests[n:]]
    assert o.count("/k") == n + 2, f"expected two revalidations only, origin saw {later}"


@pytest.mark.parametrize("fault", ["503", "timeout", "reset", "malformed"])
@pytest.mark.parametrize("sie", [True, False], ids=["stale-if-error", "no-sie"])
async def test_revalidation_failing_serves_stale_only_when_allowed(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession, fault: str, sie: bool) -> None:
    """The origin fails the revalidation of a stale object: stale-if-error serves the
    stored bytes (200, exact), without it a 502/504 with a reason; never a 500."""
    cc = "max-age=0, stale-if-error=600" if sie else "max-age=0"
    body = payload(2 * CHUNK + 3)
    v = Versions((body, {"Cache-Control": cc, "ETag": '"e"'}))
    failing = {"on": False}
    steps: dict[str, list[Step]] = {
        "503": [answer(503, {}, b"down")],
        "timeout": ["hang"],
        "reset": ["reset"],
        "malformed": [b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "close"],
    }

    def script(req: RawReq) -> list[Step]:
        return steps[fault] if failing["on"] else v.answer(req)

    o = raw_origin(script)
    edge = make_edge(o.url, origin={"connect_timeout": 0.3, "first_byte_timeout": 0.5})
    assert (await fetch(client, edge.url + "/e")).body == body
    await settled(edge)
    failing["on"] = True
    r = await attempt(client, edge.url + "/e")
    assert isinstance(r, Resp), r
    if sie:
        assert r.status == 200 and r.body == body and "stale-if-error" in r.cache, r.status
    else:
        want = 504 if fault == "timeout" else 502
        assert r.status == want and 0 < len(r.body) < 200, (r.status, r.body[:200])
    failing["on"] = False
    await settled(edge)
    await follow_up(client, edge.url + "/e", body)


# ---- redirects and Vary: * ---------------------------------------------------------------
@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_is_passed_through_not_followed(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession, status: int) -> None:
    """A redirect is relayed with its Location and body; the edge never fetches the target
    for the client nor stores it under the requested URL."""
    target = payload(CHUNK + 5, 9)
    state = {"redirect": True}

    def script(req: RawReq) -> list[Step]:
        if req.path == "/new":
            return [ranged(req, target, {"Cache-Control": "max-age=60"})]
        if state["redirect"]:
            return [answer(status, {"Location": "/new"}, b"moved\n")]
        return [ranged(req, b"old place", {"Cache-Control": "max-age=60"})]

    o = raw_origin(script)
    edge = make_edge(o.url)
    for _ in range(2):
        r = await fetch(client, edge.url + "/old")
        assert r.status == status and r.headers.get("location") == "/new"
        assert r.body == b"moved\n"
    assert o.count("/new") == 0
    await settled(edge)
    assert edge.call(edge.node.store.get_meta, "/old") is None
    if status in (302, 307):  # not heuristically cacheable: the origin's change shows
        state["redirect"] = False
        await follow_up(client, edge.url + "/old", b"old place")


async def test_redirect_to_a_chunk_range_cuts_the_client_and_recovers(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """Chunk 1's range request answered once with a 302: the client is cut (or gets a 5xx),
    never the redirect's body inside the object; the next request is whole."""
    body = payload(2 * CHUNK + 5)
    h = {"Cache-Control": "max-age=300", "ETag": '"d"'}
    done: list[int] = []

    def script(req: RawReq) -> list[Step]:
        if chunk_of(req) == 1 and not done:
            done.append(1)
            return [answer(302, {"Location": "/elsewhere"}, b"x" * CHUNK)]
        return [ranged(req, body, h)]

    o = raw_origin(script)
    edge = make_edge(o.url)
    await fault_then_follow_up(client, edge, "/d", body, body)


async def test_vary_star_multi_chunk_object_is_relayed_whole_and_never_stored(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession) -> None:
    """Vary: * on a 3-chunk object: every client gets the whole body (and a range its
    bytes), nothing is stored."""
    body = payload(3 * CHUNK + 1)
    origin.put("/vs", body, headers={"Cache-Control": "max-age=60", "Vary": "*",
                                     "ETag": '"vs"'})
    edge = make_edge(origin.url)
    for _ in range(2):
        r = await fetch(client, edge.url + "/vs")
        assert r.status == 200 and r.body == body and "hit" not in r.cache.split("; ")
    r = await fetch(client, edge.url + "/vs", headers={"Range": f"bytes={CHUNK}-{CHUNK + 9}"})
    assert r.status == 206 and r.body == body[CHUNK:CHUNK + 10]
    await settled(edge)
    assert edge.call(edge.node.store.get_meta, "/vs") is None


# ---- more lies and cuts ------------------------------------------------------------------
async def test_head_chunk_reset_with_five_clients_waiting(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """RST in the middle of the first (head) chunk while five collapsed misses read it."""
    body = payload(2 * CHUNK + 5)
    h = {"Cache-Control": "max-age=300", "ETag": '"hr"'}
    state = {"n": 0}

    def script(req: RawReq) -> list[Step]:
        state["n"] += 1
        full = ranged(req, body, h)
        if state["n"] == 1:
            return [full[:len(full) - CHUNK + 20000], 0.5, "reset"]
        return [full]

    o = raw_origin(script)
    edge = make_edge(o.url)
    outs = await asyncio.gather(*(attempt(client, edge.url + "/hr") for _ in range(5)))
    assert all(isinstance(x, Exception) for x in outs), outs
    assert sum(1 for r in o.requests if chunk_of(r) == 0) == 1  # one fetch for all five
    await settled(edge)
    await follow_up(client, edge.url + "/hr", body)


async def test_object_shrinking_answers_416_to_a_later_chunk(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """After chunk 0 the object becomes one chunk long (new ETag): chunk 1 gets a 416."""
    cc = {"Cache-Control": "max-age=300"}
    v1, v2 = payload(3 * CHUNK, 1), payload(CHUNK // 2, 2)
    o = raw_origin(_flip_after_first(Versions((v1, {**cc, "ETag": '"1"'}),
                                              (v2, {**cc, "ETag": '"2"'}))))
    edge = make_edge(o.url)
    await fault_then_follow_up(client, edge, "/s", v2, v1, v2)


async def test_range_ignoring_origin_sending_a_longer_unframed_body_for_a_chunk(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """Chunk 0 came as a 206 of a 3-chunk object; asked for chunk 1 the origin (same ETag)
    ignores Range and streams a chunked 200 of a 4-chunk body: a length that proves it is
    not the stored object, so none of its bytes may fill (or be served as) the old one."""
    h = {"Cache-Control": "max-age=300", "ETag": '"same"'}
    v1, v2 = payload(3 * CHUNK, 1), payload(4 * CHUNK, 2)
    state = {"n": 0}

    def script(req: RawReq) -> list[Step]:
        state["n"] += 1
        if state["n"] == 1:
            return [ranged(req, v1, h)]
        if "range" in req.headers and state["n"] <= 4:
            chunks = b"".join(b"%x\r\n%b\r\n" % (CHUNK, v2[i:i + CHUNK])
                              for i in range(0, len(v2), CHUNK))
            return [answer(200, {**h, "Transfer-Encoding": "chunked"}, chunks + b"0\r\n\r\n",
                           length=None)]
        return [ranged(req, v2, h)]

    o = raw_origin(script)
    edge = make_edge(o.url)
    first = await attempt(client, edge.url + "/g")
    bad = [judge(first, v1, v2)]
    await settled(edge)
    r = await fetch(client, edge.url + "/g")
    if r.status == 200 and r.body not in (v1, v2):
        bad.append(f"then served ({r.cache}) {len(r.body)} bytes matching neither version "
                   f"(first wrong byte vs v1: {_first_diff(r.body, v1)})")
    assert not [b for b in bad if b], bad


async def test_error_page_cut_short_is_not_relayed_as_whole(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """A 404 whose close-delimited body is reset half way: the client must not get a 404
    with the half body and a Content-Length that makes it look complete."""
    page = b"<html>" + b"n" * 2000 + b"</html>"
    state = {"n": 0}

    def script(req: RawReq) -> list[Step]:
        state["n"] += 1
        if state["n"] == 1:
            return [answer(404, {"Cache-Control": "max-age=5"}, page[:1000], length=None),
                    0.1, "reset"]
        return [answer(404, {"Cache-Control": "max-age=5"}, page)]

    o = raw_origin(script)
    edge = make_edge(o.url)
    r = await attempt(client, edge.url + "/gone")
    if isinstance(r, Resp) and r.status == 404:
        assert r.body == page, f"a 404 with {len(r.body)} of its {len(page)} bytes as whole"
    else:
        whole_or_cut(r, page)
    await settled(edge)
    r2 = await fetch(client, edge.url + "/gone")
    assert r2.status == 404 and r2.body == page
    assert o.count("/gone") == 2


async def test_informational_103_before_the_answer(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """103 Early Hints ahead of each answer: skipped, the object served and stored whole."""
    body = payload(2 * CHUNK + 1)
    h = {"Cache-Control": "max-age=300", "ETag": '"eh"'}
    hint = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    o = raw_origin(lambda req: [hint, ranged(req, body, h)])
    edge = make_edge(o.url)
    r = await attempt(client, edge.url + "/eh")
    whole_or_cut(r, body)
    assert isinstance(r, Resp) and r.status == 200
    await settled(edge)
    await follow_up(client, edge.url + "/eh", body)


async def test_stale_while_revalidate_with_a_resetting_origin(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """Background revalidations that hit RSTs change nothing: stale bytes keep serving."""
    body = payload(CHUNK + 9)
    h = {"Cache-Control": "max-age=0, stale-while-revalidate=60", "ETag": '"w"'}
    failing = {"on": False}
    o = raw_origin(lambda req: ["reset"] if failing["on"] else [ranged(req, body, h)])
    edge = make_edge(o.url)
    assert (await fetch(client, edge.url + "/w")).body == body
    await settled(edge)
    failing["on"] = True
    for _ in range(3):
        r = await fetch(client, edge.url + "/w")
        assert r.status == 200 and r.body == body
        await settled(edge)
    failing["on"] = False
    await follow_up(client, edge.url + "/w", body)


async def test_chunk_fill_answered_in_another_content_encoding(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession) -> None:
    """An nginx-like origin (gzip on, no Vary): identity ranges carry ETag "t", a client that
    accepts gzip gets a chunked gzip 200 with ETag W/"t". Chunk 0 was filled as identity; a
    gzip-accepting client then needs chunk 1: gzip bytes must never land in the identity
    object."""
    import gzip

    body = payload(3 * CHUNK)
    zipped = gzip.compress(body)
    h = {"Cache-Control": "max-age=300"}

    def script(req: RawReq) -> list[Step]:
        if "gzip" in req.headers.get("accept-encoding", ""):
            framed = b"".join(b"%x\r\n%b\r\n" % (len(zipped[i:i + 8192]), zipped[i:i + 8192])
                              for i in range(0, len(zipped), 8192))
            return [answer(200, {**h, "ETag": 'W/"t"', "Content-Encoding": "gzip",
                                 "Transfer-Encoding": "chunked"}, framed + b"0\r\n\r\n",
                           length=None)]
        return [ranged(req, body, {**h, "ETag": '"t"'})]

    o = raw_origin(script)
    edge = make_edge(o.url)
    ident = {"Accept-Encoding": "identity"}
    r = await fetch(client, edge.url + "/z", headers={**ident, "Range": "bytes=0-99"})
    assert r.status == 206 and r.body == body[:100]
    await settled(edge)
    first = await attempt(client, edge.url + "/z", {"Accept-Encoding": "gzip"})
    bad = [judge(first, body, zipped)]
    if isinstance(first, Resp) and first.body == zipped:
        assert first.headers.get("content-encoding") == "gzip"
    await settled(edge)
    r = await fetch(client, edge.url + "/z", headers=ident)
    if r.status != 200 or r.body != body:
        bad.append(f"then served ({r.cache}) {len(r.body)} bytes, first wrong byte at "
                   f"{_first_diff(r.body, body)}")
    assert not [b for b in bad if b], bad


@pytest.mark.parametrize("extra", [
    {"Age": "9" * 400},
    {"Cache-Control": "max-age=" + "9" * 400},
    {"Cache-Control": "max-age=60", "Expires": "Thu, 01 Jan 99999 00:00:00 GMT"},
    {"Cache-Control": "max-age=60", "Date": "yesterday"},
    {"Cache-Control": "max-age=60", "Last-Modified": "Mon, 31 Feb 2026 25:61:61 GMT"},
    {"Cache-Control": "max-age=60", "ETag": "unquoted-etag"},
    {"Cache-Control": "max-age=60", "X-Utf8": "caf\u00e9 \u2603"},
    {"Cache-Control": "max-age=60", "Vary": "Accept-Encoding, , ,"},
    {"Cache-Control": "max-age=60", "Content-Type": "text/plain; charset=\u00ff\u00fe"},
    {"Cache-Control": 'max-age=60, no-cache="', "ETag": '"q"'},
], ids=["huge-age", "huge-max-age", "expires-year-99999", "bad-date", "bad-lm", "bad-etag",
        "utf8-value", "empty-vary-members", "latin1-ctype", "unterminated-quote"])
async def test_odd_header_values_never_cause_a_500(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession, extra: dict[str, str]) -> None:
    """Odd but parseable field values: the object is served exactly (miss, then again)."""
    body = payload(CHUNK + 7)

    def script(req: RawReq) -> list[Step]:
        full = ranged(req, body, {"Cache-Control": "max-age=60", "ETag": '"o"'})
        head, _, rest = full.partition(b"\r\n")
        fields = "".join(f"{k}: {v}\r\n" for k, v in extra.items()).encode("utf-8")
        if "Cache-Control" in extra:
            rest = rest.replace(b"Cache-Control: max-age=60\r\n", b"", 1)
        if "ETag" in extra:
            rest = rest.replace(b'ETag: "o"\r\n', b"", 1)
        return [head + b"\r\n" + fields + rest]

    o = raw_origin(script)
    edge = make_edge(o.url)
    for _ in range(3):
        r = await asyncio.wait_for(fetch(client, edge.url + "/odd"), 15)
        assert r.status == 200 and r.body == body, (r.status, r.body[:200])
        await settled(edge)
    r = await fetch(client, edge.url + "/odd", headers={"Range": "bytes=5-9"})
    assert r.status == 206 and r.body == body[5:10]


@pytest.mark.parametrize("fault", ["hang", "reset"])
async def test_later_chunk_never_answered_or_refused(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession, fault: str) -> None:
    """Chunk 1's fetch gets no answer (or its first two an RST): the three clients reading
    it are cut within the timeouts, and the next request gets the whole object."""
    body = payload(3 * CHUNK + 1)
    h = {"Cache-Control": "max-age=300", "ETag": '"n"'}
    faults: list[int] = []

    def script(req: RawReq) -> list[Step]:
        if chunk_of(req) == 1 and len(faults) < (1 if fault == "hang" else 2):
            faults.append(1)
            return [fault]
        return [ranged(req, body, h)]

    o = raw_origin(script)
    edge = make_edge(o.url, origin={"connect_timeout": 0.3, "first_byte_timeout": 0.5})
    t0 = time.monotonic()
    outs = await asyncio.gather(*(attempt(client, edge.url + "/n") for _ in range(3)))
    assert time.monotonic() - t0 < 4
    bad = [judge(x, body) for x in outs]
    assert faults and any(isinstance(x, Exception) for x in outs), outs
    await settled(edge)
    bad += await later_problems(client, edge.url + "/n", body)
    assert not [b for b in bad if b], bad


@pytest.mark.parametrize("lie", ["full-200", "extra-bytes"])
async def test_later_chunk_answer_with_more_than_asked_same_object(
        raw_origin: Callable[[Script], RawOrigin], make_edge: Any,
        client: aiohttp.ClientSession, lie: str) -> None:
    """Chunk 1 answered with the whole (unchanged) object as a 200, or with its 206 plus
    100 junk bytes past the range (Content-Length says so): the edge takes just its bytes."""
    body = payload(4 * CHUNK + 3)
    h = {"Cache-Control": "max-age=300", "ETag": '"m"'}
    done: list[int] = []

    def script(req: RawReq) -> list[Step]:
        if chunk_of(req) == 1 and not done:
            done.append(1)
            if lie == "full-200":
                return [answer(200, h, body)]
            a, b = CHUNK, 2 * CHUNK
            return [answer(206, {**h, "Content-Range": f"bytes {a}-{b - 1}/{len(body)}"},
                           body[a:b] + b"J" * 100), "close"]
        return [ranged(req, body, h)]

    o = raw_origin(script)
    edge = make_edge(o.url)
    await fault_then_follow_up(client, edge, "/mo", body, body)
    assert done


async def test_object_without_validator_that_lost_a_chunk_is_fetched_again_whole(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession) -> None:
    """No ETag, no Last-Modified: once a chunk is evicted, it cannot be refilled on its own
    (nothing could tell the origin's new bytes from the old): the object is fetched again,
    whole, and never served as old chunks around a new one."""
    import os

    v1, v2 = payload(3 * CHUNK + 5, 41), payload(3 * CHUNK + 5, 42)
    cc = {"Cache-Control": "max-age=300"}
    origin.put("/nv.ts", v1, headers=cc)
    edge = make_edge(origin.url, cache={"memory": "0"})
    for _ in range(3):  # fill, then hits (the hot path must not keep such an object)
        r = await fetch(client, edge.url + "/nv.ts")
        assert r.status == 200 and r.body == v1
        edge.settle()
    store = edge.node.store
    meta = edge.call(store.get_meta, "/nv.ts")
    assert meta is not None
    assert "/nv.ts" not in edge.node.app.hot
    ref = edge.call(store.get_chunk, meta, 1)
    assert ref is not None and ref.path
    os.unlink(ref.path)  # evicted (as another worker's eviction would)
    edge.call(store.chunk_missing, meta, 1)
    origin.put("/nv.ts", v2, headers=cc)  # same length, new bytes, still no validator
    n = origin.count("/nv.ts")
    r = await fetch(client, edge.url + "/nv.ts")
    assert r.status == 200 and r.body == v2
    got = [h.get("Range") for m, p, h in origin.requests[n:] if p == "/nv.ts"]
    assert got[-1] is None  # the last fetch was the whole object, not a lone chunk
    edge.settle()
    r = await fetch(client, edge.url + "/nv.ts")
    assert r.status == 200 and r.body == v2 and r.cache.startswith("edgecdn; hit")
