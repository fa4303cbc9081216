"""The lean health-probe HTTP client against a real aiohttp server."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from steering.probe_client import HttpProbe
from tests.conftest import free_port


async def serve(handler, port: int) -> web.AppRunner:
    app = web.Application()
    app.router.add_get("/base/healthz", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    return runner


async def test_keep_alive_reuses_one_connection_and_reconnects_after_restart() -> None:
    peers: list[object] = []

    async def h(request: web.Request) -> web.Response:
        peers.append(request.transport)
        return web.json_response({"ok": True})

    port = free_port()
    runner = await serve(h, port)
    p = HttpProbe(f"http://127.0.0.1:{port}/base")
    for _ in range(3):
        assert await p.get(1) == (200, b'{"ok": true}')
    assert len({id(t) for t in peers}) == 1
    await runner.cleanup()  # the pooled connection is closed by the server
    with pytest.raises(OSError):  # retried once on a fresh connection: refused
        await p.get(1)
    runner = await serve(h, port)
    assert (await p.get(1))[0] == 200
    await runner.cleanup()


async def test_connection_close_and_chunked_responses() -> None:
    async def h(request: web.Request) -> web.StreamResponse:
        r = web.StreamResponse(headers={"Connection": "close"})
        r.enable_chunked_encoding()
        await r.prepare(request)
        await r.write(b'{"a":')
        await r.write(b"1}")
        await r.write_eof()
        return r

    port = free_port()
    runner = await serve(h, port)
    p = HttpProbe(f"http://127.0.0.1:{port}/base")
    assert await p.get(1) == (200, b'{"a":1}')
    assert p._writer is None  # closed as the server asked
    assert (await p.get(1))[0] == 200
    await runner.cleanup()


async def test_timeout_closes_the_connection() -> None:
    async def h(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    port = free_port()
    runner = await serve(h, port)
    p = HttpProbe(f"http://127.0.0.1:{port}/base")
    with pytest.raises(TimeoutError):
        await p.get(0.2)
    assert p._writer is None
    await runner.cleanup()


def test_only_plain_http_urls() -> None:
    with pytest.raises(ValueError):
        HttpProbe("https://edge.example")
