"""The lean HTTP/1.1 server protocol (asyncio Protocol on httptools), modelled on uvicorn's
httptools_impl: status lines precomputed at import, ``data_received`` only feeds the parser,
a header block is built as a list and written once, one keep-alive timer per connection,
reading paused while a response is in progress with more requests queued (pipelining) and
writing flow-controlled by pause_writing / resume_writing.

Limits are enforced here, before any request reaches the application: an oversized request
head -> 431, an overlong target -> 414, an unparseable message -> 400 with the reason, a body
over the limit -> 413. Every such answer closes the connection.

The application sees ``Request`` objects and answers through the connection's small write API
(``start`` / ``write`` / ``drain`` / ``sendfile`` / ``finish``).
"""

from __future__ import annotations

import asyncio
import collections
import http
import logging
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httptools

if TYPE_CHECKING:
    from edge.server.app import EdgeApp

log = logging.getLogger("edge.protocol")

STATUS_LINE = {
    int(s): f"HTTP/1.1 {int(s)} {s.phrase}\r\n".encode("latin-1") for s in http.HTTPStatus
}
HIGH_WATER = 256 * 1024
NAMES_KEPT = 512  # header names as sent -> lower-case str, kept for reuse (bounded)
_NAMES: dict[bytes, str] = {}
MAX_PIPELINE = 32
CLOSE = b"connection: close\r\n"
# request headers that need the general path, not a prepared hot answer (conditionals,
# ranges, client cache directives, credentials, peer requests)
HOT_BLOCKERS = frozenset({
    "range", "if-range", "if-none-match", "if-modified-since", "if-match",
    "if-unmodified-since", "authorization", "cache-control", "pragma", "x-edgecdn-peer-fill",
    "x-edgecdn-peer", "connection", "expect", "content-length", "transfer-encoding",
})
KEEP_ALIVE_10 = b"connection: keep-alive\r\n"
# One whole plain GET in one read: request line, then header fields that are each a token,
# a colon and visible ASCII, none a hot blocker (names case-insensitive), one of them a valid
# Host. Everything it accepts the parser accepts the same way; anything else (pipelined
# requests, a head split over reads, obs-text, folding, lower-case methods...) simply goes
# through the parser.
_BLOCKER_NAMES = b"|".join(re.escape(n.encode())
                           for n in sorted(HOT_BLOCKERS | {"upgrade", "host"}))
_FIELD = rb"(?!(?i:" + _BLOCKER_NAMES + rb"):)[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t -~]*\r\n"
# RFC 9112 §3.2 / RFC 3986 §3.2.2: host [":" port], an IP literal or a reg-name
_HOST = rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?"
HOST_VALUE = re.compile(_HOST).fullmatch
PLAIN_FIELDS_MAX = 2048  # the longest header block a connection remembers (plain_target)
PLAIN_GET = re.compile(
    rb"GET (/[!-~]*) HTTP/1\.1\r\n(?:" + _FIELD + rb")*(?i:host):[\t ]*" + _HOST
    + rb"[\t ]*\r\n(?:" + _FIELD + rb")*\r\n"
).fullmatch


def status_line(status: int) -> bytes:
    line = STATUS_LINE.get(status)
    return line if line is not None else f"HTTP/1.1 {status} Unknown\r\n".encode()


class Request:
    """One parsed request. ``headers``: lower-case names, repeated fields joined with ", "."""

    __slots__ = ("method", "target", "path", "query", "headers", "body", "keep_alive",
                 "http10", "t0")

    def __init__(self, method: str, target: str, path: str, query: str,
                 headers: dict[str, str], body: bytes, keep_alive: bool, http10: bool) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.http10 = http10
        self.t0 = time.monotonic()


class _Reject(Exception):
    pass


class HttpConnection(asyncio.Protocol):
    """One client connection. Slots: the attributes every request reads sit together in the
    object (a few cache lines) rather than in a per-connection dict."""

    __slots__ = (
        "app", "admin", "public", "internal", "hot_ok", "max_head", "max_url", "max_body",
        "keepalive", "loop", "transport", "sockfd", "dupfd", "client", "parser", "closed",
        "paused_reading", "write_paused", "_drain", "_on_writable", "queue", "busy", "timer",
        "_url", "_headers", "_head_bytes", "_progress", "_stalled", "_body",
        "_body_len", "_reject", "_failed", "_between", "_t0", "keep_alive", "sent", "head_sent",
        "last_active", "plain_fields",
    )
    app: EdgeApp
    transport: asyncio.Transport | None

    def __init__(self, app: EdgeApp, *, admin: bool = False, internal: bool = False,
                 public: bool = True) -> None:
        self.app = app
        self.admin = admin  # admin endpoints are served on this listener
        self.public = public  # content and /healthz /metrics are served on this listener
        self.internal = internal  # a worker's Unix socket: peer requests trusted
        self.hot_ok = public and not internal  # prepared answers may be given here
        lim = app.limits
        self.max_head = lim.max_header_bytes
        self.max_url = lim.max_url_bytes
        self.max_body = lim.max_body_bytes
        self.keepalive = lim.keepalive_timeout
        self.loop = asyncio.get_event_loop()
        self.transport = None
        self.sockfd = -1
        self.dupfd = -1
        self.client = ""
        self.parser = httptools.HttpRequestParser(self)
        # any HTTP/x.y parses; on_headers_complete serves 1.x as HTTP/1.1 (RFC 9110 §2.5,
        # as nginx does) and refuses other majors with 505
        self.parser.set_dangerous_leniencies(lenient_version=True)
        self.closed = False
        self.paused_reading = False
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._on_writable: Callable[[], None] | None = None
        self.queue: collections.deque[Request] = collections.deque()
        self.busy = False
        self.timer: asyncio.TimerHandle | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_bytes = 0  # the header fields of the message being parsed, exactly
        self._progress = 0  # messages begun and fields ended (data_received watches it)
        self._stalled = 0  # bytes of an unfinished head since anything in it last ended
        self._body: list[bytes] | None = None
        self._body_len = 0
        self._reject: tuple[int, str] | None = None
        self._failed: tuple[int, str] | None = None  # the answer owed to an unparsable request
        self._between = True  # the parser is between messages (nothing of one buffered)
        self.plain_fields = b""  # the header block of this connection's last PLAIN_GET match
        self._t0 = 0.0
        # response state, read by the app
        self.keep_alive = True
        self.sent = 0
        self.head_sent = False
        self.last_active = self.loop.time()

    # ---- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=HIGH_WATER, low=0)  # type: ignore[attr-defined]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                self.sockfd = sock.fileno()
            except OSError:
                self.sockfd = -1
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if isinstance(peer, tuple) else "unix"
        self.app.conn_opened(self)
        self._arm_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        f = self._drain
        if f is not None and not f.done():
            f.set_exception(ConnectionResetError("client went away"))
        self._drain = None
        cb, self._on_writable = self._on_writable, None
        if cb is not None:  # a response waiting to send more: it sees closed, logs, stops
            self._call_writable(cb)
        if self.dupfd >= 0:
            try:
                self.loop.remove_writer(self.dupfd)
            except Exception:
                pass
            os.close(self.dupfd)
            self.dupfd = -1
        self.app.conn_closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pace_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.queue and not self.busy:
            self.loop.call_soon(self._next)  # it stopped at the full buffer
        else:
            self._pace_reading()
        f = self._drain
        if f is not None:
            self._drain = None
            if not f.done():
                f.set_result(None)

    def data_received(self, data: bytes) -> None:
        # a whole plain GET on an idle public connection, answered from its prepared entry
        # without running the parser (edge.server.hot); the parser is between messages, so
        # it never learns of this one and stays in step
        if (self.hot_ok and self._between and not self.busy and not self.queue
                and not self.closed and len(data) <= self.max_head):
            target = self.plain_target(data)
            if target is not None:
                t0 = time.monotonic()  # loop.time()'s clock
                if self.app.hot_direct(self, target, t0):
                    self.last_active = t0
                    return
        mark = self._progress
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # no upgrades here: answer the request as plain HTTP/1.1, then close (the parser
            # stops at an upgrade, so nothing after it on this connection can be read)
            for r in self.queue:
                r.keep_alive = False
            self.keep_alive = False
            if not self.queue and not self.busy and self.transport is not None:
                self.transport.close()
                self.closed = True
        except httptools.HttpParserCallbackError:
            self._reject = self._reject or (400, "bad request")
        except httptools.HttpParserError as e:
            reason = str(e).strip() or "malformed request"
            self._reject = self._reject or (400, f"bad request: {reason}"[:120])
        if not self._between and self._reject is None:
            # a message still unfinished: on_header counts fields (head and trailer) once
            # they end, on_body body bytes; this bounds a field that never ends (the parser
            # buffers it): bytes received in reads that completed nothing (a read that did
            # may hold a whole earlier message)
            if self._progress != mark:
                self._stalled = 0
            else:
                self._stalled += len(data)
                if self._stalled > self.max_head + self.max_url + 1024:
                    self._reject = (431, "request header fields too large")
        if self._reject is not None:
            self._fail(*self._reject)

    def plain_target(self, data: bytes) -> str | None:
        """The target if data is one whole plain GET (PLAIN_GET), else None.

        A player sends the same header block with every request on a connection. Once
        PLAIN_GET has matched it, "GET <target> HTTP/1.1\\r\\n" followed by exactly those
        bytes matches too whenever the target starts with "/" and is visible ASCII, so only
        the request line is read; the regex was the largest part of a cold hit's Python
        time (NOTES.md)."""
        sp = data.find(b" ", 4)
        f = self.plain_fields
        if (f and len(data) - sp - 11 == len(f) and data.startswith(b"GET /")
                and data.startswith(b" HTTP/1.1\r\n", sp) and data.endswith(f)
                and data.isascii()):
            target = data[4:sp].decode("latin-1")
            if target.isprintable():  # ASCII: no control byte
                return target
            return None
        m = PLAIN_GET(data)
        if m is None:
            return None
        fields = data[m.end(1) + 11:]  # after " HTTP/1.1\r\n"
        # held while the connection lives: a player's block is a few hundred bytes; a huge
        # one (up to max_head) is read by PLAIN_GET each time instead of kept per connection
        self.plain_fields = fields if len(fields) <= PLAIN_FIELDS_MAX else b""
        return m[1].decode("latin-1")

    def eof_received(self) -> bool | None:
        """Client half-closed: finish what it asked for, then close."""
        if self.busy or self.queue:
            self.keep_alive = False
            for r in self.queue:
                r.keep_alive = False
            return True
        return None

    # ---- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._progress += 1
        self._t0 = time.monotonic()
        self._between = False
        self._url = b""
        self._headers = {}
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        u = self._url + url
        self._url = u
        if len(u) > self.max_url:
            self._reject = (414, "request target too long")
            raise _Reject

    def on_header(self, name: bytes, value: bytes) -> None:
        self._progress += 1
        n = self._head_bytes = self._head_bytes + len(name) + len(value) + 4
        if n > self.max_head + len(self._url):
            self._reject = (431, "request header fields too large")
            raise _Reject
        k = _NAMES.get(name)
        if k is None:
            k = name.lower().decode("latin-1")
            if len(_NAMES) < NAMES_KEPT:
                _NAMES[name] = k
        h = self._headers
        if k in h:  # a repeated field: one comma-joined value (RFC 9110 5.3)
            h[k] = f"{h[k]}, {value.decode('latin-1')}"
        else:
            h[k] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        h = self._headers
        version = self.parser.get_http_version()
        if version not in ("1.1", "1.0"):
            if not version.startswith("1."):
                self._reject = (505, f"HTTP/{version} is not supported here: use HTTP/1.1")
                raise _Reject
            version = "1.1"  # a later minor version of 1: answered as HTTP/1.1
        host = h.get("host")  # repeated lines were joined with ", ": never a valid value
        if host is None:
            if version == "1.1":  # RFC 9112 §3.2
                self._reject = (400, "bad request: HTTP/1.1 needs a Host field")
                raise _Reject
        elif HOST_VALUE(host.encode("latin-1")) is None:
            self._reject = (400, "bad request: Host must be one host[:port]")
            raise _Reject
        v = h.get("content-length")
        cl = int(v) if v is not None and v.strip().isdigit() else None
        if cl is not None and cl > self.max_body:
            self._reject = (413, "request body too large")
            raise _Reject
        if (cl or "transfer-encoding" in h) and version == "1.1" and not self.busy \
                and not self.queue and h.get("expect", "").lower() == "100-continue" \
                and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # RFC 9110 §10.1.1

    def on_body(self, body: bytes) -> None:
        self._progress += 1
        self._body_len += len(body)
        if self._body_len > self.max_body:
            self._reject = (413, "request body too large")
            raise _Reject
        if self._body is None:
            self._body = [body]
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self._between = True
        p = self.parser
        method = p.get_method()
        target = self._url.decode("latin-1")
        try:
            m = method.decode("ascii")
        except UnicodeDecodeError:
            self._reject = (400, "bad request line")
            raise _Reject from None
        target = target.partition("#")[0]  # a fragment is the client's own (RFC 9112 §3.2)
        if target[:1] != "/" and target[:8].lower().startswith(("http://", "https://")):
            # absolute form (RFC 9112 §3.2.2): what counts is its path and query
            rest = target.partition("//")[2]
            cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=-1)
            target = "/" if cut < 0 else ("/" + rest[cut:] if rest[cut] == "?" else rest[cut:])
        path, _, query = target.partition("?")
        http10 = p.get_http_version() == "1.0"
        body = self._body
        if body is not None:
            self._body = None
            self._body_len = 0
        # an Upgrade or CONNECT is answered as plain HTTP/1.1 and the connection then closed
        # (the parser stops there): the answer says so
        keep = p.should_keep_alive() and not p.should_upgrade() and m != "CONNECT"
        req = Request(m, target, path, query, self._headers,
                      b"".join(body) if body else b"", keep, http10)
        self.queue.append(req)
        self._pace_reading()
        if not self.busy:
            self._next()

    def direct_request(self, target: str) -> Request:
        """The plain keep-alive GET just parsed, as the response in progress (the hot path's
        file answers, which may have to wait for the socket): later requests queue behind it
        until finish()."""
        path, _, query = target.partition("?")
        req = Request("GET", target, path, query, self._headers, b"", True, False)
        req.t0 = self._t0
        self._begin(req)
        return req

    def hold(self) -> None:
        """A hot answer goes on after this turn (its socket is full): later requests queue
        behind it until finish()."""
        self.busy = True
        self.keep_alive = True  # (only plain keep-alive requests are answered hot)

    def _begin(self, req: Request) -> None:
        """req's response is now the one in progress on this connection."""
        self.busy = True
        self.keep_alive = req.keep_alive
        self.sent = 0
        self.head_sent = False

    # ---- request cycle ---------------------------------------------------------------------
    def _next(self) -> None:
        while self.queue and not self.busy and not self.closed and not self.write_paused:
            req = self.queue.popleft()
            self._begin(req)
            self.app.handle(self, req)
        if self._failed is not None and not self.queue and not self.busy and not self.closed:
            self._send_failure()
            return
        self._pace_reading()

    def _pace_reading(self) -> None:
        """Read more requests only while their answers can be written and the queue has
        room: a client that sends without reading must not fill the edge's memory with
        answers (nginx stops reading such a client too)."""
        if self.transport is None or self.closed:
            return
        if self.paused_reading:
            if not self.write_paused and len(self.queue) < MAX_PIPELINE // 2 \
                    and self._failed is None:
                self.paused_reading = False
                self.transport.resume_reading()
        elif self.write_paused or len(self.queue) > MAX_PIPELINE or self._failed is not None:
            self.paused_reading = True
            self.transport.pause_reading()

    def finish(self) -> None:
        """The response is complete: next pipelined request, keep-alive wait, or close."""
        self.busy = False
        if self.closed or self.transport is None:
            return
        if not self.keep_alive:
            self.transport.close()
            self.closed = True
            return
        self.last_active = self.loop.time()
        if self.queue:
            self.loop.call_soon(self._next)
        elif self._failed is not None:
            self._send_failure()
        elif self.timer is None:
            self._arm_timer()

    def abort(self) -> None:
        """Close mid-response (a body that cannot be completed must not look whole)."""
        self.busy = False
        self.keep_alive = False
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True

    def _arm_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(self.keepalive, self._idle)

    def _idle(self) -> None:
        """One timer per connection, re-armed only when it fires (not per request)."""
        self.timer = None
        if self.closed or self.transport is None:
            return
        left = self.last_active + self.keepalive - self.loop.time()
        if self.busy or left > 0.01:
            self.timer = self.loop.call_later(max(left, self.keepalive / 4) if not self.busy
                                              else self.keepalive, self._idle)
            return
        self.transport.close()
        self.closed = True

    def _fail(self, status: int, reason: str) -> None:
        """A request we could not parse: the stream is out of sync, so nothing after it is
        read; the requests parsed before it are answered in order (as nginx does), then this
        answer and the close (none after an answer that closed already)."""
        if self.closed or self.transport is None:
            return
        self._failed = (status, reason)
        if self.busy or self.queue:
            self._pace_reading()  # paused for good: finish() and _next() end with this
            return
        self._send_failure()

    def _send_failure(self) -> None:
        assert self._failed is not None and self.transport is not None
        status, reason = self._failed
        if self.keep_alive:
            body = (reason + "\n").encode()
            self.transport.write(b"".join((
                status_line(status), b"content-type: text/plain\r\n",
                b"content-length: ", str(len(body)).encode(), b"\r\n",
                b"cache-status: edgecdn; fwd=request; detail=bad-request\r\n",
                CLOSE, b"\r\n", body,
            )))
            self.app.log_rejected(self, status, len(body), reason)
        self.transport.close()
        self.closed = True

    # ---- write API -------------------------------------------------------------------------
    def write_head(self, data: bytes) -> None:
        """The status line and header block (not counted as body bytes)."""
        if not self.closed and self.transport is not None:
            self.head_sent = True
            self.transport.write(data)

    def write_joined(self, parts: list[Any], body_bytes: int) -> None:
        """Several pieces (header and/or small body pieces) in one write: one send()."""
        if not self.closed and self.transport is not None:
            self.head_sent = True
            self.transport.write(b"".join(parts) if len(parts) > 1 else parts[0])
            self.sent += body_bytes

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)
            self.sent += len(data)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("client went away")
        if self.write_paused:
            f = self._drain
            if f is None:
                f = self._drain = self.loop.create_future()
            await f

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def sendfile_now(self, fd: int, offset: int, count: int) -> int:
        """Zero-copy as much as the socket takes right now (the transport's buffer must be
        empty so bytes stay in order); 0 when it would block. EOFError when the file ends
        before count bytes (a chunk file cut short on disk): sendfile's 0 at end of file
        must not read as "would block", or the sender waits for writability forever."""
        try:
            n = os.sendfile(self.sockfd, fd, offset, count)
        except (BlockingIOError, InterruptedError):
            return 0
        if n == 0 and count:
            raise EOFError("chunk file shorter than indexed")
        self.sent += n
        return n

    async def writable(self) -> None:
        """Wait until the socket can take more bytes: when_writable, awaited."""
        f = self.loop.create_future()

        def ready() -> None:
            if not f.done():
                f.set_result(None)

        self.when_writable(ready)
        try:
            await f
        finally:
            if not f.done() and self._on_writable is ready:  # cancelled while waiting
                self._on_writable = None
                if self.dupfd >= 0:
                    self.loop.remove_writer(self.dupfd)
        if self.closed:
            raise ConnectionResetError("client went away")

    def when_writable(self, cb: Callable[[], None]) -> None:
        """Call cb once the socket can take more bytes (or the connection is lost): the
        callback form of writable(), for a response that continues without a task."""
        if self.closed:
            self._call_writable(cb)
            return
        if self.dupfd < 0:
            self.dupfd = os.dup(self.sockfd)
        self._on_writable = cb
        self.loop.add_writer(self.dupfd, self._writable_ready)

    def _writable_ready(self) -> None:
        if self.dupfd >= 0:
            self.loop.remove_writer(self.dupfd)
        cb, self._on_writable = self._on_writable, None
        if cb is not None:
            self._call_writable(cb)

    def _call_writable(self, cb: Callable[[], None]) -> None:
        try:
            cb()
        except Exception:  # a bug must cut this response, not leave the client waiting
            log.exception("sending a response failed")
            self.abort()

    def info(self) -> dict[str, Any]:
        return {"client": self.client, "queued": len(self.queue)}
