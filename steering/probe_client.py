"""A minimal keep-alive HTTP/1.1 GET client for health probes.

200 edges probed every second through aiohttp's client cost ~10% of a core; this costs a
fraction of that: one persistent connection per edge, one pre-built request, httptools for
the response. Any error or timeout closes the connection, so the next probe reconnects (a
restarted edge is seen as soon as it answers). https edges go through aiohttp instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import httptools

_MAX_BODY = 1 << 20


class ProbeError(Exception):
    pass


class _Response:
    def __init__(self) -> None:
        self.body = bytearray()
        self.done = False
        self.keep_alive = False
        self.parser: httptools.HttpResponseParser | None = None

    def on_body(self, b: bytes) -> None:
        self.body += b
        if len(self.body) > _MAX_BODY:
            raise ProbeError("health report too large")

    def on_message_complete(self) -> None:
        self.done = True
        # only meaningful inside the callback: llhttp resets once the message is done
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()


class HttpProbe:
    def __init__(self, url: str, path: str = "/healthz") -> None:
        u = urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"lean probe needs an http:// URL: {url!r}")
        self.host = u.hostname
        self.port = u.port or 80
        hosthdr = u.netloc.rsplit("@", 1)[-1]
        target = (u.path.rstrip("/") + path) or "/"
        self.request = (f"GET {target} HTTP/1.1\r\nHost: {hosthdr}\r\n"
                        "User-Agent: edgecdn-steering-probe\r\nAccept: application/json\r\n"
                        "\r\n").encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, timeout: float) -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(timeout):
                return await self._get()
        except BaseException:
            self.close()
            raise

    async def _get(self) -> tuple[int, bytes]:
        reused = self._writer is not None and not self._writer.is_closing()
        if not reused:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None and self._writer is not None
        self._writer.write(self.request)
        resp = _Response()
        parser = resp.parser = httptools.HttpResponseParser(resp)
        got = False
        while not resp.done:
            data = await self._reader.read(65536)
            if not data and reused and not got:
                # the server closed an idle keep-alive connection: retry once, fresh
                self.close()
                return await self._get()
            got = True
            if not data:
                # a response delimited by EOF is complete now; anything else is cut short
                with contextlib.suppress(httptools.HttpParserError):
                    parser.feed_data(b"")
                if not resp.done:
                    raise ProbeError("connection closed mid-response")
                break
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as e:
                raise ProbeError(f"bad HTTP response: {e}") from None
        if not resp.keep_alive:
            self.close()
        return parser.get_status_code(), bytes(resp.body)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
