"""Single flights: one origin fetch per chunk however many clients miss it at once.

A ChunkFlight holds the bytes of one chunk as they arrive; any number of readers stream from
it (read-while-writer) by awaiting a progress future that the feeder resolves on each piece
(no polling). The fetch runs as its own task, so a client that disconnects never aborts a
fetch others wait on. On completion the chunk goes through the store's ChunkWriter (length
checked, committed in a thread); on failure nothing becomes visible and readers see
FlightFailed, which makes the server close their connection mid-body.

A HeadFlight is the one request per object that learns (or revalidates) its meta: it asks
for the first chunk the client needs with a Range header (plus If-None-Match/If-Modified-Since
when revalidating) and, when the answer is storable, feeds that chunk's flight with the body.
A storable 200 without a length (chunked or close-delimited) becomes a StreamFlight
(edge.stream_flight) that every waiter, and every request arriving meanwhile, reads along;
it is stored once it has ended whole. An answer that is not storable is handed, still open,
to one waiter to relay (PASS with ``resp``) when it is the whole representation, so the first
request for an uncacheable URL costs one origin request.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.http.cachekey import vary_fields, vary_values
from edge.http.cachestatus import upstream_members
from edge.http.model import StoredResponse
from edge.http.revalidate import conditional_headers, merge_not_modified, not_modified_applies
from edge.http.storage import headers_to_store, storable, strip_hop_by_hop
from edge.origin_client.base import Headers, Origin, OriginError, OriginResponse
from edge.origin_client.framing import end_check
from edge.store.meta import ObjectMeta
from edge.stream_flight import StreamFlight, wake
from edge.variants import plan_variant, primary_of

log = logging.getLogger("edge.flights")
VIA = "1.1 edgecdn"
RELAY_LIMIT = 64 * 1024  # non-2xx bodies up to this size are shared with every waiter
PEER_HEADER = "x-edgecdn-peer"
META_HEADER = "x-edgecdn-meta"
STREAM_HEADER = "x-edgecdn-stream"  # an owner's answer to a peer: a stored-while-streamed body
UNCLAIMED_CLOSE = 5.0  # seconds before an origin answer nobody relayed is closed
# request headers never forwarded on a cache fill (the fill asks its own range/validators)
_NOT_FORWARDED = frozenset({
    "range", "if-range", "if-none-match", "if-modified-since", "if-match",
    "if-unmodified-since", "cache-control", "pragma", "content-length", "expect", "host",
    PEER_HEADER,
})
# response headers that describe one message, not the stored object
_NOT_STORED = frozenset({  # (Age is kept: RFC 9111 §4.2.3 counts it into the copy's age)
    "content-length", "content-range", "cache-status", "date-received", "accept-ranges",
    META_HEADER, STREAM_HEADER,
})


def stored_fields(headers: Headers) -> Headers:
    """A response's fields as stored (by a miss here and by the proactive fill): without
    those describing one message, and with only the upstream caches' Cache-Status members
    (RFC 9211 §2: replayed before this edge's)."""
    out = {k: v for k, v in headers.items() if k not in _NOT_STORED}
    up = upstream_members(headers.get("cache-status"))
    if up:
        out["cache-status"] = up
    return out


class FlightFailed(Exception):
    """The chunk could not be fetched completely; readers must close their connection."""

    def __init__(self, reason: str, status: int = 502) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class FlightAbandoned(FlightFailed):
    """The feeder stopped before the chunk was whole for a reason of its own (the proactive
    fill was interrupted or its source failed): a reader fetches the chunk itself instead."""


class ChunkFlight:
    """One chunk being fetched; read from any offset while it arrives."""

    __slots__ = ("key", "length", "buf", "done", "error", "joined", "_progress")

    def __init__(self, key: str, length: int) -> None:
        self.key = key
        self.length = length
        self.buf = bytearray()
        self.done = False
        self.error: FlightFailed | None = None
        self.joined = False  # has a reader asked for bytes (the fill then lifts its cap)
        self._progress: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        f, self._progress = self._progress, None
        wake(f)

    def feed(self, data: bytes) -> None:
        self.buf += data
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def fail(self, error: FlightFailed) -> None:
        if not self.done:
            self.error = error
        self._wake()

    async def settled(self) -> bool:
        """Wait until the chunk is whole (True) or its fetch failed (False)."""
        while not self.done and self.error is None:
            if self._progress is None:
                self._progress = asyncio.get_running_loop().create_future()
            await self._progress
        return self.error is None

    async def read(self, pos: int, end: int) -> bytes | bytearray:
        """Bytes [pos, <=end) as soon as any are there; b"" once end is reached."""
        self.joined = True
        while True:
            if self.error is not None:
                raise self.error
            have = len(self.buf)
            if have > pos:
                return self.buf[pos:min(have, end)]
            if pos >= end or self.done:
                if pos < end and self.done and have < end:
                    raise FlightFailed("chunk shorter than expected")
                return b""
            if self._progress is None:
                self._progress = asyncio.get_running_loop().create_future()
            await self._progress


class HeadKind(enum.Enum):
    META = "meta"  # storable: serve from meta (chunk flights registered)
    NOT_MODIFIED = "not_modified"  # revalidated: meta refreshed
    RELAY = "relay"  # small non-2xx answer, shared with every waiter
    STREAM = "stream"  # storable body without a length: stream it (stored once it ends)
    PASS = "pass"  # not shareable: one waiter may relay ``resp``, the others ask the origin
    ERROR = "error"  # origin failed (5xx, timeout, unreachable)


@dataclass(slots=True)
class HeadResult:
    kind: HeadKind
    meta: ObjectMeta | None = None
    status: int = 0
    headers: Headers = field(default_factory=dict)
    body: bytes = b""
    reason: str = ""
    stream: StreamFlight | None = None
    resp: OriginResponse | None = None  # PASS: the open origin answer, for one waiter to relay
    hit_for_pass: bool = True  # PASS: the URL is not cacheable
    peer_stream: bool = False  # PASS: the owner worker streams (and stores) it: ask it again
    stored: StoredResponse | None = None  # RELAY: the answer as a shared cache may keep it

    def claim(self) -> OriginResponse | None:
        """The open origin answer for the first waiter that asks (None for the others)."""
        resp, self.resp = self.resp, None
        return resp


@dataclass(slots=True)
class FlightStats:
    origin_fetches: int = 0
    origin_errors: int = 0
    origin_bytes: int = 0
    latencies: list[float] = field(default_factory=list)  # first-byte seconds, drained by metrics
    disk_full_since: float = 0.0  # last DiskFull (0: none)
    store_failures: int = 0


def parse_content_range(v: str | None) -> tuple[int, int, int | None] | None:
    """"bytes a-b/len" -> (a, b+1, len); "bytes */len" -> (-1, -1, len); None if malformed."""
    if not v or not v.startswith("bytes "):
        return None
    rng, _, total = v[6:].partition("/")
    try:
        length = None if total.strip() == "*" else int(total)
        if rng.strip() == "*":
            return (-1, -1, length)
        a, _, b = rng.partition("-")
        return (int(a), int(b) + 1, length)
    except ValueError:
        return None


def stored_of(meta: ObjectMeta) -> StoredResponse:
    return StoredResponse(meta.status, meta.headers, meta.request_time, meta.response_time,
                          meta.soft_purged)


def chunk_mismatch(meta: ObjectMeta, h: Headers) -> str | None:
    """Why a chunk's answer cannot be joined to the object's other chunks (None: it can).
    Parts are combined only when they are of one representation (RFC 9110 §14.3, §8.8): the
    same ETag (a strong one stays strong: a weak tag may name other bytes, as a compressing
    origin gives), the same Last-Modified, the same content coding."""
    etag = h.get("etag")
    if etag is not None and meta.etag is not None and has_validator(meta) and etag != meta.etag:
        return "object changed at the origin"
    lm = h.get("last-modified")
    if lm is not None and meta.last_modified is not None and lm != meta.last_modified:
        return "object changed at the origin"
    if h.get("content-encoding", "identity").lower() != \
            meta.headers.get("content-encoding", "identity").lower():
        return "origin answered in another content coding"
    return None


_INTERNAL_TAG = 'W/"edgecdn-'  # _internal_etag's: never sent by the origin


class Flights:
    """The flight tables of one process, plus the fetch tasks that feed them."""

    def __init__(self, store: Any, origin: Origin, *, chunk_size: int,
                 peer_for: Callable[[str], Origin | None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.origin = origin
        self.chunk_size = chunk_size
        self.peer_for = peer_for or (lambda _key: None)
        self.clock = clock
        self.chunks: dict[str, ChunkFlight] = {}
        self.heads: dict[str, asyncio.Future[HeadResult]] = {}
        self.streams: dict[str, StreamFlight] = {}  # object key -> body of unknown length
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stats = FlightStats()
        self.storing = True

    # ---- helpers ---------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)
        return t

    def bounds(self, meta: ObjectMeta, index: int) -> tuple[int, int]:
        start = index * self.chunk_size
        return start, min(start + self.chunk_size, meta.size)

    async def _open(self, ckey: str, path: str, query: str, headers: Headers
                    ) -> tuple[OriginResponse, float, float, bool]:
        """Ask the chunk's owner worker if another worker owns it, else the origin. An owner
        that cannot be reached (killed, restarting) is skipped: the origin is asked instead,
        so a dead worker never leaves a chunk locked."""
        peer = self.peer_for(ckey)
        if peer is not None:
            h = dict(headers)
            h[PEER_HEADER] = "1"
            try:
                resp, t0, t1 = await self._request(peer, path, query, h)
                return resp, t0, t1, True
            except OriginError as e:
                if e.kind != "unreachable":
                    raise
        resp, t0, t1 = await self._request(self.origin, path, query, headers)
        return resp, t0, t1, False

    @staticmethod
    def forward_headers(req: Headers) -> Headers:
        """What a fill forwards of the client's request (RFC 9110 §7.6.3: a gateway adds Via)."""
        h = {k: v for k, v in strip_hop_by_hop(req).items() if k not in _NOT_FORWARDED}
        h["via"] = f"{h['via']}, {VIA}" if "via" in h else VIA
        return h

    async def _request(self, src: Origin, path: str, query: str, headers: Headers
                       ) -> tuple[OriginResponse, float, float]:
        t0 = self.clock()
        m0 = time.monotonic()
        self.stats.origin_fetches += 1
        try:
            resp = await src.fetch("GET", path, query, headers)
        except OriginError:
            self.stats.origin_errors += 1
            raise
        self.stats.latencies.append(time.monotonic() - m0)
        if len(self.stats.latencies) > 10000:
            del self.stats.latencies[:5000]
        return resp, t0, self.clock()

    def chunks_trusted(self, meta: ObjectMeta) -> bool:
        """Can a missing chunk of this object be fetched on its own? Not for one without a
        validator (_internal_etag): only chunks of one answer are known to be of one version,
        so once any chunk is gone (evicted) and not being filled, the whole object must be
        fetched again."""
        if has_validator(meta):
            return True
        return all(self.store.get_chunk(meta, i) is not None or fkey(meta, i) in self.chunks
                   for i in range(self.store.chunk_count(meta)))

    # ---- chunk flights (meta known) --------------------------------------------------------
    def chunk_flight(self, meta: ObjectMeta, index: int, path: str, query: str,
                     req: Headers) -> ChunkFlight:
        """The flight of a chunk, started if nobody is fetching it yet."""
        ckey = fkey(meta, index)
        fl = self.chunks.get(ckey)
        if fl is not None:
            return fl
        start, end = self.bounds(meta, index)
        fl = ChunkFlight(ckey, end - start)
        self.chunks[ckey] = fl
        self._spawn(self._fetch_chunk(meta, index, fl, path, query, self.forward_headers(req)))
        return fl

    def claim(self, meta: ObjectMeta, index: int) -> ChunkFlight | None:
        """A flight for chunk ``index`` that the caller feeds (the proactive fill), so clients
        that miss the chunk meanwhile read along instead of fetching it again; None when the
        chunk is being fetched already. The caller ends it with ``release``."""
        ckey = fkey(meta, index)
        if ckey in self.chunks:
            return None
        start, end = self.bounds(meta, index)
        fl = self.chunks[ckey] = ChunkFlight(ckey, end - start)
        return fl

    def release(self, fl: ChunkFlight) -> None:
        """End a claimed flight: after its chunk was committed (finished), or abandoned (its
        readers then fetch the chunk themselves)."""
        if self.chunks.get(fl.key) is fl:
            del self.chunks[fl.key]
        if not fl.done:
            fl.fail(FlightAbandoned("the fill feeding this chunk stopped"))

    async def _fetch_chunk(self, meta: ObjectMeta, index: int, fl: ChunkFlight, path: str,
                           query: str, fwd: Headers) -> None:
        start, end = self.bounds(meta, index)
        h = dict(fwd)
        h["range"] = f"bytes={start}-{end - 1}"
        resp: OriginResponse | None = None
        try:
            resp, _, _, via_peer = await self._open(f"{meta.key}#{index}", path, query, h)
            why = chunk_mismatch(meta, resp.headers)
            if why is not None:
                self._object_changed(meta)
                raise FlightFailed(why)
            if resp.status == 206:
                cr = parse_content_range(resp.headers.get("content-range"))
                if cr is None or cr[0] != start or cr[2] != meta.size:
                    self._object_changed(meta)
                    raise FlightFailed("origin sent another range or length")
                await self._feed(meta, resp, start, {index: fl}, store=not via_peer, only=index)
            elif resp.status == 200:
                cl = resp.content_length  # None: chunked/close-delimited, checked by _feed
                if cl is not None and cl != meta.size:
                    self._object_changed(meta)
                    raise FlightFailed("origin length changed")
                await self._feed(meta, resp, 0, {index: fl}, store=not via_peer, only=None)
            else:
                if resp.status in (404, 410, 412, 416):
                    self._object_changed(meta)
                raise FlightFailed(f"origin answered {resp.status} for a chunk",
                                   502 if resp.status >= 500 else 502)
        except OriginError as e:
            fl.fail(FlightFailed(e.reason, e.status))
        except FlightFailed as e:
            fl.fail(e)
        except Exception as e:  # never leave readers hanging
            fl.fail(FlightFailed(f"fill failed: {type(e).__name__}"))
        finally:
            if resp is not None:
                resp.close()
            if not fl.done:
                fl.fail(fl.error or FlightFailed("fill ended early"))
                if self.chunks.get(fl.key) is fl:
                    del self.chunks[fl.key]

    def _object_changed(self, meta: ObjectMeta) -> None:
        """The origin's object is no longer the stored one: forget it so the next request
        starts over (chunks of the old version are never mixed with new bytes)."""
        with contextlib.suppress(Exception):
            cur = self.store.get_meta(meta.key)
            if cur is not None and cur.version == meta.version:
                self.store.remove_object(meta.key)

    async def _feed(self, meta: ObjectMeta, resp: OriginResponse, offset: int,
                    owned: dict[int, ChunkFlight], *, store: bool, only: int | None,
                    meta_saved: asyncio.Future[None] | None = None) -> None:
        """Route body bytes starting at object offset ``offset`` into chunk flights.

        ``owned`` are flights this fetch must complete; with ``only`` None (an origin that
        ignored Range and sent everything) every other absent chunk is filled on the way.
        Such a body without a length may prove to be another object only at its end (longer,
        or cut), so its chunks are finished and committed only once it has ended at exactly
        the object's size; their readers stream the bytes meanwhile.
        """
        hold = only is None and resp.content_length is None
        held: list[tuple[int, ChunkFlight, Any]] = []
        whole = end_check(resp) if hold else None

        def complete(i: int, fl: ChunkFlight, w: Any) -> None:
            fl.finish()
            self._spawn(self._commit(fl, w, meta_saved))
            owned.pop(i, None)

        index = offset // self.chunk_size
        pos = offset
        cur: ChunkFlight | None = None
        writer: Any = None
        last = (meta.size - 1) // self.chunk_size if meta.size else -1

        if only is None:  # the whole rest of the object is coming: claim its absent chunks
            for i in range(index, last + 1):
                ckey = fkey(meta, i)
                if i not in owned and ckey not in self.chunks \
                        and self.store.get_chunk(meta, i) is None:
                    s, e = self.bounds(meta, i)
                    owned[i] = self.chunks[ckey] = ChunkFlight(ckey, e - s)

        def open_chunk(i: int) -> tuple[ChunkFlight | None, Any]:
            fl = owned.get(i)
            w = None
            if fl is not None and store and self.storing and self.store.should_store(meta, i):
                try:
                    w = DiskSink(self.store.new_writer(meta, i), self)
                except OSError:
                    self.stats.disk_full_since = self.clock()
            return fl, w

        try:
            if index <= last:
                cur, writer = open_chunk(index)
            chunk_end = self.bounds(meta, index)[1] if index <= last else pos
            async for data in resp.iter_body():
                self.stats.origin_bytes += len(data)
                mv = memoryview(data)
                while mv:
                    if pos >= meta.size:  # another object than the stored one
                        self._object_changed(meta)
                        raise FlightFailed("origin sent more bytes than the object has")
                    take = min(len(mv), chunk_end - pos)
                    piece = mv[:take]
                    mv = mv[take:]
                    pos += take
                    if cur is not None:
                        cur.feed(piece.tobytes() if len(piece) < len(data) else data)
                        if writer is not None:
                            writer.add(piece)
                    if pos == chunk_end:
                        if cur is not None and hold:
                            held.append((index, cur, writer))
                        elif cur is not None:
                            complete(index, cur, writer)
                        cur, writer = None, None
                        if only is not None and index == only:
                            return
                        index += 1
                        if index > last:
                            continue
                        cur, writer = open_chunk(index)
                        chunk_end = self.bounds(meta, index)[1]
            if pos < meta.size and (only is None or index == only):
                raise FlightFailed("origin closed the body early")
            if whole is not None and not whole():
                raise FlightFailed("origin connection reset mid-body")
            for i, fl, w in held:  # the body ended at the object's size: its chunks are whole
                complete(i, fl, w)
            held.clear()
        except BaseException as e:
            if writer is not None:
                writer.abort()
            for _, _, w in held:
                if w is not None:
                    w.abort()
            err = e if isinstance(e, FlightFailed) else (
                FlightFailed(e.reason, e.status) if isinstance(e, OriginError)
                else FlightFailed(f"fill failed: {type(e).__name__}"))
            for fl in owned.values():
                fl.fail(err)
                if self.chunks.get(fl.key) is fl:
                    del self.chunks[fl.key]
            if isinstance(e, FlightFailed | OriginError):
                return
            raise
        finally:
            resp.release() if pos >= meta.size or only is not None else resp.close()
            for fl in owned.values():
                if not fl.done:
                    fl.fail(FlightFailed("origin closed the body early"))
                    if self.chunks.get(fl.key) is fl:
                        del self.chunks[fl.key]

    async def _commit(self, fl: ChunkFlight, sink: DiskSink | None,
                      meta_saved: asyncio.Future[None] | None) -> None:
        """Make a complete chunk visible (after its meta), then drop the flight."""
        writer = None
        try:
            if sink is not None:
                writer = await sink.close()
            if writer is not None:
                if meta_saved is not None:
                    await meta_saved
                ok = await asyncio.to_thread(writer.commit)
                if not ok:
                    self.stats.store_failures += 1
        except OSError:
            self.stats.disk_full_since = self.clock()
            with contextlib.suppress(Exception):
                writer.abort()
        except Exception:
            self.stats.store_failures += 1
            with contextlib.suppress(Exception):
                writer.abort()
        finally:
            if self.chunks.get(fl.key) is fl:
                del self.chunks[fl.key]

    # ---- head flights (meta unknown or stale) ----------------------------------------------
    def head(self, key: str, index: int, path: str, query: str, req: Headers,
             stale: ObjectMeta | None, reuse_done: bool = True) -> asyncio.Future[HeadResult]:
        """The object's one head flight: learn its meta (or revalidate ``stale``) by asking
        for chunk ``index``. Joins the running one if there is one; one that has answered
        already is never reused: its meta is in the store by then."""
        fut = self.heads.get(key)
        if fut is not None and not fut.done():
            return fut
        fut = asyncio.get_running_loop().create_future()
        self.heads[key] = fut
        self._spawn(self._run_head(key, index, path, query, self.forward_headers(req), req,
                                   stale, fut))
        return fut

    async def _run_head(self, key: str, index: int, path: str, query: str, fwd: Headers,
                        req: Headers, stale: ObjectMeta | None,
                        fut: asyncio.Future[HeadResult]) -> None:
        saved: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            result = await self._head_once(key, index, path, query, fwd, req, stale, fut, saved)
            if not fut.done():
                fut.set_result(result)
        except Exception as e:  # the head must always resolve
            if not fut.done():
                reason = e.reason if isinstance(e, OriginError) else f"fill failed: {type(e).__name__}"
                status = e.status if isinstance(e, OriginError) else 502
                fut.set_result(HeadResult(HeadKind.ERROR, status=status, reason=reason))
        finally:
            if self.heads.get(key) is fut:
                del self.heads[key]

    async def _head_once(self, key: str, index: int, path: str, query: str, fwd: Headers,
                         req: Headers, stale: ObjectMeta | None,
                         fut: asyncio.Future[HeadResult], saved: asyncio.Future[None]
                         ) -> HeadResult:
        attempt = 0
        while True:
            attempt += 1
            h = dict(fwd)
            cs = self.chunk_size
            if index >= 0:
                h["range"] = f"bytes={index * cs}-{(index + 1) * cs - 1}"
            if stale is not None:
                h.update(conditional_headers(stored_of(stale)))
            try:
                resp, t_req, t_resp, via_peer = await self._open(
                    f"{key}#{max(index, 0)}", path, query, h)
            except OriginError as e:
                return HeadResult(HeadKind.ERROR, status=e.status, reason=e.reason)
            rh = resp.headers
            if resp.status == 416 and attempt == 1:
                resp.release()
                cr = parse_content_range(rh.get("content-range"))
                index = 0 if cr and cr[2] else -1  # past the end: chunk 0; empty: no Range
                continue
            if resp.status == 304 and stale is not None:
                resp.release()
                if not not_modified_applies(stored_of(stale), strip_hop_by_hop(rh)):
                    stale = None  # §4.3.4: the 304 is for another representation: refetch
                    fwd = {k: v for k, v in fwd.items() if k not in _NOT_FORWARDED}
                    attempt = 0
                    continue
                merged = merge_not_modified(stored_of(stale), strip_hop_by_hop(rh), t_req, t_resp)
                merged.headers = stored_fields(merged.headers)
                if not storable("GET", 200, req, merged.headers):
                    # the refreshed response may not be shared any more (private, no-store, a
                    # Set-Cookie): the stored copy goes, and this client's answer is fetched
                    # whole and relayed, not stored
                    await asyncio.to_thread(self.store.remove_object, stale.key)
                    stale = None
                    fwd = {k: v for k, v in fwd.items() if k not in _NOT_FORWARDED}
                    attempt = 0
                    continue
                meta = stale.with_stored(merged)
                if via_peer:
                    return HeadResult(HeadKind.NOT_MODIFIED, meta=meta)
                await asyncio.to_thread(self._put_meta, meta)
                return HeadResult(HeadKind.NOT_MODIFIED, meta=meta)
            if resp.status == 206 and index >= 0 and "etag" not in rh \
                    and "last-modified" not in rh and not via_peer:
                cr = parse_content_range(rh.get("content-range"))
                if cr is not None and cr[2] is not None and cr[2] > cs:
                    # no validator: nothing could tell its chunks of two versions apart, so
                    # it is fetched whole, in one answer
                    resp.close()
                    index = -1
                    continue
            if resp.status in (200, 206):
                return await self._head_body(key, resp, rh, t_req, t_resp, req, via_peer, fut,
                                             saved)
            if resp.status >= 500:
                resp.close()
                self.stats.origin_errors += 1
                return HeadResult(HeadKind.ERROR, status=502, reason=f"origin answered {resp.status}")
            if resp.status in (404, 410) and stale is not None and not via_peer:
                with contextlib.suppress(Exception):
                    self.store.remove_object(key)
            whole = end_check(resp)
            body = await resp.read_all(RELAY_LIMIT)
            if body is None:
                return HeadResult(HeadKind.PASS, reason="large non-2xx answer")
            if not whole():
                resp.close()
                return HeadResult(HeadKind.ERROR, status=502,
                                  reason="origin connection reset mid-body")
            resp.release()
            headers = strip_hop_by_hop(rh)
            keep = None
            if not via_peer and storable("GET", resp.status, req, headers):
                keep = StoredResponse(resp.status, stored_fields(headers_to_store(rh, t_resp)),
                                      t_req, t_resp)
            return HeadResult(HeadKind.RELAY, status=resp.status, headers=headers, body=body,
                              stored=keep)

    def _put_meta(self, meta: ObjectMeta) -> None:
        try:
            self.store.put_meta(meta)
        except OSError:
            self.stats.disk_full_since = self.clock()

    async def _head_body(self, key: str, resp: OriginResponse, rh: Headers, t_req: float,
                         t_resp: float, req: Headers, via_peer: bool,
                         fut: asyncio.Future[HeadResult], saved: asyncio.Future[None]
                         ) -> HeadResult:
        if resp.status == 206:
            cr = parse_content_range(rh.get("content-range"))
            if cr is None or cr[2] is None or cr[0] < 0:
                resp.close()
                return HeadResult(HeadKind.PASS, reason="origin range without length")
            size, offset = cr[2], cr[0]
        else:
            size, offset = resp.content_length, 0  # None: chunked or close-delimited
        pointer = None
        if via_peer:
            raw = rh.get(META_HEADER)
            if raw is None:  # the owner relays it: an uncacheable answer, or a stream it stores
                stream = rh.get(STREAM_HEADER) == "1"
                res = self._pass(resp, "peer streams it" if stream else "peer answer not "
                                 "cacheable", hit_for_pass=not stream)
                res.peer_stream = stream
                return res
            try:
                meta = ObjectMeta.from_json(raw)
            except ValueError:
                resp.close()
                return HeadResult(HeadKind.PASS, reason="peer sent a bad meta")
        else:
            headers = stored_fields(headers_to_store(rh, t_resp))
            fields = vary_fields(headers)
            if fields is None or not storable("GET", 200, req, headers):
                return self._pass(resp, "not storable")
            if size is None:
                return await self._head_stream(key, resp, headers, fields, t_req, t_resp, req,
                                               fut, saved)
            pointer = None
            skey = primary_of(key)
            if fields:  # one of several variants: under its own key, the URL points to it
                skey, pointer = plan_variant(self.store, key, fields, req, t_resp)
            meta = ObjectMeta.from_stored(
                skey, size, StoredResponse(200, headers, t_req, t_resp),
                vary=vary_values(fields, req),
            )
            if meta.etag is None and meta.last_modified is None:
                meta = _internal_etag(meta, t_resp)
        if size is None:  # a peer's stored meta always has a size; anything else: relay
            return self._pass(resp, "origin sent no length", hit_for_pass=False)
        if offset % self.chunk_size or offset >= max(size, 1) and size:
            resp.close()
            return HeadResult(HeadKind.PASS, reason="origin sent an unexpected range")
        index = offset // self.chunk_size
        owned: dict[int, ChunkFlight] = {}
        if size:
            ckey = fkey(meta, index)
            if ckey not in self.chunks:
                s, e = self.bounds(meta, index)
                owned[index] = self.chunks[ckey] = ChunkFlight(ckey, e - s)
        if not via_peer:  # on disk (and in the index) before anyone is told about it
            try:
                if pointer is not None:
                    await asyncio.to_thread(self._put_meta, pointer)
                await asyncio.to_thread(self._put_meta, meta)
            except BaseException:
                resp.close()
                for fl in owned.values():
                    fl.fail(FlightFailed("could not record the object"))
                    if self.chunks.get(fl.key) is fl:
                        del self.chunks[fl.key]
                raise
        saved.set_result(None)
        fut.set_result(HeadResult(HeadKind.META, meta=meta))
        if self.heads.get(key) is fut:
            del self.heads[key]
        await self._feed(meta, resp, offset, owned, store=not via_peer,
                         only=index if resp.status == 206 else None, meta_saved=saved)
        return HeadResult(HeadKind.META, meta=meta)

    def _pass(self, resp: OriginResponse, reason: str, *, hit_for_pass: bool = True
              ) -> HeadResult:
        """Not shareable: the answer stays open so that one waiter relays it (one origin
        request for the first client of an uncacheable URL) when it is whole; it is closed
        if nobody has claimed it soon."""
        whole = resp.status == 200
        if resp.status == 206:  # the whole representation only if its bytes say so too
            cr = parse_content_range(resp.headers.get("content-range"))
            whole = cr is not None and cr[0] == 0 and cr[1] == cr[2] \
                and resp.content_length in (None, cr[2])
        if not whole:
            resp.close()
            return HeadResult(HeadKind.PASS, reason=reason, hit_for_pass=hit_for_pass)
        if resp.status == 206:  # the whole representation: relay it as a 200
            resp.status = 200
            resp.headers = {k: v for k, v in resp.headers.items() if k != "content-range"}
        res = HeadResult(HeadKind.PASS, reason=reason, resp=resp, hit_for_pass=hit_for_pass)

        def close_unclaimed() -> None:
            r = res.claim()
            if r is not None:
                r.close()

        asyncio.get_running_loop().call_later(UNCLAIMED_CLOSE, close_unclaimed)
        return res

    async def _head_stream(self, key: str, resp: OriginResponse, headers: Headers,
                           fields: list[str], t_req: float, t_resp: float, req: Headers,
                           fut: asyncio.Future[HeadResult], saved: asyncio.Future[None]
                           ) -> HeadResult:
        """A storable 200 without Content-Length: stream it to the waiters as it arrives,
        spooled chunk by chunk into temp files; once it has ended cleanly, write the meta
        and commit the chunks (nothing at all if it was cut short or grew past the disk
        tier). Requests arriving meanwhile join the flight (``streams``)."""
        limit = getattr(getattr(self.store, "disk", None), "capacity", 0)
        if not self.storing or limit <= 0 or getattr(self.store, "disk_full", False):
            return self._pass(resp, "not storing now", hit_for_pass=False)
        since = self.store.change_mark()  # a purge during the stream: nothing stored
        skey = primary_of(key)
        pointer = None
        if fields:
            skey, pointer = plan_variant(self.store, key, fields, req, t_resp)
        fl = StreamFlight(key, self.chunk_size, headers, vary_values(fields, req), limit,
                          lambda i: self.store.new_stream_writer(skey, i))
        self.streams[key] = fl
        res = HeadResult(HeadKind.STREAM, stream=fl)
        saved.set_result(None)
        fut.set_result(res)
        if self.heads.get(key) is fut:
            del self.heads[key]
        whole = end_check(resp)
        try:
            try:
                async for data in resp.iter_body():
                    self.stats.origin_bytes += len(data)
                    fl.feed(data)
                    if not await fl.room():
                        resp.close()
                        fl.fail("relayed body without readers")
                        return res
                    if not fl.storing and self.streams.get(key) is fl:
                        del self.streams[key]  # relayed only: late comers fetch for themselves
            except OriginError as e:
                resp.close()
                fl.fail(e.reason)
                return res
            except BaseException:
                resp.close()
                fl.fail("fill cancelled")
                raise
            if not whole():
                resp.close()
                fl.fail("origin connection reset mid-body")
                return res
            resp.release()
            fl.end()
            if await fl.flush():
                meta = ObjectMeta.from_stored(skey, fl.size, StoredResponse(200, headers, t_req,
                                                                            t_resp),
                                              vary=fl.vary)
                if meta.etag is None and meta.last_modified is None:
                    meta = _internal_etag(meta, t_resp)
                await self._commit_stream(fl, meta, pointer, since)
        finally:
            if self.streams.get(key) is fl:
                del self.streams[key]
            fl.stop_storing("done")  # writers not committed are dropped
            fl.held = False
            fl.close_if_idle()
        return res

    async def _commit_stream(self, fl: StreamFlight, meta: ObjectMeta,
                             pointer: ObjectMeta | None, since: int) -> None:
        """Chunks bound to the meta's version (length checked) and placed, then the meta:
        other workers that see the meta find the chunks (Store.commit_stream)."""
        writers = [w for _, w in sorted(fl.writers.items())]
        fl.writers.clear()  # committed or aborted by commit_stream, never by stop_storing
        try:
            for w in writers:
                w.bind(meta)
            await asyncio.to_thread(self.store.commit_stream, meta, writers, pointer, since)
        except OSError:
            self.stats.disk_full_since = self.clock()
        except Exception:
            self.stats.store_failures += 1
            log.exception("storing a streamed body failed")
        finally:
            for w in writers:
                w.abort()  # a no-op once committed

    async def revalidate_in_background(self, meta: ObjectMeta, path: str, query: str,
                                       req: Headers) -> None:
        """stale-while-revalidate: one background revalidation per object at a time."""
        if meta.key in self.heads:
            return
        await self.head(meta.key, 0, path, query, req, meta)

    async def settle(self) -> None:
        """Wait until every fetch and commit under way has finished (tests, shutdown)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def close(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        for t in list(self.tasks):
            with contextlib.suppress(BaseException):
                await t


class DiskSink:
    """A chunk's bytes on their way to its ChunkWriter: written from a worker thread in
    256 KiB batches, in order, so page-cache writes (which block under write-back throttling)
    never stall the event loop that serves hits. A write error drops the chunk, not the
    stream: readers are fed from memory regardless."""

    FLUSH = 256 * 1024
    __slots__ = ("writer", "flights", "pending", "npend", "task", "failed")

    def __init__(self, writer: Any, flights: Flights) -> None:
        self.writer = writer
        self.flights = flights
        self.pending: list[Any] = []
        self.npend = 0
        self.task: asyncio.Task[None] | None = None
        self.failed = False

    def add(self, data: Any) -> None:
        if self.failed:
            return
        self.pending.append(data)
        self.npend += len(data)
        if self.npend >= self.FLUSH:
            self._flush()

    def _flush(self) -> None:
        buf = b"".join(self.pending)
        self.pending, self.npend = [], 0
        self.task = asyncio.get_running_loop().create_task(self._write(self.task, buf))

    async def _write(self, prev: asyncio.Task[None] | None, buf: bytes) -> None:
        if prev is not None:
            await prev
        if self.failed:
            return
        try:
            await asyncio.to_thread(self.writer.write, buf)
        except (OSError, ValueError) as e:  # disk full, or the store dropped the writer
            if isinstance(e, OSError):
                self.flights.stats.disk_full_since = self.flights.clock()
            self.failed = True
            self.writer.abort()

    async def close(self) -> Any:
        """All bytes written: the writer, ready to commit (None if writing failed)."""
        if self.pending and not self.failed:
            self._flush()
        if self.task is not None:
            await self.task
        return None if self.failed else self.writer

    def abort(self) -> None:
        self.failed = True
        t = self.task
        if t is not None and not t.done():
            t.add_done_callback(lambda _t: self.writer.abort())
        else:
            self.writer.abort()


def _internal_etag(meta: ObjectMeta, t_resp: float) -> ObjectMeta:
    """No validator: the store's version (size/ETag/Last-Modified) could not tell this
    response from an earlier one of the same size, so give it an internal one (never sent to
    clients: responses carry the stored headers)."""
    return meta.replace(etag=f'{_INTERNAL_TAG}{t_resp:.6f}"')


def has_validator(meta: ObjectMeta) -> bool:
    """Did the origin name this version (ETag or Last-Modified)? Else its chunks are trusted
    only as parts of the one answer they came from (Flights.chunks_trusted)."""
    return meta.etag is None or not meta.etag.startswith(_INTERNAL_TAG)


def fkey(meta: ObjectMeta, index: int) -> str:
    """Flight table key: the version is part of it, so a changed object never joins old bytes."""
    return f"{meta.version}:{meta.key}#{index}"


def meta_header_value(meta: ObjectMeta) -> str:
    """The meta a shard owner hands to a peer worker (one line of JSON)."""
    return json.dumps(meta.to_dict(), separators=(",", ":"))
