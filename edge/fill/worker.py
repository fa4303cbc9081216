"""The fill worker: makes this edge hold what its manifest says, off-peak, peers first.

One pass walks the manifest in rank order. For each object it asks the store which chunks
are missing; if any, it fetches them - from a peer edge of the same site first (a GET with
``X-Edgecdn-Peer-Fill: 1`` and ``Cache-Control: only-if-cached``: the peer answers from its
cache or with 404/504 and never goes to its origin), then from the origin - and writes them
through the store's chunk writers. So:

- a chunk becomes visible only by ``ChunkWriter.commit`` (temp file, length check, rename):
  an interrupted fill (stop, kill -9, origin fault) leaves no partial chunk, and the next
  pass fetches exactly the chunks still missing, with a Range request;
- every byte read passes the token bucket (the bandwidth cap);
- between chunks the worker checks the window, ``stop()`` and the serving load, and pauses
  (with backoff) while serving is busy;
- entries are pinned in the store by rank (chunk keys, rank 0 = top) when a manifest is
  applied, and unpinned when they leave the manifest (they become ordinary cache content);
- the chunks a request is about to bring are claimed as flights in the edge's flight table
  (``Flights.claim``): a client that misses one meanwhile reads along instead of asking the
  origin again, and the fill skips chunks a client's flight is already fetching. Once a
  client reads a claimed chunk, the bandwidth cap is lifted for the rest of that request
  (its bytes would have come at full speed anyway); a fill that stops leaves its claimed
  chunks to the waiting clients, who fetch them themselves (``FlightAbandoned``).
  With ``--workers N`` this covers the fill's worker's clients and every chunk that worker
  owns (the others ask it for those); a client of another worker missing a chunk that its
  own worker owns still has it fetched from the origin.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.keys import ContentKey, chunk_key
from contracts.manifest import Manifest, ManifestEntry, ManifestError, edge_manifest_key
from contracts.placement import edges_for
from contracts.tokens import sign, token_query
from edge.config import OriginConfig, parse_origin_url
from edge.fill.bucket import TokenBucket
from edge.fill.config import PEER_FILL_HEADER, FillConfig
from edge.fill.source import ManifestSource, S3ManifestSource
from edge.fill.window import local_day_seconds
from edge.flights import ChunkFlight, Flights, fkey, stored_fields
from edge.http.cachekey import object_key
from edge.http.model import StoredResponse
from edge.http.storage import headers_to_store
from edge.origin_client import HttpOrigin, Origin, OriginError, OriginResponse
from edge.store.fsio import DiskFull
from edge.store.meta import ObjectMeta

log = logging.getLogger(__name__)

NOT_HELD = frozenset({403, 404, 410, 416, 504})  # a peer that answers these lacks the object
MAX_PEERS = 3
RUN_BYTES = 16 * 1024 * 1024  # the most one fill request asks for, so a client that joins a
# claimed chunk waits behind at most this much of the fill's stream
FILL_SHARE = 0.95  # of the disk tier that manifest objects may take


class SourceMissing(Exception):
    """This source does not have the object (peer cache miss, origin 404)."""


def _check_peer_copy(e: ManifestEntry, size: int, etag: str | None) -> None:
    """A peer's copy is taken only if it is the version the manifest names: its size, and its
    ETag when the manifest has one (else SourceMissing: the next source is asked). The origin
    is the truth: what it holds now is filled even if it changed since the plan."""
    if size != e.size:
        raise SourceMissing(f"peer holds {size} bytes, the manifest {e.size}")
    if e.etag is not None and _bare(etag) != e.etag:
        raise SourceMissing(f"peer holds ETag {etag}, the manifest {e.etag}")


class SourceFailed(Exception):
    """This source failed mid-way (connection, short body, bad answer)."""


class ObjectChanged(Exception):
    """The source's copy has another version than the chunks already stored."""


class Interrupted(Exception):
    """stop(), the window closed: leave the rest of the object for the next pass."""


@dataclass(slots=True)
class _Source:
    name: str  # "origin" or the peer edge's name
    kind: str  # "origin" | "peer"
    client: Origin


class FillWorker:
    def __init__(self, store: Any, origin: Origin, cfg: FillConfig, *, edge: str, site: str,
                 load: Callable[[], float] | None = None,
                 peers: dict[str, str] | None = None,
                 source: ManifestSource | None = None,
                 state_dir: Path | None = None,
                 token: tuple[str, bytes] | None = None,
                 fetch: bool = True,
                 clock: Callable[[], float] = time.time,
                 ca_file: str | None = None,
                 flights: Flights | None = None) -> None:
        """store: edge.store.Store; origin: the edge's origin client (edge.origin_client);
        load(): serving load 0..1 (egress/capacity) - fill pauses above cfg.busy_load;
        peers: name -> base URL, overriding the manifest's; token: (kid, secret) to sign
        peer requests when peers require steering tokens; state_dir keeps the last good
        manifest (default: none); fetch=False only follows the manifest's pins (for the other
        worker processes of a multi-worker edge: each pins the chunk keys it owns, while one
        worker fetches); ca_file: trusted for an https manifest endpoint (origin.ca_file);
        flights: the serving process's flight table, shared with client misses."""
        self.store, self.origin, self.cfg = store, origin, cfg
        self.flights = flights
        self.edge, self.site = edge, site
        self.load = load or (lambda: 0.0)
        self.clock = clock
        self.token = token
        self.fetch = fetch
        self._peer_override = peers
        if source is None:
            bucket, prefix = cfg.manifests_location
            cache = state_dir / "manifest.json" if state_dir else None
            source = S3ManifestSource(bucket, edge_manifest_key(prefix, site, edge),
                                      cfg.endpoint_url, cfg.region, cache, ca_file)
        self.source = source
        self.bucket = TokenBucket(cfg.rate)
        self.manifest: Manifest | None = None
        self._pins: set[str] = set()
        self._accepted: dict[str, str] = {}  # key -> version this worker filled (even if it
        # differs from the manifest's size/ETag: the source's copy is the truth until re-plan)
        self._peers: dict[str, _Source] = {}
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._running = False
        self._pass_task: asyncio.Future[None] | None = None
        self._next_refresh = 0.0
        self._retry_at = 0.0
        # progress and counters (status())
        self.state = "idle" if cfg.enabled else "disabled"
        self.bytes_by_source = {"peer": 0, "origin": 0}
        self.objects_by_source = {"peer": 0, "origin": 0}
        self.requests_by_source = {"peer": 0, "origin": 0}
        self.peer_misses = 0
        self.errors = 0
        self.last_error = ""
        self.passes = 0
        self.last_pass_at: float | None = None
        self.objects_total = self.objects_present = 0
        self.bytes_total = self.bytes_present = 0
        self.chunks_committed = 0
        self.busy_pauses = 0
        self.over_capacity = 0  # manifest objects left out: the disk tier is too small
        self.pass_seconds = 0.0  # the last pass: wall time and bytes fetched
        self.pass_bytes = 0
        self.pass_finished = asyncio.Event()  # set after each pass (tests, admin tools)
        self.manifest_applied = asyncio.Event()  # set whenever a new manifest is adopted
        self._rate_window: list[tuple[float, int]] = []

    # -- life cycle -----------------------------------------------------------------------
    async def run(self) -> None:
        """Fill until stop(): refresh the manifest, fill during the window, sleep otherwise."""
        if not self.cfg.enabled:
            self.state = "disabled"
            return
        self._running = True
        self._stop.clear()
        try:
            if self.manifest is None and isinstance(self.source, S3ManifestSource):
                cached = self.source.load_cached()
                if cached is not None:
                    self._apply(cached)
            while not self._stop.is_set():
                await self._refresh_if_due()
                wait = self.cfg.refresh
                now = self.clock()
                if self.manifest is not None and not self.fetch:
                    self.state = "pins only"
                elif self.manifest is not None:
                    until_open = self.cfg.window.seconds_until_open(local_day_seconds(now))
                    if until_open > 0:
                        self.state = "waiting"
                        wait = min(wait, until_open)
                    elif now >= self._retry_at:
                        self._pass_task = task = asyncio.ensure_future(self._pass())
                        await asyncio.wait({task})
                        if not task.cancelled() and task.exception() is not None:
                            exc = task.exception()  # a bug or a store fault: never fatal
                            self.state = "error"
                            self._error(f"fill pass failed: {type(exc).__name__}: {exc}")
                        if self._stop.is_set():
                            break
                        if self.objects_present < self.objects_total:
                            self._retry_at = self.clock() + self.cfg.retry
                            wait = min(wait, self.cfg.retry)
                    else:
                        wait = min(wait, self._retry_at - now)
                wait = max(0.05, min(wait, self._next_refresh - self.clock()))
                await self._sleep(wait)
        finally:
            task = self._pass_task
            if task is not None and not task.done():  # run() itself was cancelled
                task.cancel()
                await asyncio.wait({task})
            self._running = False
            if self.state not in ("disabled",):
                self.state = "stopped"
            await self._close_peers()

    async def stop(self, grace: float = 2.0) -> None:
        """Make run() return: at the next chunk boundary, or after grace seconds by cancelling
        the pass. A chunk being fetched is aborted (never half-committed)."""
        self._stop.set()
        self._wake.set()
        task = self._pass_task
        if task is not None and not task.done():
            done, _ = await asyncio.wait({task}, timeout=grace)
            if not done:
                task.cancel()
                await asyncio.wait({task})

    def wake(self) -> None:
        """Refresh the manifest now (e.g. an admin poke)."""
        self._next_refresh = 0.0
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    # -- manifest -------------------------------------------------------------------------
    async def _refresh_if_due(self) -> None:
        if self.clock() < self._next_refresh:
            return
        self._next_refresh = self.clock() + self.cfg.refresh
        try:
            m = await self.source.fetch()
        except ManifestError as e:
            self._error(f"bad manifest at {self.source.where}: {e}")
            return
        except Exception as e:  # S3 down: keep the last good manifest
            self._error(f"manifest fetch failed: {type(e).__name__}: {e}")
            return
        if m is not None:
            if m.edge not in (None, self.edge) or m.site != self.site:
                self._error(f"manifest is for {m.site}/{m.edge}, not {self.site}/{self.edge}")
                return
            if m.edge is None:  # a site manifest: this edge's share of it
                m = m.for_edge(self.edge, {k: v for k, v in m.peers.items() if k != self.edge})
            self._apply(m)
            self._retry_at = 0.0

    def _apply(self, m: Manifest) -> None:
        """Adopt a validated manifest: pins follow it, progress restarts. Entries beyond what
        this edge's disk tier can hold (FILL_SHARE of it, in rank order) are left out, so a
        manifest planned for a bigger disk never makes the fill evict what it just filled."""
        room = int(FILL_SHARE * self.store.cfg.disk_bytes)
        kept, used = [], 0
        for e in m.entries:
            if used + e.size <= room:
                kept.append(e)
                used += e.size
        self.over_capacity = len(m.entries) - len(kept)
        if self.over_capacity:
            log.warning("fill: %d manifest objects do not fit this edge's disk tier",
                        self.over_capacity)
            m = dataclasses.replace(m, entries=kept)
        cs = self.store.cfg.chunk_size
        owns = getattr(self.store.cfg, "owns", None)
        pins: dict[str, int] = {}
        for e in m.entries:
            key = object_key(e.path, "")
            for i in range(max(1, math.ceil(e.size / cs)) if e.size else 0):
                ck = chunk_key(key, i)
                if owns is None or owns(ck):
                    pins[ck] = e.rank - 1
        for ck in self._pins - pins.keys():
            self.store.unpin(ck)
        for ck, rank in pins.items():
            self.store.pin(ck, rank)
        self._pins = set(pins)
        keys = {object_key(e.path, "") for e in m.entries}
        self._accepted = {k: v for k, v in self._accepted.items() if k in keys}
        self.manifest = m
        self.manifest_applied.set()
        self.objects_total = len(m.entries)
        self.bytes_total = sum(e.size for e in m.entries)
        self._set_peers(self._peer_override if self._peer_override is not None else m.peers)
        log.info("fill manifest: %d objects, %d bytes, generated %.0f", self.objects_total,
                 self.bytes_total, m.generated_at)

    def _set_peers(self, peers: dict[str, str]) -> None:
        for name in list(self._peers):
            if name not in peers:
                old = self._peers.pop(name)
                asyncio.get_running_loop().create_task(old.client.close())
        t = self.cfg.peer_timeout
        for name, url in peers.items():
            if name == self.edge or name in self._peers:
                continue
            kind, base, prefix = parse_origin_url(url)
            ocfg = OriginConfig(url=url, kind="http", bucket=base, prefix=prefix,
                                connect_timeout=t, first_byte_timeout=t, read_timeout=t,
                                default_ttl=0, max_connections=8)
            self._peers[name] = _Source(name, "peer", HttpOrigin(ocfg))

    async def _close_peers(self) -> None:
        for p in self._peers.values():
            await p.client.close()
        self._peers.clear()

    # -- one pass ---------------------------------------------------------------------------
    def _window_open(self) -> bool:
        return self.cfg.window.is_open(local_day_seconds(self.clock()))

    async def _pass(self) -> None:
        m = self.manifest
        assert m is not None
        self.state = "filling"
        self.passes += 1
        self.pass_finished.clear()
        t0, bytes0 = time.monotonic(), sum(self.bytes_by_source.values())
        todo, present_o, present_b = await asyncio.to_thread(self._scan, m)
        self.objects_present, self.bytes_present = present_o, present_b
        queue: asyncio.Queue[tuple[ManifestEntry, ObjectMeta | None, list[int]]] = asyncio.Queue()
        for item in todo:
            queue.put_nowait(item)
        halted = asyncio.Event()

        async def worker() -> None:
            while not queue.empty() and not halted.is_set():
                e, meta, missing = queue.get_nowait()
                if not await self._ready():
                    halted.set()
                    return
                try:
                    await self._fill_object(e, meta, missing)
                except Interrupted:
                    halted.set()
                    return
                except DiskFull as exc:
                    self._error(f"disk full: {exc}")
                    halted.set()
                    return

        n = min(self.cfg.concurrency, max(1, len(todo)))
        await asyncio.gather(*(worker() for _ in range(n)))
        self.last_pass_at = self.clock()
        self.pass_seconds = time.monotonic() - t0
        self.pass_bytes = sum(self.bytes_by_source.values()) - bytes0
        self.pass_finished.set()
        if self._stop.is_set():
            return
        if not self._window_open():
            self.state = "waiting"
        elif self.objects_present == self.objects_total:
            self.state = "complete"
        elif halted.is_set() and self.store.disk_full:
            self.state = "disk full"
        else:
            self.state = "retrying"

    def _scan(self, m: Manifest) -> tuple[list[tuple[ManifestEntry, ObjectMeta | None,
                                                      list[int]]], int, int]:
        """What is missing, in rank order (a thread: an index miss may check the disk)."""
        todo = []
        present_o = present_b = 0
        for e in m.entries:
            meta, missing = self._missing(object_key(e.path, ""), e)
            if not missing:
                present_o += 1
                present_b += e.size
            else:
                todo.append((e, meta, missing))
        return todo, present_o, present_b

    def _missing(self, key: str, e: ManifestEntry) -> tuple[ObjectMeta | None, list[int]]:
        meta = self.store.get_meta(key)
        if meta is not None and self._accepted.get(key) != meta.version and (
                meta.soft_purged or meta.status != 200 or meta.vary or meta.size != e.size
                or (e.etag and _bare(meta.etag) not in (None, e.etag))):
            meta = None  # refetch whole: stale mark, a variant, or another version
        if meta is None:
            return None, list(range(max(1, math.ceil(e.size / self.store.cfg.chunk_size))))
        missing = [i for i in range(self.store.chunk_count(meta))
                   if self.store.get_chunk(meta, i) is None]
        return meta, missing

    async def _ready(self) -> bool:
        """False when fill must stop for now; waits (backing off) while serving is busy."""
        backoff = 0.25
        while True:
            if self._stop.is_set() or not self._window_open():
                return False
            if self.load() <= self.cfg.busy_load:
                if self.state == "paused":
                    self.state = "filling"
                return True
            if self.state != "paused":
                self.busy_pauses += 1
            self.state = "paused"
            await self._sleep(backoff)
            backoff = min(backoff * 2, 8.0)

    def _sources(self, path: str) -> list[_Source]:
        names = edges_for(path, list(self._peers))[:MAX_PEERS]
        return [self._peers[n] for n in names] + [_Source("origin", "origin", self.origin)]

    async def _fill_object(self, e: ManifestEntry, meta: ObjectMeta | None,
                           missing: list[int]) -> None:
        key = object_key(e.path, "")
        errors = []
        for src in self._sources(e.path):
            for _attempt in range(2):  # a second go when the object changed under us
                try:
                    got = await self._fetch(src, e, key, meta, missing)
                except ObjectChanged:
                    meta, missing = None, list(range(max(1, math.ceil(
                        e.size / self.store.cfg.chunk_size))))
                    continue
                except SourceMissing as exc:
                    if src.kind == "peer":
                        self.peer_misses += 1
                    errors.append(f"{src.name}: {exc}")
                    break
                except (SourceFailed, OriginError) as exc:
                    errors.append(f"{src.name}: {exc}")
                    break
                fresh = self.store.get_meta(key)
                if fresh is not None:  # what the source has is what we keep: no refetch loop
                    self._accepted[key] = fresh.version
                self.objects_by_source[src.kind] += 1
                self.objects_present += 1
                self.bytes_present += e.size
                log.debug("filled %s from %s (%d bytes)", e.path, src.name, got)
                return
        if errors:
            self._error(f"{e.path}: " + "; ".join(errors[-2:]))

    def _request_headers(self, src: _Source, rng: tuple[int, int] | None) -> dict[str, str]:
        h: dict[str, str] = {}
        if src.kind == "peer":
            h[PEER_FILL_HEADER] = "1"
            h["cache-control"] = "only-if-cached"
        if rng is not None:
            h["range"] = f"bytes={rng[0]}-{rng[1] - 1}"
        return h

    def _query(self, src: _Source, path: str) -> str:
        if src.kind != "peer" or self.token is None:
            return ""
        kid, secret = self.token
        return token_query(sign(secret, kid, ContentKey.parse(path).title_prefix,
                                int(self.clock()) + 300))

    async def _fetch(self, src: _Source, e: ManifestEntry, key: str, meta: ObjectMeta | None,
                     missing: list[int]) -> int:
        """Fetch the missing chunks from src, in runs of at most RUN_BYTES; returns bytes
        written. Raises SourceMissing, SourceFailed, ObjectChanged, Interrupted."""
        total = 0
        cs = self.store.cfg.chunk_size
        per = max(1, RUN_BYTES // cs)
        pending = sorted(missing)
        others: list[ChunkFlight] = []  # chunks client misses were fetching
        while pending:
            if meta is not None:
                pending = self._unclaimed(meta, pending, others)
                if not pending:
                    break
            first = last = pending[0]
            for i in pending[1:]:
                if i != last + 1 or last - first + 1 >= per:
                    break
                last = i
            size = e.size if meta is None else meta.size
            if meta is None and last + 1 >= math.ceil(size / cs):
                rng = None  # an object not seen yet that fits one run: one plain GET
            else:
                rng = (first * cs, min(size, (last + 1) * cs))
            self.requests_by_source[src.kind] += 1
            t_req = self.clock()
            resp = await src.client.fetch("GET", e.path, self._query(src, e.path),
                                          self._request_headers(src, rng))
            try:
                t_resp = self.clock()
                if resp.status in NOT_HELD or (src.kind == "origin" and resp.status == 404):
                    raise SourceMissing(f"HTTP {resp.status}")
                start, size = _span(resp, rng)
                if src.kind != "origin":
                    _check_peer_copy(e, size, resp.headers.get("etag"))
                got = _meta_from(key, size, resp, t_req, t_resp)
                if meta is None:
                    await asyncio.to_thread(self.store.put_meta, got)
                    meta = got
                elif got.version != meta.version:
                    raise ObjectChanged()
                end = size if rng is None or resp.status == 200 else min(size, rng[1])
                run = range(first, min(last, (end - 1) // cs) + 1) if end > start else range(0)
                total += await self._stream(src, resp, meta, start, end, set(pending), run)
            finally:
                resp.close()
            pending = [i for i in pending if i > last]
        for fl in others:  # the object is here once the clients' fetches are
            if not await fl.settled():
                raise SourceFailed(f"a client's fetch of {fl.key} failed")
        return total

    def _unclaimed(self, meta: ObjectMeta, chunks: list[int],
                   others: list[ChunkFlight]) -> list[int]:
        """Those of chunks still absent and not being fetched; in-flight ones go to others."""
        out = []
        for i in chunks:
            fl = None if self.flights is None else self.flights.chunks.get(fkey(meta, i))
            if fl is not None:
                others.append(fl)
            elif self.store.get_chunk(meta, i) is None:
                out.append(i)
        return out

    async def _stream(self, src: _Source, resp: OriginResponse, meta: ObjectMeta, start: int,
                      end: int, want: set[int], run: range) -> int:
        """Body bytes [start, end) -> chunk writers and the claimed flights of the chunks
        wanted; commits whole chunks only. The run's chunks are claimed before the first byte,
        any others a longer body (a 200) brings as it reaches them."""
        store = self.store
        fls = self.flights
        cs = store.cfg.chunk_size
        claimed: dict[int, ChunkFlight] = {}

        def claim(i: int) -> None:
            """Chunk i's flight for this request, or out of want: someone else fetches it."""
            fl = fls.claim(meta, i)  # type: ignore[union-attr]
            if fl is None:
                want.discard(i)
            else:
                claimed[i] = fl

        if fls is not None:
            for i in run:
                if i in want:
                    claim(i)
        offset = start
        writer = None
        try:
            async for piece in resp.iter_body():
                mv = memoryview(piece)
                while mv:
                    if offset >= end:
                        raise SourceFailed("body longer than announced")
                    index = offset // cs
                    c_end = min(meta.size, (index + 1) * cs)
                    n = min(len(mv), c_end - offset)
                    if index in want:
                        if writer is None:
                            if fls is not None and index not in claimed:
                                claim(index)
                            if index in want:
                                writer = store.new_writer(meta, index)
                        if writer is not None:
                            writer.write(mv[:n])
                            fl = claimed.get(index)
                            if fl is not None:
                                fl.feed(mv[:n])
                    offset += n
                    mv = mv[n:]
                    if offset == c_end and writer is not None:
                        w, writer = writer, None
                        fl = claimed.pop(index, None)
                        if fl is not None:
                            fl.finish()  # its readers have every byte; visible once committed
                        try:
                            ok = await asyncio.to_thread(w.commit)
                        finally:
                            if fl is not None:
                                fls.release(fl)  # type: ignore[union-attr]
                        if not ok:
                            raise SourceFailed(f"chunk {index} did not commit")
                        self.chunks_committed += 1
                        if offset >= end:
                            break
                    if offset == c_end and (self._stop.is_set() or not self._window_open()):
                        raise Interrupted()
                joined = any(fl.joined for fl in claimed.values())
                await self._account(src, len(piece), capped=not joined)
                if offset >= end:
                    break
            if offset < end:
                raise SourceFailed(f"short body: {offset - start} of {end - start} bytes")
        except OriginError as exc:
            raise SourceFailed(str(exc)) from exc
        finally:
            if writer is not None:
                writer.abort()
            for fl in claimed.values():  # not whole: their readers fetch them themselves
                fls.release(fl)  # type: ignore[union-attr]
        return offset - start

    async def _account(self, src: _Source, n: int, capped: bool = True) -> None:
        self.bytes_by_source[src.kind] += n
        now = time.monotonic()
        self._rate_window.append((now, n))
        if len(self._rate_window) > 256:
            del self._rate_window[:128]
        if capped:
            await self.bucket.take(n)

    def _error(self, msg: str) -> None:
        self.errors += 1
        self.last_error = msg
        log.warning("fill: %s", msg)

    # -- reporting --------------------------------------------------------------------------
    def rate_bps(self) -> float:
        w = [x for x in self._rate_window if x[0] > time.monotonic() - 5.0]
        if len(w) < 2:
            return 0.0
        span = max(1e-3, w[-1][0] - w[0][0])
        return sum(n for _, n in w[1:]) / span

    def status(self) -> dict[str, Any]:
        """What /healthz (EdgeReport.fill) and /metrics show about the fill."""
        m = self.manifest
        return {
            "enabled": self.cfg.enabled,
            "state": self.state,
            "window": self.cfg.window.spec,
            "window_open": self._window_open(),
            "rate_limit_bps": self.cfg.rate,
            "rate_bps": round(self.rate_bps(), 1),
            "manifest": None if m is None else {
                "source": self.source.where, "generated_at": m.generated_at,
                "entries": len(m.entries), "bytes": self.bytes_total,
            },
            "objects_total": self.objects_total,
            "objects_present": self.objects_present,
            "bytes_total": self.bytes_total,
            "bytes_present": self.bytes_present,
            "progress": round(self.bytes_present / self.bytes_total, 4) if self.bytes_total
            else (1.0 if m is not None else 0.0),
            "bytes_by_source": dict(self.bytes_by_source),
            "objects_by_source": dict(self.objects_by_source),
            "requests_by_source": dict(self.requests_by_source),
            "peer_misses": self.peer_misses,
            "chunks_committed": self.chunks_committed,
            "pinned_chunks": len(self._pins),
            "over_capacity": self.over_capacity,
            "busy_pauses": self.busy_pauses,
            "passes": self.passes,
            "last_pass_seconds": round(self.pass_seconds, 3),
            "last_pass_bytes": self.pass_bytes,
            "last_pass_at": self.last_pass_at,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def metric_samples(self) -> list[tuple[str, dict[str, str], float]]:
        """(name, labels, value) for Prometheus; names are edgecdn_fill_*."""
        s = self.status()
        out: list[tuple[str, dict[str, str], float]] = [
            ("edgecdn_fill_bytes_total", {"source": k}, float(v))
            for k, v in s["bytes_by_source"].items()
        ]
        out += [("edgecdn_fill_objects_total", {"source": k}, float(v))
                for k, v in s["objects_by_source"].items()]
        out += [("edgecdn_fill_requests_total", {"source": k}, float(v))
                for k, v in s["requests_by_source"].items()]
        out += [
            ("edgecdn_fill_manifest_objects", {}, float(s["objects_total"])),
            ("edgecdn_fill_manifest_bytes", {}, float(s["bytes_total"])),
            ("edgecdn_fill_present_objects", {}, float(s["objects_present"])),
            ("edgecdn_fill_present_bytes", {}, float(s["bytes_present"])),
            ("edgecdn_fill_peer_misses_total", {}, float(s["peer_misses"])),
            ("edgecdn_fill_errors_total", {}, float(s["errors"])),
            ("edgecdn_fill_window_open", {}, 1.0 if s["window_open"] else 0.0),
            ("edgecdn_fill_rate_limit_bytes_per_second", {}, float(s["rate_limit_bps"])),
        ]
        return out


def _bare(etag: str | None) -> str | None:
    if etag is None:
        return None
    e = etag[2:] if etag.startswith("W/") else etag
    return e.strip('"')


def _span(resp: OriginResponse, rng: tuple[int, int] | None) -> tuple[int, int]:
    """(first byte offset of the body, full object size) of a 200/206 answer."""
    if resp.status == 200:
        size = resp.content_length
        if size is None:
            raise SourceFailed("no Content-Length")
        return 0, size
    if resp.status == 206 and rng is not None:
        cr = resp.headers.get("content-range", "")
        try:
            unit, _, rest = cr.partition(" ")
            span, _, total = rest.partition("/")
            a, _, b = span.partition("-")
            start, last, size = int(a), int(b), int(total)
        except ValueError as e:
            raise SourceFailed(f"bad Content-Range {cr!r}") from e
        if unit != "bytes" or start != rng[0] or last + 1 != min(rng[1], size):
            raise SourceFailed(f"unexpected Content-Range {cr!r}")
        return start, size
    raise SourceFailed(f"HTTP {resp.status}")


def _meta_from(key: str, size: int, resp: OriginResponse, t_req: float,
               t_resp: float) -> ObjectMeta:
    headers = {k: v for k, v in stored_fields(headers_to_store(resp.headers, t_resp)).items()
               if not k.startswith("x-edgecdn-")}  # (a peer's Age is kept: the copy is that old)
    return ObjectMeta.from_stored(key, size, StoredResponse(200, headers, t_req, t_resp))
