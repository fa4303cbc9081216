"""Real parts for edge server tests: an aiohttp origin that counts requests and can fail or
stall on purpose, edges running on a real uvloop loop (in a thread, or as `edgecdn edge`
processes), and a small HTTP client."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop
from aiohttp import web

from edge.config import EdgeConfig, build_config
from edge.node import EdgeNode

ROOT = Path(__file__).resolve().parents[3]
CHUNK = 64 * 1024


@dataclass
class Obj:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    honor_range: bool = True
    # "length": Content-Length; "chunked": Transfer-Encoding: chunked; "close": no length,
    # the body ends when the connection closes. The last two ignore Range (a dynamic origin)
    framing: str = "length"


def payload(n: int, seed: int = 1) -> bytes:
    """Deterministic bytes that differ at every offset (catches misplaced slices)."""
    import hashlib

    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def start_site(loop: asyncio.AbstractEventLoop, app: web.Application,
               ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    """Serve app on 127.0.0.1 at a free port, from loop's own thread: its runner and port."""
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    loop.run_until_complete(site.start())
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def run_then_close(loop: asyncio.AbstractEventLoop) -> None:
    """Run a test server's loop until stopped, then close it: its epoll, eventfds and pipes
    (about 6 fds per server a test started) go with it."""
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


class OriginServer:
    """An HTTP origin on its own thread and loop. ``objects`` maps path -> Obj; every request
    is recorded; ``fail`` makes every answer that status; ``down`` stops answering at all
    (connection reset); ``hold`` makes GETs send headers + first piece then wait for
    ``release()``."""

    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.fail: int | None = None
        self.down = False
        self.delay = 0.0
        self.piece = 16 * 1024
        self.held: set[str] = set()
        self.fail_mid: set[str] = set()
        self.loop = asyncio.new_event_loop()
        self._release: asyncio.Event | None = None
        self._seen = threading.Condition()
        self.port = 0
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def ssl_context(self) -> ssl.SSLContext | None:
        """None: plain HTTP (an https origin overrides this)."""
        return None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner, self.port = start_site(self.loop, self.app(), self.ssl_context())
        self._release = asyncio.Event()
        self._ready.set()
        run_then_close(self.loop)

    def stop(self) -> None:
        async def _stop() -> None:
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def release(self) -> None:
        assert self._release is not None
        self.loop.call_soon_threadsafe(self._release.set)

    def count(self, path: str, method: str = "GET") -> int:
        return sum(1 for m, p, _ in self.requests if p == path and m == method)

    def ranges(self, path: str) -> list[str | None]:
        return [h.get("Range") for m, p, h in self.requests if p == path and m == "GET"]

    def put(self, path: str, body: bytes, **kw: Any) -> Obj:
        o = Obj(body, **kw)
        self.objects[path] = o
        return o

    def wait_requests(self, path: str, n: int, timeout: float = 10.0) -> None:
        """Block until the origin has seen n GETs for path."""
        with self._seen:
            assert self._seen.wait_for(lambda: self.count(path) >= n, timeout), self.requests

    async def handle(self, req: web.Request) -> web.StreamResponse:
        self.requests.append((req.method, req.path, dict(req.headers)))
        with self._seen:
            self._seen.notify_all()
        if self.down:
            assert req.transport is not None
            req.transport.abort()
            raise web.HTTPInternalServerError()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            return web.Response(status=self.fail, text="origin failure\n")
        if req.method not in ("GET", "HEAD"):
            body = await req.read()
            h = {"Cache-Control": "no-store"}
            if "X-Test-Location" in req.headers:  # the answer names another resource
                h["Content-Location"] = req.headers["X-Test-Location"]
            return web.Response(status=200, text=f"{req.method} ok {len(body)}\n", headers=h)
        obj = self.objects.get(req.path)
        if obj is None:
            return web.Response(status=404, text="no such object\n",
                                headers={"Cache-Control": "max-age=5"})
        headers = dict(obj.headers)
        etag = headers.get("ETag")
        inm = req.headers.get("If-None-Match")
        if etag and inm and etag in [t.strip() for t in inm.split(",")]:
            h = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            return web.Response(status=304, headers=h)
        body = obj.body
        status = obj.status
        rng = req.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if m and obj.honor_range and status == 200 and obj.framing == "length":
            a = int(m.group(1))
            b = min(int(m.group(2)) + 1 if m.group(2) else len(body), len(body))
            if a >= len(body):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(body)}"})
            headers["Content-Range"] = f"bytes {a}-{b - 1}/{len(body)}"
            body, status = body[a:b], 206
        resp = web.StreamResponse(status=status, headers=headers)
        if obj.framing == "chunked":
            resp.enable_chunked_encoding()
        elif obj.framing == "close":
            resp._length_check = False  # neither a length nor chunked: close-delimited
            resp.force_close()
        else:
            resp.content_length = len(body)
        await resp.prepare(req)
        if req.method == "HEAD":
            return resp
        sent = 0
        for i in range(0, len(body), self.piece):
            await resp.write(body[i:i + self.piece])
            sent += len(body[i:i + self.piece])
            if req.path in self.held and self._release is not None:
                await self._release.wait()
            if req.path in self.fail_mid and sent >= len(body) // 2:
                assert req.transport is not None
                if obj.framing == "close":  # a reset: a FIN would end the body cleanly
                    sock = req.transport.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                req.transport.abort()
                return resp
        await resp.write_eof()
        return resp


@pytest.fixture
def origin() -> Iterator[OriginServer]:
    o = OriginServer()
    yield o
    o.stop()


def edge_config(origin_url: str, cache_dir: Path, **sections: dict[str, Any]) -> EdgeConfig:
    doc: dict[str, Any] = {
        "edge": {"listen": "127.0.0.1:0", "admin_token": "sekrit"},
        "origin": {"url": origin_url, "connect_timeout": 1.0, "first_byte_timeout": 2.0,
                   "read_timeout": 2.0},
        "cache": {"dir": str(cache_dir), "memory": "8MiB", "disk": "64MiB",
                  "chunk_size": CHUNK, "policy": "lru", "fsync": False},
        "log": {"access": "", "spool": True, "rotate_seconds": 60},
    }
    for sec, vals in sections.items():
        doc.setdefault(sec, {}).update(vals)
    return build_config(doc)


class EdgeThread:
    """An EdgeNode on a real uvloop loop in a thread (fast to start; same code as a process)."""

    def __init__(self, cfg: EdgeConfig) -> None:
        self.cfg = cfg
        self.loop = uvloop.new_event_loop()
        self.node = EdgeNode(cfg)
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self._ready.wait(20)
        if self.error:
            raise self.error

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.node.start())
        except BaseException as e:  # surfaced to the test
            self.error = e
            self._ready.set()
            self.loop.close()
            return
        self._ready.set()
        run_then_close(self.loop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.node.port}"

    def call(self, fn: Any, *a: Any) -> Any:
        """Run fn on the edge's loop thread and return its result."""
        async def _c() -> Any:
            return fn(*a)

        return asyncio.run_coroutine_threadsafe(_c(), self.loop).result(10)

    def settle(self) -> None:
        """Block until the edge's fills and commits under way are done."""
        asyncio.run_coroutine_threadsafe(self.node.flights.settle(), self.loop).result(20)

    def stop(self) -> None:
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.node.stop(1.0), self.loop).result(20)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture(params=["sendfile", "pread"])
def sender(request: pytest.FixtureRequest) -> str:
    """Every disk-serving test runs twice: zero-copy sendfile and the pread + write fallback."""
    return str(request.param)


@pytest.fixture
def make_edge(tmp_path: Path) -> Iterator[Any]:
    edges: list[EdgeThread] = []

    def make(origin_url: str, cache_dir: Path | None = None, **sections: dict[str, Any]
             ) -> EdgeThread:
        cfg = edge_config(origin_url, cache_dir or tmp_path / f"cache{len(edges)}", **sections)
        e = EdgeThread(cfg)
        edges.append(e)
        return e

    yield make
    for e in edges:
        e.stop()


@pytest.fixture
async def client() -> Any:
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        yield s


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def cache(self) -> str:
        return self.headers.get("cache-status", "")


async def fetch(session: aiohttp.ClientSession, url: str, method: str = "GET",
                headers: dict[str, str] | None = None, data: bytes | None = None) -> Resp:
    async with session.request(method, url, headers=headers or {}, data=data,
                               allow_redirects=False) as r:
        body = await r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.headers.items()}, body)


# ---- edges as real processes -------------------------------------------------------------
_READY = re.compile(r"(?=edge \S+ worker \d+ pid \d+ ready on )")


class EdgeProcess:
    def __init__(self, args: list[str], env: dict[str, str] | None = None,
                 prefix: tuple[str, ...] = ()) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "edgecdn.cli", "edge", *args],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})}, text=True, start_new_session=True,
        )
        self.lines: list[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def ready_lines(self) -> list[str]:
        """One entry per worker's ready message (two workers' messages can share a line: a
        print writes its text and its newline separately)."""
        return [m for x in self.lines for m in _READY.split(x) if " ready on " in m]

    def wait_ready(self, n: int = 1, timeout: float = 30.0) -> list[str]:
        """Block until n 'ready on' lines in all (one per worker start) were printed."""
        with self._cv:
            ok = self._cv.wait_for(
                lambda: len(self.ready_lines()) >= n or self.proc.poll() is not None, timeout)
            if not ok or len(self.ready_lines()) < n:
                raise RuntimeError(f"edge did not start: {self.lines}")
            return self.ready_lines()

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def term(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.kill9()
            return -9


@pytest.fixture
def edge_procs() -> Iterator[list[EdgeProcess]]:
    procs: list[EdgeProcess] = []
    yield procs
    for p in procs:
        if p.proc.poll() is None:
            try:
                os.killpg(p.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.proc.wait(10)
