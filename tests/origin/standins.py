"""Real-socket stand-ins for fill tests: a recording proxy in front of moto S3 (the origin as
the edge sees it, with a fault switch) and a peer edge that only answers from its "cache"."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import free_port


async def run_first_pass(w: Any, timeout: float) -> dict[str, Any]:
    """Run a FillWorker until its first pass finishes; its status then (the worker stopped)."""
    task = asyncio.create_task(w.run())
    try:
        async with asyncio.timeout(timeout):
            await w.pass_finished.wait()
        return w.status()
    finally:
        await w.stop()
        await task


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    headers: dict[str, str] = field(default_factory=dict)


class RecordingProxy:
    """Forwards every request to the moto endpoint and records it; ``cut[path] = n`` makes the
    next GET of that object path drop the connection after n body bytes (an origin fault)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[Seen] = []
        self.cut: dict[str, int] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def gets(self, suffix: str = "") -> list[Seen]:
        return [s for s in self.seen if s.method == "GET" and s.path.endswith(suffix)]

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self._session = aiohttp.ClientSession(auto_decompress=False)
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._session:
            await self._session.close()
        if self._runner:
            await self._runner.cleanup()

    async def handle(self, req: web.Request) -> web.StreamResponse:
        assert self._session is not None
        self.seen.append(Seen(req.method, req.path, req.headers.get("Range"), dict(req.headers)))
        fwd = {k: v for k, v in req.headers.items() if k.lower() not in ("host",)}
        async with self._session.request(req.method, self.upstream + req.path_qs, headers=fwd,
                                         data=await req.read()) as up:
            resp = web.StreamResponse(status=up.status)
            for k, v in up.headers.items():
                if k.lower() not in ("transfer-encoding", "connection", "server", "date"):
                    resp.headers[k] = v
            await resp.prepare(req)
            limit = self.cut.pop(req.path.split("/", 2)[-1], None) if req.method == "GET" else None
            sent = 0
            async for piece in up.content.iter_chunked(64 * 1024):
                if limit is not None and sent + len(piece) > limit:
                    await resp.write(piece[: limit - sent])
                    assert req.transport is not None
                    for _ in range(1000):  # exactly `limit` bytes go out first (abort drops
                        if not req.transport.get_write_buffer_size():  # what is buffered)
                            break
                        await asyncio.sleep(0.005)
                    req.transport.abort()
                    return resp
                await resp.write(piece)
                sent += len(piece)
            await resp.write_eof()
            return resp


class PeerEdge:
    """A peer edge that holds some objects: with the peer-fill header it answers 200/206 from
    what it holds and 404 otherwise; it never fetches anything."""

    def __init__(self, held: dict[str, tuple[bytes, str]]) -> None:
        self.held = held  # path -> (body, content type)
        self.seen: list[Seen] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def handle(self, req: web.Request) -> web.Response:
        self.seen.append(Seen(req.method, req.path, req.headers.get("Range"), dict(req.headers)))
        if req.headers.get("X-Edgecdn-Peer-Fill") != "1":
            return web.Response(status=400, text="peer stand-in only answers peer fills")
        got = self.held.get(req.path)
        if got is None:
            return web.Response(status=404, text="not cached here")
        body, ctype = got
        headers = {"Content-Type": ctype, "ETag": '"peer-etag"', "Age": "5",
                   "Cache-Control": "public, max-age=31536000, immutable",
                   "Cache-Status": "edgecdn; hit", "Accept-Ranges": "bytes"}
        rng = req.headers.get("Range")
        if rng:
            a, _, b = rng.removeprefix("bytes=").partition("-")
            start, end = int(a), int(b) + 1
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(body)}"
            return web.Response(status=206, body=body[start:end], headers=headers)
        return web.Response(body=body, headers=headers)
