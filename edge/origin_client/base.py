"""What every origin client returns, and the two ways an origin fetch fails."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

import aiohttp

from edge.config import OriginConfig
from edge.origin_client.tls import client_context, failure_reason

Headers = dict[str, str]
READ_SIZE = 256 * 1024


class OriginError(Exception):
    """The origin could not give an answer: ``timeout`` (-> 504), ``unreachable`` or ``tls``
    (its certificate failed verification or the handshake failed; both -> 502)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason

    @property
    def status(self) -> int:
        return 504 if self.kind == "timeout" else 502


@dataclass(slots=True)
class OriginResponse:
    status: int
    headers: Headers
    resp: aiohttp.ClientResponse | None = None
    read_timeout: float = 5.0
    closed: bool = field(default=False)

    @property
    def content_length(self) -> int | None:
        v = self.headers.get("content-length")
        try:
            return int(v) if v is not None else None
        except ValueError:
            return None

    async def iter_body(self) -> AsyncIterator[bytes]:
        """Body pieces as they arrive; OriginError on a stall longer than read_timeout."""
        if self.resp is None:
            return
        content = self.resp.content
        try:
            while True:
                try:
                    async with asyncio.timeout(self.read_timeout):
                        data = await content.readany()
                except TimeoutError as e:
                    raise OriginError("timeout", "origin stalled mid-body") from e
                if not data:
                    return
                yield data
        except aiohttp.ClientError as e:
            raise OriginError("unreachable", f"origin connection lost: {type(e).__name__}") from e
        finally:
            pass

    async def read_all(self, limit: int) -> bytes | None:
        """Whole body if it is at most ``limit`` bytes, else None (and the response is closed)."""
        out = bytearray()
        async for piece in self.iter_body():
            out += piece
            if len(out) > limit:
                self.close()
                return None
        return bytes(out)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.resp is not None:
                self.resp.close()

    def release(self) -> None:
        """Body fully read: give the connection back to the pool."""
        if not self.closed:
            self.closed = True
            if self.resp is not None:
                self.resp.release()


class Origin(Protocol):
    kind: str
    supports_methods: frozenset[str]

    async def start(self) -> None: ...

    async def fetch(self, method: str, path: str, query: str, headers: Headers,
                    body: bytes | None = None) -> OriginResponse: ...

    async def close(self) -> None: ...


def join_headers(raw: aiohttp.typedefs.LooseHeaders) -> Headers:  # type: ignore[name-defined]
    out: Headers = {}
    for k, v in raw.items():  # type: ignore[union-attr]
        lk = k.lower()
        out[lk] = f"{out[lk]}, {v}" if lk in out else v
    return out


def quote_path(path: str) -> str:
    return quote(path, safe="/:@!$&'()*+,;=-._~")


class AiohttpFetcher:
    """One pooled aiohttp session with the configured timeouts; shared by both origin kinds.

    https requests send ``origin.tls_server_name`` (when set) as SNI and verify the certificate
    against it instead of the URL's host; the Host header still comes from the URL.
    """

    max_field_size = 16384

    def __init__(self, cfg: OriginConfig) -> None:
        self.cfg = cfg
        self.session: aiohttp.ClientSession | None = None

    def connector(self) -> aiohttp.BaseConnector:
        # one verifying context for https origins and https S3 endpoints alike (ignored for http)
        return aiohttp.TCPConnector(limit=self.cfg.max_connections, ttl_dns_cache=60,
                                    ssl=client_context(self.cfg.ca_file))

    async def start(self) -> None:
        if self.session is None:
            conn = self.connector()
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.cfg.connect_timeout,
                                            sock_read=self.cfg.read_timeout)
            self.session = aiohttp.ClientSession(
                connector=conn, timeout=timeout, auto_decompress=False,
                max_field_size=self.max_field_size,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )

    async def request(self, method: str, url: str, headers: Headers,
                      body: bytes | None = None) -> OriginResponse:
        await self.start()
        assert self.session is not None
        from yarl import URL

        try:
            async with asyncio.timeout(self.cfg.connect_timeout + self.cfg.first_byte_timeout):
                resp = await self.session.request(
                    method, URL(url, encoded=True), headers=headers, data=body,
                    allow_redirects=False, server_hostname=self._server_name(url),
                )
        except TimeoutError as e:
            raise OriginError("timeout", "origin timed out before the first byte") from e
        except aiohttp.ServerTimeoutError as e:
            raise OriginError("timeout", "origin timed out") from e
        except (aiohttp.ClientSSLError, ssl.SSLError) as e:
            raise OriginError("tls", failure_reason(e)) from e
        except (aiohttp.ClientError, OSError) as e:
            raise OriginError("unreachable", f"origin unreachable: {type(e).__name__}") from e
        return OriginResponse(resp.status, join_headers(resp.headers), resp, self.cfg.read_timeout)

    def _server_name(self, url: str) -> str | None:
        # plain http (and peer sockets sharing this class) have no TLS to name
        if self.cfg.tls_server_name and url[:8].lower() == "https://":
            return self.cfg.tls_server_name
        return None

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
