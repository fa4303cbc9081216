"""Asking the worker that owns a chunk (``--workers N``) instead of the origin.

Chunk keys are sharded over workers by hash; the owner is the only process that fetches its
chunks from the origin. A non-owner that misses sends the owner an ordinary GET with the
chunk's Range and ``x-edgecdn-peer: 1`` over the owner's Unix socket
(``<cache_dir>/run/worker-<i>.sock``); the owner serves it like any client (hit, or its own
single flight) and adds the object's meta, and the bytes stream back as they arrive.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import aiohttp

from edge.config import OriginConfig
from edge.origin_client.base import AiohttpFetcher, Headers, OriginResponse, quote_path


def shard_of(chunk_key: str, workers: int) -> int:
    return zlib.crc32(chunk_key.encode("utf-8", "surrogatepass")) % workers


def socket_path(run_dir: Path, worker: int) -> Path:
    return run_dir / f"worker-{worker}.sock"


class _UnixFetcher(AiohttpFetcher):
    max_field_size = 1 << 20  # the owner's meta travels in a header

    def __init__(self, cfg: OriginConfig, path: str) -> None:
        super().__init__(cfg)
        self.path = path

    def connector(self) -> aiohttp.BaseConnector:
        return aiohttp.UnixConnector(path=self.path, limit=self.cfg.max_connections)


class PeerOrigin:
    kind = "peer"
    supports_methods = frozenset({"GET", "HEAD"})

    def __init__(self, cfg: OriginConfig, path: Path) -> None:
        self.fetcher = _UnixFetcher(cfg, str(path))

    async def start(self) -> None:
        await self.fetcher.start()

    async def fetch(self, method: str, path: str, query: str, headers: Headers,
                    body: bytes | None = None) -> OriginResponse:
        url = "http://edge-worker" + quote_path(path) + (f"?{query}" if query else "")
        return await self.fetcher.request(method, url, headers, None)

    async def fetch_post(self, path: str, body: bytes) -> OriginResponse:
        return await self.fetcher.request("POST", "http://edge-worker" + path, {}, body)

    async def close(self) -> None:
        await self.fetcher.close()


class Peers:
    """peer_for(chunk_key): the owner's client, or None when this worker owns the chunk."""

    def __init__(self, cfg: OriginConfig, run_dir: Path, worker: int, workers: int) -> None:
        self.worker = worker
        self.workers = workers
        self.clients = {i: PeerOrigin(cfg, socket_path(run_dir, i))
                        for i in range(workers) if i != worker}

    def owns(self, chunk_key: str) -> bool:
        return self.workers == 1 or shard_of(chunk_key, self.workers) == self.worker

    def peer_for(self, chunk_key: str) -> PeerOrigin | None:
        if self.workers == 1:
            return None
        i = shard_of(chunk_key, self.workers)
        return None if i == self.worker else self.clients[i]

    async def close(self) -> None:
        for c in self.clients.values():
            await c.close()
