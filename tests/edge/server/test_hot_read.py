"""A prepared (hot) answer is given straight from the read that brought a whole plain GET
(PLAIN_GET), before the parser runs. What that recognizer accepts must be something the
parser accepts the same way (same target, keep-alive HTTP/1.1 GET, no blocking field), and
anything else must still get the general path's answer."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httptools
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge.config import HttpLimits
from edge.server.protocol import HOT_BLOCKERS, PLAIN_FIELDS_MAX, PLAIN_GET, HttpConnection
from tests.edge.server.test_hot_path import BODY, CC, _warm_hot


class _Parsed:
    def __init__(self) -> None:
        self.url = b""
        self.names: list[bytes] = []
        self.done = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.names.append(name)

    def on_message_complete(self) -> None:
        self.done += 1


def _parse(data: bytes) -> tuple[_Parsed, httptools.HttpRequestParser] | None:
    p = _Parsed()
    parser = httptools.HttpRequestParser(p)
    try:
        parser.feed_data(data)
    except httptools.HttpParserError:
        return None
    return p, parser


def _mostly(usual, *odd):
    """usual most of the time (so many cases are plain GETs), now and then an odd one."""
    return st.sampled_from([usual] * 6 + list(odd))


PLAIN_NAMES = st.sampled_from(["host", "user-agent", "accept", "x-range", "ranges", "if-rangex"])
NAMES = st.one_of(
    PLAIN_NAMES, PLAIN_NAMES, PLAIN_NAMES,
    st.sampled_from(sorted(HOT_BLOCKERS | {"upgrade"})),
    st.text("abcxyzRANGE-_.!~01", min_size=0, max_size=12),
).map(lambda n: "".join(c.upper() if i % 2 else c for i, c in enumerate(n)))
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=12)
VALUES = st.one_of(PRINTABLE, PRINTABLE, PRINTABLE,
                   st.text(st.characters(min_codepoint=0, max_codepoint=0x100), max_size=6))
TARGETS = st.one_of(st.text("/ab?=&%.:x", max_size=12).map(lambda t: "/" + t),
                    st.text("/ab?=&%#.:x \x7f\u00e9", max_size=12))


@settings(max_examples=600, deadline=None)
@given(method=_mostly("GET", "get", "HEAD", "POST", "GET "), target=TARGETS,
       version=_mostly("HTTP/1.1", "HTTP/1.0", "http/1.1", "HTTP/2"),
       fields=st.lists(st.tuples(NAMES, _mostly(": ", ":", " : ", ":\t", ": \r\n "), VALUES),
                       max_size=3),
       eol=_mostly("\r\n", "\n"), tail=_mostly("", "GET / HTTP/1.1\r\n\r\n", "x"))
def test_what_the_read_recognizes_the_parser_reads_the_same_way(method, target, version,
                                                               fields, eol, tail):
    head = f"{method} {target} {version}{eol}" + "".join(
        f"{n}{s}{v}{eol}" for n, s, v in fields) + eol + tail
    data = head.encode("latin-1", "replace")
    m = PLAIN_GET(data)
    if m is None:
        return
    got = _parse(data)
    assert got is not None, data  # the parser accepts it too
    p, parser = got
    assert p.done == 1 and parser.get_method() == b"GET" and parser.get_http_version() == "1.1"
    assert parser.should_keep_alive() and not parser.should_upgrade()
    assert m[1] == p.url  # the same target
    assert not {n.decode("latin-1").lower() for n in p.names} & HOT_BLOCKERS
    assert [n.lower() for n in p.names].count(b"host") == 1  # RFC 9112 §3.2: exactly one


def test_the_read_recognizer_takes_plain_gets_and_nothing_else():
    plain = [b"GET /a.ts HTTP/1.1\r\nHost: h\r\n\r\n",
             b"GET /a.ts?t=1 HTTP/1.1\r\nhOsT:127.0.0.1:8080 \r\n\r\n",
             b"GET /a.ts HTTP/1.1\r\nUser-Agent: wrk\r\nHost: [::1]\r\nAccept: */*\r\n\r\n"]
    assert [PLAIN_GET(d)[1] for d in plain] == [b"/a.ts", b"/a.ts?t=1", b"/a.ts"]  # type: ignore[index]
    other = [
        b"GET /a.ts HTTP/1.1\r\n\r\n",  # no Host, two, or an invalid one: the parser's 400
        b"GET /a.ts HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET /a.ts HTTP/1.1\r\nHost: a b\r\n\r\n", b"GET /a.ts HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET /a.ts HTTP/1.1\r\nrAnGe: bytes=0-1\r\n\r\n",  # a blocker, any case
        b"GET /a.ts HTTP/1.1\r\nIf-None-Match: x\r\n\r\n",
        b"GET /a.ts HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /a.ts HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
        b"get /a.ts HTTP/1.1\r\n\r\n", b"GET /a.ts HTTP/1.0\r\n\r\n",
        b"GET /a.ts HTTP/1.1\r\nHost : h\r\n\r\n",  # space before the colon
        b"GET /a.ts HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
        b"GET /a.ts HTTP/1.1\r\nHost: h\xff\r\n\r\n",  # obs-text
        b"GET /a.ts HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",  # pipelined
        b"GET /a.ts HTTP/1.1\nHost: h\n\n", b"GET /a.ts HTTP/1.1\r\nHost: h\r\n",  # unfinished
        b"GET http://x/a.ts HTTP/1.1\r\n\r\n",
    ]
    assert [d for d in other if PLAIN_GET(d)] == []


def _connection() -> HttpConnection:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return HttpConnection(SimpleNamespace(limits=HttpLimits()))  # type: ignore[arg-type]
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _plain(data: bytes) -> str | None:
    m = PLAIN_GET(data)
    return None if m is None else m[1].decode("latin-1")


LINES = st.builds(lambda m, t, v: f"{m} {t} {v}\r\n".encode("latin-1", "replace"),
                  _mostly("GET", "get", "HEAD", "GET "),
                  st.one_of(TARGETS, st.text("/a?#%\x00\x01\t\x7f\u00e9", max_size=6).map(
                      lambda t: "/" + t)),
                  _mostly("HTTP/1.1", "HTTP/1.0", "HTTP/1.1 "))
BLOCKS = st.lists(st.tuples(NAMES, _mostly(": ", ":"), VALUES), max_size=3).map(
    lambda fs: "".join(f"{n}{s}{v}\r\n" for n, s, v in fs).encode("latin-1", "replace"))
GOOD_BLOCKS = st.lists(st.tuples(st.sampled_from(["User-Agent", "accept", "X-A"]), PRINTABLE),
                       max_size=3).map(lambda fs: "".join(f"{n}: {v}\r\n" for n, v in fs).encode())


@settings(max_examples=500, deadline=None)
@given(first=_mostly(b"GET /a HTTP/1.1\r\n", b"GET /a HTTP/1.0\r\n"),
       block=st.one_of(GOOD_BLOCKS, GOOD_BLOCKS, BLOCKS),
       host=_mostly("Host: h\r\n", "Host: a b\r\n", ""),
       later=st.lists(st.tuples(LINES, _mostly("same", "other", "cut", "more", "swap",
                                               "prefix")), min_size=1, max_size=4),
       other=BLOCKS)
@example(first=b"GET /a HTTP/1.1\r\n", block=b"", host="Host: h\r\n", other=b"",
         later=[(b"GET /\xe9 HTTP/1.1\r\n", "same"), (b"GET /\x7f HTTP/1.1\r\n", "same")])
def test_a_connection_recognizes_exactly_what_plain_get_does(first, block, host, later, other):
    """plain_target remembers the header block of the connection's last plain GET and then
    only reads the request line when the block comes again: it must still take exactly what
    PLAIN_GET takes, with the same target, whatever came before on the connection."""
    conn = _connection()
    fields = block + host.encode() + b"\r\n"
    seen = [first + fields]
    for line, how in later:
        tail = {"same": fields, "other": other + b"Host: h\r\n\r\n", "cut": fields[:-1],
                "more": fields + b"GET / HTTP/1.1\r\n\r\n",
                "swap": fields.replace(b"Host", b"Etag"),  # same length, no Host
                "prefix": b"Range: bytes=0-1\r\n" + fields}[how]
        seen.append(line + tail)
    for data in seen:
        assert conn.plain_target(data) == _plain(data), data


def test_the_remembered_block_takes_only_well_formed_request_lines():
    conn = _connection()
    block = b"Host: h\r\nUser-Agent: player\r\n\r\n"
    assert conn.plain_target(b"GET /a.ts HTTP/1.1\r\n" + block) == "/a.ts"
    assert conn.plain_fields == block
    for line, want in [(b"GET /b.ts?x=1 HTTP/1.1\r\n", "/b.ts?x=1"),
                       (b"GET /b\x01.ts HTTP/1.1\r\n", None),  # a control byte
                       (b"GET /b\x7f.ts HTTP/1.1\r\n", None), (b"GET /\xe9 HTTP/1.1\r\n", None),
                       (b"GET  /b.ts HTTP/1.1\r\n", None), (b"GET b.ts HTTP/1.1\r\n", None),
                       (b"GET /b.ts HTTP/1.0\r\n", None), (b"POST /b.ts HTTP/1.1\r\n", None),
                       (b"GET /b.ts HTTP/1.1\n", None), (b"GET /b.ts\tx HTTP/1.1\r\n", None)]:
        assert conn.plain_target(line + block) == want, line
        assert want == _plain(line + block)
    assert conn.plain_target(b"GET /a.ts HTTP/1.1\r\n" + block[:-2]) is None  # unfinished
    assert conn.plain_fields == block
    # a huge block is taken but not remembered (it would be held as long as the connection)
    huge = b"X-Pad: " + b"p" * PLAIN_FIELDS_MAX + b"\r\n" + block
    assert conn.plain_target(b"GET /c.ts HTTP/1.1\r\n" + huge) == "/c.ts"
    assert conn.plain_fields == b""
    assert conn.plain_target(b"GET /d.ts HTTP/1.1\r\n" + huge) == "/d.ts"


async def _answer(port: int, *parts: bytes) -> bytes:
    """Send parts (pausing between them) on one connection; read until it goes quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i, part in enumerate(parts):
        if i:
            await asyncio.sleep(0.1)
        writer.write(part)
        await writer.drain()
    out = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), 0.5)
        except TimeoutError:
            break
        if not chunk:
            break
        out += chunk
    writer.close()
    return out


async def test_only_whole_plain_gets_are_answered_from_the_read(origin, make_edge, client):
    origin.put("/r.ts", BODY, headers=CC)
    edge = make_edge(origin.url)
    await _warm_hot(edge, client, "/r.ts")
    app = edge.node.app
    direct: list[bool] = []
    real = app.hot_direct
    edge.call(setattr, app, "hot_direct", lambda c, t, t0: direct.append(real(c, t, t0))
              or direct[-1])
    port = edge.node.port
    get = b"GET /r.ts HTTP/1.1\r\nHost: x\r\n\r\n"

    out = await _answer(port, get)
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(BODY) and direct == [True]
    # the connection's later GETs with the same header block (read without PLAIN_GET), and
    # one whose target has a control byte after them: the parser's 400
    out = await _answer(port, get, get, b"GET /r.ts\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.count(b"HTTP/1.1 200") == 2 and out.count(BODY) == 2
    assert b"HTTP/1.1 400" in out.rsplit(BODY, 1)[1] and direct == [True] * 3
    # split over two reads, pipelined, a blocker in odd case, HTTP/1.0: the general path
    out = await _answer(port, get[:12], get[12:])
    assert out.startswith(b"HTTP/1.1 200") and b"edgecdn; hit" in out and out.endswith(BODY)
    out = await _answer(port, get + get)
    assert out.count(b"HTTP/1.1 200") == 2 and out.count(BODY) == 2
    out = await _answer(port, b"GET /r.ts HTTP/1.1\r\nHost: x\r\nrAnGe: bytes=0-4\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 206") and out.endswith(BODY[:5])
    out = await _answer(port, b"GET /r.ts HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(BODY)
    out = await _answer(port, b"get /r.ts HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    assert direct == [True] * 3  # none of those came through the read's recognizer
