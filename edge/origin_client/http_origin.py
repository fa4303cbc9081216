"""An HTTP(S) origin: request path -> base URL + prefix + path (+ query), any method."""

from __future__ import annotations

from edge.config import OriginConfig
from edge.origin_client.base import AiohttpFetcher, Headers, OriginResponse, quote_path


class HttpOrigin:
    kind = "http"
    supports_methods = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})

    def __init__(self, cfg: OriginConfig) -> None:
        self.cfg = cfg
        self.base = cfg.bucket + (f"/{cfg.prefix}" if cfg.prefix else "")
        self.fetcher = AiohttpFetcher(cfg)

    async def start(self) -> None:
        await self.fetcher.start()

    def url(self, path: str, query: str) -> str:
        return self.base + quote_path(path) + (f"?{query}" if query else "")

    async def fetch(self, method: str, path: str, query: str, headers: Headers,
                    body: bytes | None = None) -> OriginResponse:
        return await self.fetcher.request(method, self.url(path, query), headers, body)

    async def close(self) -> None:
        await self.fetcher.close()
