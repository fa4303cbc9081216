"""A fault-injecting HTTP proxy to put in front of the S3 origin (or any HTTP origin).

Edges point their S3 endpoint at it; the harness switches faults over HTTP while it runs:

    POST /_fault {"mode": "ok|slow|fail|reset", "rate": 0..1, "delay": s, "status": 503}
    GET  /_fault -> current mode and counters

``slow`` delays the response, ``fail`` answers an S3-style error with ``status``, ``reset``
sends the headers and part of the body and then aborts the connection. ``rate`` is the
fraction of requests affected. Bodies are streamed, never buffered whole. (S3 bucket names
cannot start with "_", so /_fault never shadows an object.)

    python -m bench.faultproxy --listen 127.0.0.1:9100 --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import asyncio
import random
from dataclasses import asdict, dataclass

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from contracts.config import ConfigError, split_hostport

HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
       "trailers", "transfer-encoding", "upgrade", "host", "content-length"}
MODES = ("ok", "slow", "fail", "reset")


@dataclass(slots=True)
class FaultState:
    mode: str = "ok"
    rate: float = 1.0
    delay: float = 0.5
    status: int = 503
    requests: int = 0
    faulted: int = 0


class FaultProxy:
    def __init__(self, upstream: str, seed: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.state = FaultState()
        self.rng = random.Random(seed)
        self.http: ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("GET", "/_fault", self.get_fault)
        app.router.add_route("POST", "/_fault", self.set_fault)
        app.router.add_route("*", "/{tail:.*}", self.proxy)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self.http = ClientSession(connector=TCPConnector(limit=0), auto_decompress=False,
                                  timeout=ClientTimeout(total=None, sock_connect=5))

    async def _stop(self, app: web.Application) -> None:
        if self.http:
            await self.http.close()

    async def get_fault(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.state))

    async def set_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            mode = str(body.get("mode", "ok"))
            rate = float(body.get("rate", 1.0))
            delay = float(body.get("delay", self.state.delay))
            status = int(body.get("status", 503))
        except (ValueError, TypeError, AttributeError) as e:
            raise web.HTTPBadRequest(text=f"bad fault body: {e}") from e
        if mode not in MODES or not 0 <= rate <= 1 or delay < 0 or not 500 <= status <= 599:
            raise web.HTTPBadRequest(
                text=f"mode one of {MODES}, rate in [0,1], delay >= 0, status 5xx")
        s = self.state
        s.mode, s.rate, s.delay, s.status = mode, rate, delay, status
        return web.json_response(asdict(s))

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        s = self.state
        s.requests += 1
        mode = s.mode if s.mode != "ok" and self.rng.random() < s.rate else "ok"
        if mode != "ok":
            s.faulted += 1
        if mode == "slow":
            await asyncio.sleep(s.delay)
        elif mode == "fail":
            return web.Response(
                status=s.status, content_type="application/xml",
                text="<Error><Code>ServiceUnavailable</Code>"
                     "<Message>injected by faultproxy</Message></Error>")
        assert self.http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        headers["Host"] = request.host
        data = await request.read() if request.can_read_body else None
        async with self.http.request(request.method, self.upstream + request.path_qs,
                                     headers=headers, data=data,
                                     allow_redirects=False) as up:
            resp = web.StreamResponse(status=up.status, reason=up.reason)
            for k, v in up.headers.items():
                if k.lower() not in HOP:
                    resp.headers.add(k, v)
            if up.content_length is not None:
                resp.content_length = up.content_length
            await resp.prepare(request)
            if request.method == "HEAD":
                return resp
            first = True
            async for chunk in up.content.iter_chunked(256 * 1024):
                if mode == "reset" and first:
                    await resp.write(chunk[: max(1, len(chunk) // 2)])
                    if request.transport is not None:
                        request.transport.abort()
                    return resp
                first = False
                await resp.write(chunk)
            if mode == "reset" and request.transport is not None:  # empty body: reset anyway
                request.transport.abort()
                return resp
            await resp.write_eof()
            return resp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="faultproxy", description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT")
    ap.add_argument("--upstream", required=True, help="http://host:port of the origin")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        host, port = split_hostport(args.listen)
    except ConfigError as e:
        ap.error(str(e))
    web.run_app(FaultProxy(args.upstream, args.seed).app(), host=host, port=port,
                print=None, access_log=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
