"""A lean HTTP/1.1 server protocol (httptools) in front of ``HttpApi``.

aiohttp's web layer costs more than a whole steering decision, so, as uvicorn's httptools
protocol does: status lines precomputed, ``data_received`` only feeds the parser, one
``transport.write`` per response, idle connections swept by the server's ticker instead of
a timer per request. Limits: request line 8 KiB, headers 32 KiB, body 64 KiB.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from http import HTTPStatus

import httptools

from steering.http_api import HttpApi

_STATUS = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_MAX_URL = 8192
_MAX_HEADERS = 32768
_MAX_BODY = 65536
_WANTED = {b"x-forwarded-for", b"authorization"}


class _Date:
    value = b""
    at = 0

    @classmethod
    def get(cls) -> bytes:
        t = int(time.time())
        if t != cls.at:
            cls.at = t
            cls.value = b"Date: " + formatdate(t, usegmt=True).encode() + b"\r\n"
        return cls.value


class HttpProtocol(asyncio.Protocol):
    __slots__ = ("api", "conns", "transport", "parser", "peer", "url", "headers", "body",
                 "hsize", "closing", "last_active", "_hname")

    def __init__(self, api: HttpApi, conns: set[HttpProtocol]) -> None:
        self.api = api
        self.conns = conns
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = ""
        self._reset()
        self.closing = False
        self.last_active = time.monotonic()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.hsize = 0
        self._hname = b""

    # -- asyncio --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        pn = transport.get_extra_info("peername")
        host = pn[0] if pn else ""
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]
        self.peer = host.split("%", 1)[0]
        self.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conns.discard(self)
        self.transport = None
        self.parser = None  # parser <-> protocol is a cycle: let refcounting free both

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, b"upgrade not supported")
        except httptools.HttpParserError as e:
            if not self.closing:
                msg = str(e).encode("ascii", "replace")[:100]
                self._fail(400, b"malformed HTTP request: " + msg)

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > _MAX_URL:
            self._fail(414, b"request target too long")
            raise httptools.HttpParserError("uri too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.hsize += len(name) + len(value)
        if self.hsize > _MAX_HEADERS:
            self._fail(431, b"request headers too large")
            raise httptools.HttpParserError("headers too large")
        n = name.lower()
        if n in _WANTED:
            old = self.headers.get(n)
            # repeated X-Forwarded-For headers form one list, in order
            self.headers[n] = old + b"," + value if old else value

    def on_body(self, body: bytes) -> None:
        if len(self.body) + len(body) > _MAX_BODY:
            self._fail(413, b"request body too large")
            raise httptools.HttpParserError("body too large")
        self.body += body

    def on_message_complete(self) -> None:
        if self.closing or self.transport is None:
            return
        method = self.parser.get_method()
        url = self.url
        if url[:1] == b"/" and b"#" not in url:  # origin-form, the usual case
            path, _, query = url.partition(b"?")
        else:
            try:
                u = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                self._fail(400, b"bad request target")
                return
            path, query = u.path or b"/", u.query or b""
        status, headers, body = self.api.handle(method, path, query, self.headers, self.body,
                                                self.peer)
        keep = self.parser.should_keep_alive()
        out = [_STATUS[status], _Date.get()]
        if type(headers) is bytes:
            out.append(headers)
        else:
            for k, v in headers:
                out.append(k + b": " + v + b"\r\n")
        out.append(b"Content-Length: " + str(len(body)).encode() + b"\r\n")
        if not keep:
            out.append(b"Connection: close\r\n")
        out.append(b"\r\n")
        if method != b"HEAD":
            out.append(body)
        self.transport.write(b"".join(out))
        if not keep:
            self.closing = True
            self.transport.close()

    def _fail(self, status: int, reason: bytes) -> None:
        if self.closing or self.transport is None:
            return
        body = b'{"error":"' + reason.replace(b'"', b"'") + b'"}'
        self.transport.write(b"".join([
            _STATUS[status], _Date.get(), b"Content-Type: application/json\r\n",
            b"Content-Length: ", str(len(body)).encode(), b"\r\nConnection: close\r\n\r\n",
            body]))
        self.closing = True
        self.transport.close()


def close_idle(conns: set[HttpProtocol], idle_s: float) -> int:
    """Close keep-alive connections idle for longer than idle_s; returns how many."""
    cutoff = time.monotonic() - idle_s
    stale = [c for c in conns if c.last_active < cutoff]
    for c in stale:
        if c.transport is not None:
            c.transport.close()
    return len(stale)
