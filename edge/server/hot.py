"""Prepared answers for plain GETs of whole stored objects (the hit path of segments and
small objects).

A general-path hit of a fresh, unvaried object whose every chunk is stored leaves behind a
HotEntry: the status line and headers up to Age, and either the body bytes (small objects
held in memory: one write per hit) or the chunk files to sendfile (larger ones). A later plain
GET of the same raw target (no Range, conditional, credentials or client cache directives;
HTTP/1.1 keep-alive) is answered with one dict lookup, the same freshness rule (lifetime >
age), the meta re-checked against the store (purge or new version => entry dropped), and the
prepared header. Chunk files are named by object version and never rewritten, so a file entry
stays right for its meta; a chunk evicted since is found missing when opened and fetched
again (BodySender). Policy bookkeeping for these hits is batched once a second off the loop.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from functools import partial
from json.encoder import encode_basestring_ascii as encode_json_str
from typing import TYPE_CHECKING, Any

from contracts.tokens import TOKEN_PARAM, TokenResult, verify
from edge.flights import has_validator
from edge.server.protocol import HOT_BLOCKERS, HttpConnection, Request, status_line
from edge.store.meta import ObjectMeta
from edge.store.refs import ChunkRef

if TYPE_CHECKING:
    from edge.server.app import MetaView


def hot_log_fields(path: str, size: int) -> str:
    """The access-log JSON fields of a hot answer that do not change between its hits."""
    return (f'"method":"GET","path":{encode_json_str(path)},"status":200,"bytes":{size},'
            f'"cache":"hit"')


_TOKEN_EQ = TOKEN_PARAM + "="
HOT_MEMORY_MAX = 64 * 1024  # larger objects are answered from their chunk files (sendfile)
HOT_HITS_CAP = 8  # policy hits recorded per hot entry and second, at most
HOT_RECORD_SLICE = 256  # store.record_hit calls per loop turn



def _only_token(query: str) -> bool:
    """A query that is only the URL token (signed URLs of one object share an answer)."""
    return query.startswith(_TOKEN_EQ) and "&" not in query and "#" not in query

class HotEntry:
    """A ready answer for a plain GET of a whole stored object (see _hot_hit).

    ``resp`` is the response for the current whole seconds of Age and of the Cache-Status
    ttl: status line and headers, then the body when it is held in memory (``items`` None);
    it is rebuilt once either second has changed (``resp_until``), so a hit in between
    writes a prepared bytes object. With ``items`` (body items of BodySender: chunk index,
    offset, length, ref) the body is sent from the chunk files after it. The answer is fresh
    until ``fresh_until`` (the freshness rule lifetime > age, solved for the clock once)."""

    __slots__ = ("key", "meta", "view", "prefix", "body", "items", "npath", "chunks", "remote",
                 "size", "length", "resp", "resp_until", "fresh_until", "hits", "logmid",
                 "upstream")

    def __init__(self, key: str, meta: ObjectMeta, view: MetaView, prefix: bytes,
                 body: bytes | memoryview,
                 chunks: tuple[int, ...], remote: tuple[tuple[str, int], ...],
                 logmid: str, items: tuple[Any, ...] | None = None, npath: str = "") -> None:
        self.key = key
        self.meta = meta
        self.view = view
        self.prefix = prefix  # status line and headers up to (not incl.) Age
        self.body = body  # b"" when the body is sent from files
        self.items = items
        self.npath = npath  # for refetching a chunk found missing
        self.chunks = chunks
        self.remote = remote
        self.size = len(body)  # bytes held in memory
        self.length = meta.size  # body bytes of one answer
        self.resp = b""
        self.resp_until = float("-inf")
        # age(now) = age_at + (now - rt), fresh while lifetime > age(now)
        self.fresh_until = view.rt + view.lifetime - view.age_at
        self.hits = 0  # since the last flush_hot_hits
        self.logmid = logmid  # the access-log fields that never change for this answer
        # the upstream caches' Cache-Status members, in front of this edge's (RFC 9211 §2)
        self.upstream = f"{view.upstream}, ".encode() if view.upstream else b""

    def response(self, now: float) -> bytes:
        """The full response at clock time now (rebuilt when a whole second changes)."""
        if now < self.resp_until:
            return self.resp
        v = self.view
        age = max(0.0, v.age_at + (now - v.rt))
        ttl = v.lifetime - age
        a = int(age)
        resp = self.resp = b"".join((self.prefix, b"age: %d\r\ncache-status: " % a,
                                     self.upstream, v.hit_status(ttl).encode(), b"\r\n\r\n",
                                     self.body))
        if self.size:  # the body is kept once: as the tail of the prepared response
            self.body = memoryview(resp)[len(resp) - self.size:]
        # valid until Age reaches a + 1 or ttl its next whole second down, whichever is first
        # (less a millisecond: float rounding never lets a changed second through; a rebuild
        # just before the change gives the same bytes)
        self.resp_until = now + min(a + 1 - age, ttl - math.floor(ttl)) - 1e-3
        return resp


class HotPath:
    """Mixin of EdgeApp: the hot table and its answers."""

    # ---- hot responses: whole stored objects, plain GETs -----------------------------------
    def hot_lookup(self, target: str, client: str) -> HotEntry | None:
        """The prepared answer for this raw request target, if any. Where URL tokens are
        required, every player's URL differs by its token while the answer does not: the
        entry is found by the path when the query is just a token, and the token must
        verify for that path and client on every request (else the general path says 403)."""
        if self.tokens is None:  # type: ignore[attr-defined]
            return self.hot.get(target)  # type: ignore[attr-defined]
        path, _, query = target.partition("?")
        if not _only_token(query):
            return None
        e = self.hot.get(path)  # type: ignore[attr-defined]
        if e is None or verify(query[len(_TOKEN_EQ):], e.npath, self.clock(),  # type: ignore[attr-defined]
                               self.tokens, client) is not TokenResult.OK:  # type: ignore[attr-defined]
            return None
        return e

    def _hot_key(self, req: Request) -> str | None:
        """Where this request's answer is kept in the hot table (see hot_lookup)."""
        if self.tokens is None:  # type: ignore[attr-defined]
            return req.target
        return req.path if _only_token(req.query) else None

    def _hot_hit(self, conn: HttpConnection, req: Request, e: HotEntry) -> bool:
        """The whole answer to a plain GET of a stored object: one dict lookup, the same
        freshness rule (lifetime > age), the meta re-checked against the store (so a purge or
        a new version is never missed), one write (plus sendfile of the chunk files for a
        file entry). False: take the general path."""
        h = req.headers
        if (req.method != "GET" or not h.keys().isdisjoint(HOT_BLOCKERS) or req.http10
                or not conn.keep_alive or self.draining or conn.internal or not conn.public):
            return False
        meta = self.store.get_meta(e.key)
        now = self.clock()
        if meta is not e.meta or now >= e.fresh_until:
            self._hot_drop(self._hot_key(req) or req.target)
            return False
        if not e.hits:
            self.hot_touched.append(e)
        e.hits += 1
        if e.items is not None:
            self.send_body(conn, req, meta, list(e.items), 0, 200, "hit",  # type: ignore[attr-defined]
                           e.npath, e.response(now))
            return True
        conn.write_joined([e.response(now)], e.size)
        self._log(conn, req, 200, "hit")
        conn.finish()
        return True

    def hot_direct(self, conn: HttpConnection, target: str, t0: float) -> bool:
        """The hot answer straight from the read that brought the request (PLAIN_GET), before
        the parser runs: the caller saw one whole plain keep-alive HTTP/1.1 GET with no
        blocking field on an idle public connection. Same checks and answer as _hot_hit,
        without a Request object; counted and logged in bulk (fold_hot_counts, the access
        rows). False: not answered here (the parser and the general path take it)."""
        e = (self.hot.get(target) if self.tokens is None  # type: ignore[attr-defined]
             else self.hot_lookup(target, conn.client))
        if e is None:
            return False
        now = self.clock()
        if now >= e.fresh_until or self.store.get_meta(e.key) is not e.meta or self.draining:
            return False  # the general path drops or revalidates it
        if not e.hits:
            self.hot_touched.append(e)
        e.hits += 1
        conn.transport.write(e.resp if now < e.resp_until  # type: ignore[union-attr]
                             else e.response(now))
        if e.items is not None:
            self._hot_files(conn, target, e, 0, 0, 0, now, t0)
            return True
        self.hot_direct_hits += 1
        self.hot_direct_bytes += e.length
        self.access.append((now, conn.client, e.logmid, (time.monotonic() - t0) * 1000.0))
        return True

    def _hot_files(self, conn: HttpConnection, target: str, e: HotEntry, j: int, off: int,
                   sent: int, now: float, t0: float) -> None:
        """A file entry's body after its header, from item j (``off`` bytes of it already
        sent): each chunk file by sendfile as far as the socket takes it; when it is full,
        the connection holds (later requests queue) and this goes on from a writability
        callback, as the bare sendfile server does. Anything else (a chunk file gone or cut
        short, the client gone) is handed, from the first unsent byte, to send_body, whose
        rules finish or cut the response and log it. Sent whole, it is counted and logged as
        a memory answer is."""
        items = e.items
        assert items is not None
        if not conn.closed and not conn.transport.get_write_buffer_size():  # type: ignore[union-attr]
            fds = self.fds  # type: ignore[attr-defined]
            mono = time.monotonic()
            sock = conn.sockfd
            for _, o, ln, ref in items[j:] if j else items:
                try:
                    part = os.sendfile(sock, fds.get(ref, mono), o + off, ln - off)
                except (BlockingIOError, InterruptedError):
                    part = -1
                except OSError:  # file gone, connection reset: the general rules decide
                    break
                if part == ln - off:
                    sent += part
                    j += 1
                    off = 0
                    continue
                if part == 0:
                    break  # the file ended before its length: not a whole answer
                if part > 0:
                    sent += part
                    off += part
                # the socket is full (it took part or nothing): go on when it can take more
                if not conn.busy:
                    conn.hold()
                conn.when_writable(partial(self._hot_files, conn, target, e, j, off, sent, now,
                                           t0))
                return
            else:
                self.hot_direct_hits += 1
                self.hot_direct_bytes += e.length
                self.access.append((now, conn.client, e.logmid,
                                    (time.monotonic() - t0) * 1000.0))
                if conn.busy:
                    conn.finish()
                return
        rest = list(items[j:])
        if off:
            index, o, ln, ref = rest[0]
            rest[0] = (index, o + off, ln - off, ref)
        req = conn.direct_request(target)
        conn.head_sent = True
        conn.sent = sent
        c = self.counters  # type: ignore[attr-defined]
        c.requests += 1
        c.content_requests += 1
        self.send_body(conn, req, e.meta, rest, 0, 200, "hit", e.npath)  # type: ignore[attr-defined]

    def fold_hot_counts(self) -> None:
        """Add the hot path's answers (two plain integers there) to by_cache and the
        counters; everything that reads those calls this first."""
        n = self.hot_direct_hits
        if n:
            self.hot_direct_hits = 0
            self.by_cache["hit"] = self.by_cache.get("hit", 0) + n
            c = self.counters  # type: ignore[attr-defined]
            c.requests += n
            c.content_requests += n
            c.bytes_sent += self.hot_direct_bytes
            self.hot_direct_bytes = 0

    def flush_hot_hits(self) -> None:
        """Tell the store (and, with --workers N, the chunks' owners) about the hot path's
        hits, once a second: each entry counted its hits, so the policy is told per entry
        how often, capped at HOT_HITS_CAP (a policy weighs frequency, not volume). The
        store calls run on the loop, HOT_RECORD_SLICE per turn: in a thread they contended
        for the GIL with the loop on every wakeup (~1,800 futex calls in that second)."""
        touched, self.hot_touched = self.hot_touched, []
        self.fold_hot_counts()
        if not touched:
            return
        calls = []
        rh = self.remote_hits
        for e in touched:
            n = e.hits
            e.hits = 0
            for rk in e.remote:
                rh[rk] = rh.get(rk, 0) + n
            calls += [(e.meta, i) for i in e.chunks] * min(n, HOT_HITS_CAP)
        asyncio.get_running_loop().call_soon(self._record_slice, calls, 0)

    def _record_slice(self, calls: list[tuple[ObjectMeta, int]], i: int) -> None:
        record = self.store.record_hit
        for meta, index in calls[i:i + HOT_RECORD_SLICE]:
            record(meta, index)
        i += HOT_RECORD_SLICE
        if i < len(calls):
            asyncio.get_running_loop().call_soon(self._record_slice, calls, i)

    def _hot_put(self, req: Request, meta: ObjectMeta, view: MetaView, body: list[Any],
                 key: str, npath: str) -> None:
        """Prepare the answer a general-path hit just gave: the body in memory for an object
        up to HOT_MEMORY_MAX whose chunks are all in the memory tier (smaller ones wait for
        that), from the chunk files for a larger one (sendfile on, every chunk on disk)."""
        hkey = self._hot_key(req)
        if hkey is None or not has_validator(meta):  # (its lost chunks: a whole refetch)
            return
        for it in body:
            if type(it) is not tuple or it[3] is None:
                return
        chunks = [it[0] for it in body]
        items: tuple[Any, ...] | None = None
        if meta.size <= HOT_MEMORY_MAX:
            if any(r.data is None for _, _, _, r in body):
                return
            data = b"".join([memoryview(r.data)[o:o + n] for _, o, n, r in body])
            if len(data) > self.hot_max:
                return
        elif self.use_sendfile and all(r.path for _, _, _, r in body):  # type: ignore[attr-defined]
            data = b""
            # a memory-tier ref by its path only: the entry must not hold chunk bytes the
            # memory tier has let go of (a disk ref as it is: the fd cache reuses fds per ref)
            items = tuple((i, o, n, r if r.data is None else ChunkRef(r.path, r.length))
                          for i, o, n, r in body)
        else:
            return
        if self.hot_bytes + len(data) > self.hot_max or len(self.hot) > 100_000:
            self.hot.clear()
            self.hot_bytes = 0
        remote = []
        if self.owns is not None:
            remote = [(f"{meta.key}#{i}", min(self.cs, meta.size - i * self.cs))
                      for i in chunks if not self._owned(meta, i)]
        prefix = b"".join((status_line(200), view.block,
                           f"content-type: {view.ctype}\r\n".encode("latin-1", "replace"),
                           b"content-length: %d\r\naccept-ranges: bytes\r\n" % meta.size))
        self._hot_drop(hkey)
        self.hot[hkey] = HotEntry(key, meta, view, prefix, data, tuple(chunks),
                                        tuple(remote), hot_log_fields(req.path, meta.size),
                                        None if items is None else tuple(items), npath)
        self.hot_bytes += len(data)

    def _hot_drop(self, target: str) -> None:
        old = self.hot.pop(target, None)
        if old is not None:
            self.hot_bytes -= old.size

