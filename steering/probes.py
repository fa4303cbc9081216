"""Active health probes: GET <edge>/healthz for every edge, every ``probe_interval`` seconds.

Each edge has its own task on a fixed schedule (offset so 200 edges do not all fire at
once) and a short timeout, so a hung edge is a failure after ``probe_timeout`` rather than
after the next probe. A report counts only if it validates (``EdgeReport.from_dict``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable

import aiohttp

from contracts.fleet import Edge
from contracts.reports import EdgeReport, ReportError
from steering.health import report_load
from steering.probe_client import HttpProbe, ProbeError
from steering.service import Steering


def judge(status: int, body: bytes, edge: Edge) -> tuple[bool, float, str]:
    """(ok, load, error) from a /healthz answer."""
    if status not in (200, 503):
        return False, 0.0, f"status {status}"
    try:
        report = EdgeReport.from_dict(json.loads(body))
    except (ValueError, ReportError) as e:
        return False, 0.0, f"bad report: {e}"[:200]
    if report.status == "starting":
        return False, 0.0, "edge starting"
    if status == 503 and report.status != "draining":
        return False, 0.0, "status 503"
    return True, report_load(report, edge.capacity_bytes_per_s), ""


async def probe_aiohttp(session: aiohttp.ClientSession, edge: Edge,
                        timeout: float) -> tuple[bool, float, str]:
    """The https path (and any edge the lean client cannot reach)."""
    try:
        async with session.get(edge.url + "/healthz",
                               timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        return False, 0.0, type(e).__name__ + (f": {e}" if str(e) else "")
    return judge(status, body, edge)


async def probe_lean(client: HttpProbe, edge: Edge, timeout: float) -> tuple[bool, float, str]:
    try:
        status, body = await client.get(timeout)
    except (OSError, TimeoutError, ProbeError) as e:
        return False, 0.0, type(e).__name__ + (f": {e}" if str(e) else "")
    return judge(status, body, edge)


GROUPS = 10  # probe batches per interval


class Prober:
    """Probes run on their own event loop in a thread, so a busy serving loop (a burst of
    first-sight CloudFront RSA signatures, a flood of requests) cannot make healthy edges
    miss their probe timeout; results are applied on the serving loop in arrival order."""

    def __init__(self, steering: Steering, clock: Callable[[], float] = time.time) -> None:
        self.steering = steering
        self.clock = clock
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None
        self._lean: dict[str, HttpProbe] = {}
        for e in steering.edges.values():
            if e.url.startswith("http://"):
                self._lean[e.name] = HttpProbe(e.url)
        self._main: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _deliver(self, results: list[tuple[str, bool, float, str, float]]) -> None:
        """Hand one batch of results to the serving loop (one cross-thread wake-up)."""
        assert self._main is not None
        now = self.clock()
        self._main.call_soon_threadsafe(self._apply, results, now)

    def _apply(self, results: list[tuple[str, bool, float, str, float]], now: float) -> None:
        for edge, ok, load, err, latency in results:  # on the serving loop
            self.steering.on_probe(edge, ok=ok, load=load, now=now, error=err,
                                   latency_s=latency)

    async def _probe(self, edge: Edge) -> tuple[str, bool, float, str, float]:
        assert self._session is not None
        t0 = time.perf_counter()
        timeout = self.steering.settings.probe_timeout
        lean = self._lean.get(edge.name)
        try:
            if lean is not None:
                ok, load, err = await probe_lean(lean, edge, timeout)
            else:
                ok, load, err = await probe_aiohttp(self._session, edge, timeout)
        except Exception as e:  # a bug in one probe must not stop the others
            ok, load, err = False, 0.0, f"probe error: {e!r}"[:200]
        return edge.name, ok, load, err, time.perf_counter() - t0

    async def _probe_group(self, edges: list[Edge]) -> None:
        self._deliver(list(await asyncio.gather(*(self._probe(e) for e in edges))))

    async def start(self) -> None:
        """Start the probe thread; returns after the first round's results are applied."""
        self._main = asyncio.get_running_loop()
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="steering-probes",
                                        daemon=True)
        self._thread.start()
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._begin(), self._loop))
        self.steering.capacity_started = True

    async def _begin(self) -> None:  # on the probe loop
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60, force_close=False),
            headers={"User-Agent": "edgecdn-steering-probe"})
        edges = list(self.steering.edges.values())
        await self._probe_group(edges)
        # GROUPS batches per interval, evenly offset: each edge is still probed every
        # interval, with a tenth of the wake-ups and cross-thread hand-offs of one per edge
        interval = self.steering.settings.probe_interval
        n = min(GROUPS, len(edges))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(n):
            group = edges[i::n]
            offset = interval * i / n
            self._tasks.append(asyncio.create_task(self._every(group, t0 + offset, interval)))

    async def _every(self, group: list[Edge], first: float, interval: float) -> None:
        loop = asyncio.get_running_loop()
        nxt = first + interval
        while True:
            await asyncio.sleep(max(0.0, nxt - loop.time()))
            nxt += interval
            await self._probe_group(group)
            now = loop.time()
            if nxt < now:  # fell behind: skip missed slots, keep the cadence
                nxt = now + interval - ((now - nxt) % interval)

    async def _end(self) -> None:  # on the probe loop
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        for c in self._lean.values():
            c.close()
        if self._session is not None:
            await self._session.close()

    async def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self._end(), self._loop)), 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 5)
        self._loop.close()
        self._loop = self._thread = None


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()
