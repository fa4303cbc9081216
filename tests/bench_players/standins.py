"""aiohttp stand-ins for steering and edges, so the harness is tested without the real ones.

The harness only speaks HTTP, so these speak the same HTTP: ``/v1/steer`` answers
contracts.steer JSON, edges serve bytes with a Cache-Status header and insist on the token
query parameter. Each stand-in can misbehave on purpose (fail, hang, flip a byte).

Run as a process (so a fault scenario can SIGKILL/SIGSTOP it like a real edge):
    python -m tests.bench_players.standins edge --name e1 --listen 127.0.0.1:PORT --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from contracts.steer import SteerResponse, SteerTarget


def make_title(title: str, segments: int = 4, renditions: tuple[tuple[str, int, int], ...] = (
        ("low", 200_000, 20_000), ("high", 2_000_000, 60_000)), seed: int = 0) -> dict[str, bytes]:
    """path -> bytes of a synthetic HLS title: master + one playlist and N segments per rung."""
    rng = random.Random(f"{seed}:{title}")
    out: dict[str, bytes] = {}
    master = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for name, bw, size in renditions:
        master += [f"#EXT-X-STREAM-INF:BANDWIDTH={bw},RESOLUTION=640x360", f"{name}/index.m3u8"]
        pl = ["#EXTM3U", "#EXT-X-TARGETDURATION:4", "#EXT-X-PLAYLIST-TYPE:VOD"]
        for i in range(segments):
            pl += ["#EXTINF:4.000,", f"seg_{i:05d}.ts"]
            out[f"/titles/{title}/{name}/seg_{i:05d}.ts"] = rng.randbytes(size)
        pl.append("#EXT-X-ENDLIST")
        out[f"/titles/{title}/{name}/index.m3u8"] = ("\n".join(pl) + "\n").encode()
    out[f"/titles/{title}/master.m3u8"] = ("\n".join(master) + "\n").encode()
    return out


def library(titles: tuple[str, ...] = ("t1", "t2", "t3"), segments: int = 4,
            renditions: tuple[tuple[str, int, int], ...] | None = None) -> dict[str, bytes]:
    lib: dict[str, bytes] = {}
    for t in titles:
        lib.update(make_title(t, segments, renditions) if renditions else make_title(t, segments))
    return lib


@dataclass
class EdgeBehaviour:
    fail_status: int = 0  # answer every request with this status
    hang: bool = False  # never answer (like a SIGSTOPped process)
    corrupt: set[str] = field(default_factory=set)  # paths served with one byte flipped
    truncate: set[str] = field(default_factory=set)  # paths served short (honest length)


class StandinEdge:
    def __init__(self, name: str, content: dict[str, bytes],
                 behaviour: EdgeBehaviour | None = None) -> None:
        self.name = name
        self.content = content
        self.b = behaviour or EdgeBehaviour()
        self.requests: Counter[str] = Counter()
        self.seen: set[str] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/{tail:.*}", self.get)
        return app

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "active_connections": 0, "egress_bps": 0,
                                  "capacity_bps": 1e9, "hit_ratio": 0.0})

    async def get(self, request: web.Request) -> web.Response:
        path = request.path
        self.requests[path] += 1
        if self.b.hang:
            await asyncio.sleep(3600)
        if self.b.fail_status:
            return web.Response(status=self.b.fail_status, text="injected")
        if not request.query.get("token"):
            return web.Response(status=403, text="missing token")
        body = self.content.get(path)
        if body is None:
            return web.Response(status=404)
        status = "edgecdn; hit" if path in self.seen else "edgecdn; fwd=miss; stored"
        self.seen.add(path)
        if path in self.b.corrupt:
            body = body[:10] + bytes([body[10] ^ 0xFF]) + body[11:]
        if path in self.b.truncate:
            body = body[: len(body) // 2]
        return web.Response(body=body, headers={"Cache-Status": status})


class StandinSteering:
    """Every client gets the same ranked list (order = ``order``), CloudFront last."""

    def __init__(self, edges: dict[str, tuple[str, str, str]], order: list[str],
                 admin_token: str = "tok", cloudfront: str = "") -> None:
        self.edges = edges  # name -> (url, site, region)
        self.order = order
        self.admin_token = admin_token
        self.cloudfront = cloudfront
        self.client_ips: list[str] = []
        self.admin: list[tuple[str, dict[str, Any], str]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/steer", self.steer)
        app.router.add_post("/v1/admin/{what}", self.admin_call)
        return app

    async def steer(self, request: web.Request) -> web.Response:
        path = request.query.get("path", "")
        self.client_ips.append(request.query.get("client_ip", ""))
        targets = []
        for n in self.order:
            url, site, region = self.edges[n]
            targets.append(SteerTarget(f"{url}{path}?token=tk-{n}", "edge", n, site, region))
        if self.cloudfront:
            targets.append(SteerTarget(f"https://{self.cloudfront}{path}?Signature=x&token=cf",
                                       "cloudfront"))
        return web.json_response(SteerResponse(path, targets, 30, {"site": "test"}).to_dict())

    async def admin_call(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.admin_token}":
            return web.Response(status=401, text="bad token")
        self.admin.append((request.match_info["what"], await request.json(), auth))
        return web.json_response({"ok": True})


class ServerThread:
    """aiohttp apps on free loopback ports, served from a background thread's event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []

    def serve(self, app: web.Application) -> str:
        async def start() -> str:
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.runners.append(runner)
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return f"http://127.0.0.1:{port}"

        return asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def close(self) -> None:
        async def stop() -> None:
            for r in self.runners:
                await r.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()  # its epoll, eventfds and pipes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["edge"])
    ap.add_argument("--name", required=True)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--segments", type=int, default=4)
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    edge = StandinEdge(args.name, library(segments=args.segments))
    web.run_app(edge.app(), host=host, port=int(port), print=None, access_log=None)


if __name__ == "__main__":
    main()
