"""Steering's signed URLs against a real edge process (``edgecdn edge --token-secret``).

Steering and the edge share only the fleet's secrets and the contracts: the edge accepts the
tokens steering issues (with either rotation secret), and refuses missing, tampered,
expired, wrong-title and unknown-key tokens with 403. Its real /healthz also feeds the probes.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest
from aiohttp import web

from contracts.tokens import TOKEN_PARAM, sign, token_query
from steering.server import SteeringServer
from steering.settings import SteeringSettings
from tests.conftest import free_port
from tests.steering.conftest import StandInEdge, make_fleet

ROOT = Path(__file__).resolve().parents[2]
BODY = b"#EXTM3U\n#EXT-X-VERSION:3\n"


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    async def playlist(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/vnd.apple.mpegurl",
                            headers={"Cache-Control": "max-age=60"})

    app = web.Application()
    app.router.add_get("/titles/{title}/master.m3u8", playlist)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def real_edge(origin: str, tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgecdn.cli", "edge", "--listen", f"127.0.0.1:{port}",
        "--origin", origin, "--cache-dir", str(tmp_path / "cache"), "--memory-cache", "16MiB",
        "--disk-cache", "64MiB", "--no-fsync", "--access-log", "",
        "--token-secret", "k1=old-secret", "--token-secret", "k2=current-secret",
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            t0 = time.monotonic()
            while True:  # readiness: the edge answers its /healthz
                try:
                    async with s.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert proc.returncode is None, "edge exited"
                assert time.monotonic() - t0 < 30, "edge did not start"
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def test_edge_accepts_steering_tokens_and_refuses_bad_ones(
        real_edge: str, edges: dict[str, StandInEdge], mmdb_path: Path) -> None:
    urls = {n: e.url for n, e in edges.items()} | {"lon-1": real_edge, "lon-2": real_edge}
    fleet = make_fleet(urls, {"geoip_db": str(mmdb_path)})
    srv = SteeringServer(fleet, SteeringSettings.from_dict(fleet.steering), "127.0.0.1:0")
    await srv.start()
    try:
        assert srv.steering.health["lon-1"].state.value == "up"  # the real edge's report
        path = "/titles/t1/master.m3u8"
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{srv.http_port}/v1/steer",
                             params={"path": path, "client_ip": "81.2.69.160"}) as r:
                doc = await r.json()
            signed = next(t["url"] for t in doc["targets"] if t["edge"] == "lon-1")
            assert signed.startswith(real_edge + path + f"?{TOKEN_PARAM}=")
            tok = parse_qs(urlsplit(signed).query)[TOKEN_PARAM][0]

            async def status(url: str) -> int:
                async with s.get(url) as resp:
                    body = await resp.read()
                    if resp.status == 200:
                        assert body == BODY
                    return resp.status

            now = int(time.time())
            old_kid = token_query(sign(b"old-secret", "k1", "/titles/t1/", now + 60))
            expired = token_query(sign(b"current-secret", "k2", "/titles/t1/", now - 10))
            unknown = token_query(sign(b"x", "k9", "/titles/t1/", now + 60))
            assert await status(signed) == 200
            assert await status(f"{real_edge}{path}?{old_kid}") == 200  # rotation
            assert await status(real_edge + path) == 403  # missing
            assert await status(signed[:-4] + "0000") == 403  # tampered
            assert await status(f"{real_edge}{path}?{expired}") == 403
            assert await status(f"{real_edge}{path}?{unknown}") == 403
            assert await status(f"{real_edge}/titles/t2/master.m3u8?"
                                f"{TOKEN_PARAM}={quote(tok, safe='')}") == 403  # other title
    finally:
        await srv.stop()
