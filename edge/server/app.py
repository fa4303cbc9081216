"""What the edge answers: routing, the cache decision, and the response for each outcome.

``handle`` is synchronous: a fresh hit whose chunks are all stored is answered without a single
await (parse -> key -> index -> memory bytes or sendfile). Everything that has to wait (a
miss, a revalidation, a pass-through, a slow client) continues in a task. The rules
(freshness, preconditions, ranges, Vary, storability) are edge.http's pure functions; this
file only gathers their inputs and acts on their answers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from contracts.keys import BadPath, normalize_path
from contracts.tokens import TOKEN_PARAM, TokenResult, verify
from edge.config import EdgeConfig
from edge.fill.config import PEER_FILL_HEADER
from edge.flights import (
    META_HEADER,
    PEER_HEADER,
    Flights,
    HeadKind,
    HeadResult,
    fkey,
    meta_header_value,
    stored_of,
)
from edge.http.cachecontrol import parse_cache_control
from edge.http.cachekey import object_key, vary_matches
from edge.http.cachestatus import append_cache_status, cache_status, upstream_members
from edge.http.conditional import Precondition, evaluate_preconditions, if_range_ok
from edge.http.dates import format_http_date, parse_http_date
from edge.http.freshness import (
    Freshness,
    current_age,
    evaluate,
    freshness_lifetime,
    stale_if_error_allowed,
)
from edge.http.ranges import (
    RangeKind,
    content_range,
    multipart_plan,
    parse_range,
    unsatisfied_range,
)
from edge.origin_client.base import Origin
from edge.server.fdcache import FdCache
from edge.server.hot import HotEntry, HotPath
from edge.server.negative import NegativeCache
from edge.server.passthrough import NO_BODY_STATUS, PASS_DROP, PassThrough
from edge.server.protocol import (
    CLOSE,
    HOT_BLOCKERS,
    KEEP_ALIVE_10,
    HttpConnection,
    Request,
    status_line,
)
from edge.server.remote_hits import HITS_PATH, RemoteHits
from edge.server.sender import BodySender
from edge.server.streamed import COMPUTED as _COMPUTED
from edge.server.streamed import StreamAnswers
from edge.store.meta import ObjectMeta
from edge.store.refs import ChunkRef
from edge.variants import POINTER, resolve

log = logging.getLogger("edge.app")

BOUNDARY = "edgecdn-byteranges-7f3a9c"
PEER_STREAM_TRIES = 16  # rounds a waiter asks the owner worker for its stream again
# request headers that need the general path (conditionals, ranges, client cache directives,
# credentials, peer requests)
assert PEER_FILL_HEADER in HOT_BLOCKERS and PEER_HEADER in HOT_BLOCKERS


@dataclass(slots=True)
class Counters:
    """Plain integers bumped on the hot path; metrics/healthz read them off the hot path."""

    requests: int = 0
    content_requests: int = 0
    hits: int = 0
    bytes_sent: int = 0
    active: int = 0


class MetaView:
    """Per-meta things computed once: the stored header block, lifetime, Last-Modified."""

    __slots__ = ("meta", "block", "lifetime", "lm", "ctype", "date", "age_at", "rt",
                 "plain_fresh", "cs", "owned", "upstream")

    def __init__(self, meta: ObjectMeta) -> None:
        self.meta = meta
        lines = [f"{k}: {v}\r\n" for k, v in meta.headers.items() if k not in _COMPUTED]
        self.block = "".join(lines).encode("latin-1", "replace")
        self.lifetime = freshness_lifetime(meta.headers, response_time=meta.response_time)
        self.lm = parse_http_date(meta.last_modified)
        self.ctype = meta.headers.get("content-type", meta.content_type)
        self.date = parse_http_date(meta.headers.get("date"))
        # current_age is linear in now: age(now) = age(response_time) + (now - response_time)
        self.rt = meta.response_time
        self.age_at = current_age(stored_of(meta), meta.response_time)
        cc = parse_cache_control(meta.headers.get("cache-control"))
        # a request without Cache-Control/Pragma may skip freshness.evaluate: FRESH iff
        # lifetime > age (same rule, decided once per stored response)
        self.plain_fresh = not (meta.soft_purged or cc.no_cache)
        self.cs: tuple[int, str] = (-1, "")
        self.owned: dict[int, bool] | None = None
        self.upstream = meta.headers.get("cache-status")  # upstream caches' members, stored

    def hit_status(self, ttl: float) -> str:
        t = int(ttl // 1)
        c = self.cs
        if c[0] == t:
            return c[1]
        v = cache_status(hit=True, ttl=ttl)
        self.cs = (t, v)
        return v


class EdgeApp(HotPath, BodySender, StreamAnswers, PassThrough, RemoteHits):
    def __init__(self, cfg: EdgeConfig, store: Any, origin: Origin, flights: Flights,
                 clock: Any = time.time) -> None:
        self.cfg = cfg
        self.limits = cfg.http
        self.store = store
        self.origin = origin
        self.flights = flights
        self.clock = clock
        self.cs = cfg.cache.chunk_size
        self.counters = Counters()
        self.by_cache: dict[str, int] = {}
        self.access: list[tuple[Any, ...]] = []
        self.use_sendfile = cfg.node.sendfile
        self.tokens = cfg.tokens.secrets if cfg.tokens.required else None
        self.hit_for_pass: dict[str, float] = {}
        self.negative = NegativeCache(cfg.origin.negative_ttl)
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        store.on_change = self._store_changed
        self._views: dict[int, MetaView] = {}
        self._paths: dict[str, str] = {}  # raw path -> normalized (memo for the hit path)
        self.hot: dict[str, HotEntry] = {}  # raw request target -> ready answer
        self.hot_bytes = 0
        # open chunk files for sendfile (see edge.server.fdcache)
        self.fds = FdCache(on_open=store.sent_unread)
        self.hot_touched: list[HotEntry] = []  # entries hit since the last flush_hot_hits
        self.hot_direct_hits = 0  # hot answers not yet counted (fold_hot_counts)
        self.hot_direct_bytes = 0  # their body bytes
        self.hot_max = min(64 * 1024**2, max(cfg.cache.memory_bytes // 4, 0))
        self._keys: dict[str, str] = {}  # normalized path -> cache key (no query)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.conns: set[HttpConnection] = set()
        self.ops: Any = None  # edge.server.ops.Ops, set by the node
        self.draining = False
        self.remote_hits: dict[tuple[str, int], int] = {}  # (chunk key, size) -> hits
        self.owns: Any = None  # chunk key -> bool in multi-worker mode

    # ---- connection bookkeeping ------------------------------------------------------------
    def conn_opened(self, conn: HttpConnection) -> None:
        self.counters.active += 1
        self.conns.add(conn)

    def conn_closed(self, conn: HttpConnection) -> None:
        self.counters.active -= 1
        self.conns.discard(conn)

    def _store_changed(self, key: str, prefix: bool) -> None:
        """The store's change hook (any thread): negative answers for key go, on the loop.
        Nothing to do (the common case: every stored miss calls this) costs no loop wakeup."""
        if not self.negative.entries:
            return
        if threading.get_ident() == self._loop_thread or self.loop.is_closed():
            self.negative.forget(key, prefix)
        else:
            self.loop.call_soon_threadsafe(self.negative.forget, key, prefix)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    def _spawn_req(self, conn: HttpConnection, req: Request, coro: Any) -> None:
        """A request's task; a bug in it ends that response (500 if nothing was sent yet,
        else the connection is cut) instead of leaving the client waiting."""
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                conn.abort()
                raise
            except Exception as e:
                log.exception("request failed: %s %s", req.method, req.target)
                if conn.busy and not conn.closed:
                    if not conn.head_sent:
                        self.simple(conn, req, 500, f"internal error: {type(e).__name__}",
                                    "error")
                    else:
                        conn.abort()
                        self._log(conn, req, 500, "error")

        self._spawn(guarded())

    def _log(self, conn: HttpConnection, req: Request, status: int, cache: str) -> None:
        if conn.internal:  # a peer worker's request: its own client request is logged there
            return
        self.counters.bytes_sent += conn.sent
        self.access.append((time.time(), conn.client, req.method, req.path,
                            req.headers.get("range", ""), status, conn.sent, cache,
                            (time.monotonic() - req.t0) * 1000.0))
        self.by_cache[cache] = self.by_cache.get(cache, 0) + 1

    def log_rejected(self, conn: HttpConnection, status: int, nbytes: int, reason: str) -> None:
        self.counters.requests += 1
        self.counters.bytes_sent += nbytes
        self.access.append((time.time(), conn.client, "-", "-", "", status, nbytes, "error", 0.0))
        self.by_cache["error"] = self.by_cache.get("error", 0) + 1

    # ---- entry point -----------------------------------------------------------------------
    def handle(self, conn: HttpConnection, req: Request) -> None:
        self.counters.requests += 1
        e = self.hot_lookup(req.target, conn.client)
        if e is not None and self._hot_hit(conn, req, e):
            return
        try:
            self._route(conn, req)
        except Exception as e:  # a bug must not kill the connection loop silently
            log.exception("request failed: %s %s", req.method, req.target)
            if not conn.head_sent and not conn.closed:
                self.simple(conn, req, 500, f"internal error: {type(e).__name__}", "error")
            else:
                conn.abort()

    def _route(self, conn: HttpConnection, req: Request) -> None:
        path = req.path
        if path.startswith("/admin/"):
            if conn.admin and self.ops is not None:
                self._spawn_req(conn, req, self.ops.admin(conn, req))
            else:
                self.simple(conn, req, 404, "not found", "error")
            return
        if not conn.public and not conn.internal:
            self.simple(conn, req, 404, "not found", "error")
            return
        if path == HITS_PATH and conn.internal and req.method == "POST":
            self._remote_hits_in(conn, req)
            return
        if path == "/healthz" and self.ops is not None:
            self.ops.healthz(conn, req)
            return
        if path == "/metrics" and self.ops is not None:
            self.ops.metrics_page(conn, req)
            return
        self.content(conn, req)

    # ---- content ---------------------------------------------------------------------------
    def content(self, conn: HttpConnection, req: Request) -> None:
        self.counters.content_requests += 1
        method = req.method
        memo = self._paths.get(req.path)
        if memo is None:
            try:
                npath = normalize_path(req.path)
            except BadPath as e:
                self.simple(conn, req, 400, f"bad path: {e}", "error")
                return
            if len(self._paths) > 50000:
                self._paths.clear()
            self._paths[req.path] = npath
        else:
            npath = memo
        peer = conn.internal and PEER_HEADER in req.headers
        if not conn.internal:
            req.headers.pop(PEER_HEADER, None)
        if self.tokens is not None and not peer:
            res = verify(_query_param(req.query, TOKEN_PARAM), npath, self.clock(), self.tokens,
                         conn.client)
            if res is not TokenResult.OK:
                self.simple(conn, req, 403, res.value, "error")
                return
        if self.origin.kind == "http" and req.query:
            query = req.query
            key = object_key(npath, query)
        else:
            query = ""
            key = self._keys.get(npath)
            if key is None:
                if len(self._keys) > 50000:
                    self._keys.clear()
                key = self._keys[npath] = object_key(npath, "")
        if method != "GET" and method != "HEAD":
            if method in self.origin.supports_methods:
                self._spawn_req(conn, req, self.passthrough(conn, req, npath, key, "method"))
            else:
                allow = ", ".join(sorted(self.origin.supports_methods))
                self.simple(conn, req, 405, f"method {method} not allowed", "error",
                            extra=f"allow: {allow}\r\n")
            return
        h = req.headers
        now = self.clock()
        if h.get(PEER_FILL_HEADER) == "1":
            self._peer_fill(conn, req, key, npath, now)
            return
        hfp = self.hit_for_pass.get(key)
        if hfp is not None:
            if hfp > now:
                self._spawn_req(conn, req, self.passthrough(conn, req, npath, key, "bypass"))
                return
            del self.hit_for_pass[key]
        rcc = h.get("cache-control")
        if rcc is not None and "no-store" in rcc:
            self._spawn_req(conn, req, self.passthrough(conn, req, npath, key, "request"))
            return
        meta = self.store.get_meta(key)
        if meta is None and self.negative.entries and rcc is None and "pragma" not in h:
            got = self.negative.get(key, now)
            if got is not None:
                e, age = got
                self.respond(conn, req, e.stored.status, dict(e.stored.headers, age=str(int(age))),
                             e.body, cache_status(hit=True, ttl=e.lifetime - age), "hit")
                return
        if meta is not None and POINTER in meta.vary:  # a varying URL: this request's variant
            key, meta = resolve(self.store, key, h)
        if meta is not None and not self.flights.chunks_trusted(meta):
            self.store.remove_object(meta.key)  # fetched again, whole
            meta = None
        fr = None
        if meta is not None:
            if meta.vary and not vary_matches(meta.vary, h):
                meta = None  # another variant is stored: fetch this one (it replaces it)
            elif "authorization" in h and not _shared_with_auth(meta):
                self._spawn_req(conn, req, self.passthrough(conn, req, npath, key, "request"))
                return
            else:
                view = self.view(meta)
                if rcc is None and view.plain_fresh and "pragma" not in h:
                    age = view.age_at + (now - view.rt)
                    if view.lifetime > age:
                        self.serve(conn, req, meta, view.hit_status(view.lifetime - age), "hit",
                                   age, npath, peer)
                        return
                stored = stored_of(meta)
                fr = evaluate(h, stored, now)
                if fr is Freshness.FRESH:
                    age = current_age(stored, now)
                    cs = cache_status(hit=True, ttl=view.lifetime - age)
                    self.serve(conn, req, meta, cs, "hit", age, npath, peer)
                    return
                if fr is Freshness.STALE_SERVE_AND_REVALIDATE:
                    self._spawn(self.flights.revalidate_in_background(meta, npath, query, h))
                    age = current_age(stored, now)
                    cs = cache_status(hit=True, ttl=view.lifetime - age,
                                      detail="stale-while-revalidate")
                    self.serve(conn, req, meta, cs, "stale", age, npath, peer)
                    return
        if rcc is not None and "only-if-cached" in rcc:
            self.simple(conn, req, 504, "not cached (only-if-cached)", "miss")
            return
        self._spawn_req(conn, req, self.miss(conn, req, npath, query, key, meta, fr, peer))

    def _peer_fill(self, conn: HttpConnection, req: Request, key: str, npath: str,
                   now: float) -> None:
        """A peer edge filling from us: answer only from what is stored (every chunk of the
        range), else 404; never an origin fetch, a flight, a store write or a policy hit."""
        key, meta = resolve(self.store, key, req.headers)
        if meta is None or meta.soft_purged or (meta.vary and not vary_matches(meta.vary,
                                                                              req.headers)):
            self.simple(conn, req, 404, "not cached here (peer fill)", "peerfill",
                        cs=cache_status(hit=False, fwd="miss", detail="peer-fill"))
            return
        view = self.view(meta)
        age = view.age_at + (now - view.rt)
        self.serve(conn, req, meta, cache_status(hit=True, ttl=view.lifetime - age,
                                                 detail="peer-fill"), "peerfill", age, npath,
                   False)

    def view(self, meta: ObjectMeta) -> MetaView:
        """Per-meta precomputation, keyed by the meta object itself (the store hands out the
        same object until the meta changes)."""
        v = self._views.get(id(meta))
        if v is None or v.meta is not meta:
            if len(self._views) > 20000:
                self._views.clear()
            v = self._views[id(meta)] = MetaView(meta)
        return v

    async def miss(self, conn: HttpConnection, req: Request, npath: str, query: str, key: str,
                   meta: ObjectMeta | None, fr: Freshness | None, peer: bool,
                   tries: int = 0) -> None:
        h = req.headers
        fl = self.flights.streams.get(key)
        if fl is not None and fl.from_start and (not fl.vary or vary_matches(fl.vary, h)):
            # a body without a length is arriving for this URL: read it along
            cs = cache_status(hit=False, fwd="stale" if meta is not None else "miss",
                              collapsed=True)
            await self.serve_stream(conn, req, fl, cs, "miss", peer)
            return
        index = self._first_chunk(req)
        if meta is not None and index * self.cs >= meta.size:
            index = 0
        joined = key in self.flights.heads and not self.flights.heads[key].done()
        conditional = meta if fr is Freshness.STALE_REVALIDATE else None
        fut = self.flights.head(key, index, npath, query, h, conditional)
        try:
            res: HeadResult = await asyncio.shield(fut)
        except ConnectionResetError:
            return
        if conn.closed:
            return
        now = self.clock()
        if res.kind is HeadKind.META or res.kind is HeadKind.NOT_MODIFIED:
            new = res.meta
            assert new is not None
            if new.vary and not vary_matches(new.vary, h):
                await self.passthrough(conn, req, npath, key, "vary-miss")
                return
            stored = stored_of(new)
            age = current_age(stored, now)
            ttl = self.view(new).lifetime - age
            if res.kind is HeadKind.NOT_MODIFIED:
                cs = cache_status(hit=False, fwd="stale", fwd_status=304, ttl=ttl,
                                  collapsed=joined)
                word = "revalidated"
            elif meta is not None:
                cs = cache_status(hit=False, fwd="stale", stored=True, ttl=ttl, collapsed=joined)
                word = "miss"
            else:
                cs = cache_status(hit=False, fwd="miss", stored=True, ttl=ttl, collapsed=joined)
                word = "miss"
            self.serve(conn, req, new, cs, word, age, npath, peer)
            return
        if res.kind is HeadKind.STREAM:
            fl = res.stream
            assert fl is not None
            if fl.vary and not vary_matches(fl.vary, h):
                await self.passthrough(conn, req, npath, key, "vary-miss")
                return
            cs = cache_status(hit=False, fwd="stale" if meta is not None else "miss",
                              collapsed=joined)
            await self.serve_stream(conn, req, fl, cs, "miss", peer)
            return
        if res.kind is HeadKind.RELAY:
            life = 0.0
            if res.stored is not None and not joined:
                life = self.negative.put(key, res.stored, res.body)
            cs = cache_status(hit=False, fwd="miss", fwd_status=res.status, stored=life > 0,
                              ttl=life - current_age(res.stored, now) if life > 0 else None,
                              collapsed=joined)
            self.respond(conn, req, res.status, res.headers, res.body, cs, "miss")
            return
        if res.kind is HeadKind.PASS:
            if self.cfg.origin.hit_for_pass > 0 and res.hit_for_pass:
                if len(self.hit_for_pass) > 100_000:
                    self.hit_for_pass.clear()
                self.hit_for_pass[key] = now + self.cfg.origin.hit_for_pass
            why = "uri-miss" if res.hit_for_pass else "miss"
            # the whole answer the fill got serves this request (no second origin request)
            # unless it asked for a range (a peer worker's chunk range: the whole will do)
            resp = res.claim() if "range" not in h or peer else None
            if resp is not None:
                await self._relay_claimed(conn, req, resp, cache_status(
                    hit=False, fwd=why, collapsed=joined))
                return
            if res.peer_stream and tries < PEER_STREAM_TRIES:
                # another waiter relays the owner worker's stream: ask the owner again (it
                # lets us read along), not the origin
                await self.miss(conn, req, npath, query, key, meta, fr, peer, tries + 1)
                return
            await self.passthrough(conn, req, npath, key, why)
            return
        # origin failed
        if meta is not None and stale_if_error_allowed(h, stored_of(meta), now):
            age = current_age(stored_of(meta), now)
            cs = cache_status(hit=False, fwd="stale", fwd_status=res.status,
                              detail="stale-if-error")
            self.serve(conn, req, meta, cs, "stale", age, npath, peer)
            return
        self.simple(conn, req, res.status, res.reason or "origin failed", "error",
                    cs=cache_status(hit=False, fwd="miss", fwd_status=res.status,
                                    detail="origin-error"))

    def _first_chunk(self, req: Request) -> int:
        rh = req.headers.get("range")
        if rh and req.method == "GET" and rh.startswith("bytes=") and "," not in rh:
            a = rh[6:].partition("-")[0].strip()
            if a.isdigit() and len(a) < 19:
                return int(a) // self.cs
        return 0

    # ---- responses from the store ----------------------------------------------------------
    def serve(self, conn: HttpConnection, req: Request, meta: ObjectMeta, cs: str, word: str,
              age: float, npath: str, peer: bool) -> None:
        """Answer from a stored meta: 304/412, 416, 206 (single or multipart) or 200."""
        view = self.view(meta)
        h = req.headers
        size = meta.size
        if ("if-none-match" in h or "if-modified-since" in h or "if-match" in h
                or "if-unmodified-since" in h):
            pre = evaluate_preconditions(req.method, h, meta.etag, view.lm, date=view.date)
            if pre is Precondition.NOT_MODIFIED:
                conn.write_head(self._head(conn, req, 304, view, None, age, cs, None, None,
                                           peer, meta))
                self._log(conn, req, 304, word)
                conn.finish()
                return
            if pre is Precondition.PRECONDITION_FAILED:
                self.simple(conn, req, 412, "precondition failed", word, cs=cs)
                return
        ranges: list[tuple[int, int]] | None = None
        rh = h.get("range")
        if rh is not None and req.method == "GET" and if_range_ok(h, meta.etag, view.lm,
                                                                    date=view.date):
            spec = parse_range(rh, size, self.limits.max_ranges)
            if spec.kind is RangeKind.UNSATISFIABLE:
                self.simple(conn, req, 416, "range not satisfiable", word, cs=cs,
                            extra=f"content-range: {unsatisfied_range(size)}\r\n")
                return
            if spec.kind is RangeKind.SATISFIABLE:
                ranges = spec.ranges
        body: list[Any] = []
        if ranges is None:
            status, clen, crange, ctype = 200, size, None, view.ctype
            self._plan(body, meta, 0, size, word != "peerfill")
        elif len(ranges) == 1:
            a, b = ranges[0]
            status, clen, crange, ctype = 206, b - a, content_range(a, b, size), view.ctype
            self._plan(body, meta, a, b, word != "peerfill")
        else:
            parts, closing, clen = multipart_plan(ranges, size, view.ctype, BOUNDARY)
            status, crange = 206, None
            ctype = f"multipart/byteranges; boundary={BOUNDARY}"
            for head, a, b in parts:
                body.append(head)
                self._plan(body, meta, a, b, word != "peerfill")
            body.append(closing)
        missing = False
        for it in body:
            if type(it) is tuple and it[3] is None:
                missing = True
                break
        if word == "peerfill" and missing:
            self.simple(conn, req, 404, "not cached here (peer fill)", word,
                        cs=cache_status(hit=False, fwd="miss", detail="peer-fill"))
            return
        if missing and word == "hit":
            word = "partial"
            cs = cache_status(hit=False, fwd="partial", stored=True,
                              ttl=view.lifetime - age)
        if (word == "hit" and status == 200 and not missing
                and req.method == "GET" and not peer and not meta.vary
                and not conn.internal and conn.public and conn.keep_alive and not req.http10
                and req.headers.keys().isdisjoint(HOT_BLOCKERS)):
            self._hot_put(req, meta, view, body, meta.key, npath)
        head = self._head(conn, req, status, view, clen, age, cs, crange, ctype, peer, meta)
        if req.method == "HEAD" or not body:
            conn.write_head(head)
            self._log(conn, req, status, word)
            conn.finish()
            return
        self.send_body(conn, req, meta, body, 0, status, word, npath, head)

    def _owned(self, meta: ObjectMeta, i: int) -> bool:
        """Does this worker own chunk i (decided once per stored object and chunk)?"""
        view = self.view(meta)
        o = view.owned
        if o is None:
            o = view.owned = {}
        v = o.get(i)
        if v is None:
            v = o[i] = bool(self.owns(f"{meta.key}#{i}"))
        return v

    def _plan(self, body: list[Any], meta: ObjectMeta, a: int, b: int,
              record: bool = True) -> None:
        """Body items for object bytes [a, b): (chunk index, offset in chunk, length, ref)."""
        cs = self.cs
        i = a // cs
        store = self.store
        while a < b:
            cstart = i * cs
            cend = min(cstart + cs, meta.size)
            n = min(b, cend) - a
            ref = store.get_chunk(meta, i)
            if ref is None:
                fl = self.flights.chunks.get(fkey(meta, i))
                if fl is not None and fl.done and fl.error is None:
                    ref = ChunkRef("", len(fl.buf), fl.buf)  # complete, commit under way
            if ref is not None and record:
                store.record_hit(meta, i)  # disk policy only for owned keys, memory for all
                if self.owns is not None and not self._owned(meta, i):
                    rk = (f"{meta.key}#{i}", cend - cstart)
                    self.remote_hits[rk] = self.remote_hits.get(rk, 0) + 1
            body.append((i, a - cstart, n, ref))
            a += n
            i += 1

    def _head(self, conn: HttpConnection, req: Request, status: int, view: MetaView,
              clen: int | None, age: float, cs: str, crange: str | None, ctype: str | None,
              peer: bool, meta: ObjectMeta) -> bytes:
        parts = [status_line(status), view.block]
        if ctype is not None:
            parts.append(f"content-type: {ctype}\r\n".encode("latin-1", "replace"))
        if clen is not None:
            parts.append(b"content-length: %d\r\n" % clen)
        if crange is not None:
            parts.append(f"content-range: {crange}\r\n".encode())
        parts.append(b"accept-ranges: bytes\r\nage: %d\r\n" % int(age))
        parts.append(f"cache-status: {append_cache_status(view.upstream, cs)}\r\n".encode())
        if peer:
            parts.append(f"{META_HEADER}: {meta_header_value(meta)}\r\n".encode("latin-1", "replace"))
        self._end_head(conn, req, parts)
        return b"".join(parts)

    def _end_head(self, conn: HttpConnection, req: Request, parts: list[bytes]) -> None:
        """The connection header (close when the connection ends here or the edge drains,
        keep-alive for HTTP/1.0) and the blank line that ends a header block."""
        if not conn.keep_alive or self.draining:
            conn.keep_alive = False
            parts.append(CLOSE)
        elif req.http10:
            parts.append(KEEP_ALIVE_10)
        parts.append(b"\r\n")

    # ---- simple answers --------------------------------------------------------------------
    def simple(self, conn: HttpConnection, req: Request, status: int, reason: str, word: str,
               *, cs: str | None = None, extra: str = "") -> None:
        body = b"" if status in NO_BODY_STATUS else (reason + "\n").encode()
        if cs is None:
            cs = cache_status(hit=False, fwd="request", detail=_detail(reason))
        parts = [status_line(status), b"content-type: text/plain; charset=utf-8\r\n",
                 b"content-length: %d\r\n" % len(body), f"cache-status: {cs}\r\n".encode(),
                 extra.encode("latin-1", "replace")]
        if status >= 500 and status != 504:
            conn.keep_alive = False
        self._end_head(conn, req, parts)
        conn.write_head(b"".join(parts))
        if req.method != "HEAD" and body:
            conn.write(body)
        self._log(conn, req, status, word)
        conn.finish()

    def respond(self, conn: HttpConnection, req: Request, status: int, headers: dict[str, str],
                body: bytes, cs: str, word: str) -> None:
        parts = [status_line(status)]
        for k, v in headers.items():
            if k not in PASS_DROP:
                parts.append(f"{k}: {v}\r\n".encode("latin-1", "replace"))
        if status not in NO_BODY_STATUS:
            parts.append(b"content-length: %d\r\n" % len(body))
        cs = append_cache_status(upstream_members(headers.get("cache-status")), cs)
        parts.append(f"cache-status: {cs}\r\n".encode())
        self._end_head(conn, req, parts)
        conn.write_head(b"".join(parts))
        if req.method != "HEAD" and status not in NO_BODY_STATUS and body:
            conn.write(body)
        self._log(conn, req, status, word)
        conn.finish()

    # ---- stop ------------------------------------------------------------------------------
    async def drain_connections(self, timeout: float) -> None:
        """Graceful stop: idle keep-alive connections close now, busy ones after their
        response (they get ``connection: close``), then anything left is cut."""
        self.draining = True
        for c in list(self.conns):
            if not c.busy and c.transport is not None:
                c.transport.close()
        deadline = time.monotonic() + timeout
        while any(c.busy for c in self.conns) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for c in list(self.conns):
            if c.transport is not None:
                c.transport.abort()


def _query_param(query: str, name: str) -> str | None:
    if not query:
        return None
    for part in query.split("&"):
        k, _, v = part.partition("=")
        if k == name:
            return v
    return None


def _shared_with_auth(meta: ObjectMeta) -> bool:
    """RFC 9111 §3.5: a stored response may answer a request with Authorization only if it
    says so (public, s-maxage or must-revalidate)."""
    cc = parse_cache_control(meta.headers.get("cache-control"))
    return bool(cc.public or cc.s_maxage is not None or cc.must_revalidate)


def _detail(reason: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in reason.lower())[:40].strip("-")
    return out if out[:1].isalpha() else f"e-{out}"


__all__ = ["EdgeApp", "Counters", "format_http_date"]
