"""Prepared answers for plain GETs of small objects held in memory (the 16 KiB hit path).

A general-path hit of a fresh, unvaried object whose every chunk is in the memory tier leaves
behind a HotEntry: the status line and headers up to Age, and the body bytes. A later plain
GET of the same raw target (no Range, conditional, credentials or client cache directives;
HTTP/1.1 keep-alive) is answered with one dict lookup, the same freshness rule (lifetime >
age), the meta re-checked against the store (purge or new version => entry dropped) and one
write. Policy bookkeeping for these hits is batched once a second off the loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from edge.server.protocol import HOT_BLOCKERS, HttpConnection, Request, status_line
from edge.store.meta import ObjectMeta

if TYPE_CHECKING:
    from edge.server.app import MetaView


class HotEntry:
    """A ready answer for a plain GET of a small object held in memory (see _hot_hit)."""

    __slots__ = ("key", "meta", "view", "prefix", "body", "chunks", "remote", "size")

    def __init__(self, key: str, meta: ObjectMeta, view: MetaView, prefix: bytes, body: bytes,
                 chunks: tuple[int, ...], remote: tuple[tuple[str, int], ...]) -> None:
        self.key = key
        self.meta = meta
        self.view = view
        self.prefix = prefix  # status line and headers up to (not incl.) Age
        self.body = body
        self.chunks = chunks
        self.remote = remote
        self.size = len(body)



class HotPath:
    """Mixin of EdgeApp: the hot table and its answers."""

    # ---- hot responses: small, fully in memory, plain GETs ---------------------------------
    def _hot_hit(self, conn: HttpConnection, req: Request, e: HotEntry) -> bool:
        """The whole answer to a plain GET of a small object held in memory: one dict lookup,
        the same freshness rule (lifetime > age), the meta re-checked against the store (so
        a purge or a new version is never missed), one write. False: take the general path."""
        h = req.headers
        if (req.method != "GET" or not h.keys().isdisjoint(HOT_BLOCKERS) or req.http10
                or not conn.keep_alive or self.draining or conn.internal or not conn.public):
            return False
        meta = self.store.get_meta(e.key)
        view = e.view
        now = self.clock()
        age = view.age_at + (now - view.rt)
        if meta is not e.meta or view.lifetime <= age:
            self._hot_drop(req.target)
            return False
        self.hot_hits.append(e)  # policy bookkeeping in a batch, off the hit (flush_hot_hits)
        for rk in e.remote:
            self.remote_hits[rk] = self.remote_hits.get(rk, 0) + 1
        conn.write_joined([e.prefix, b"age: %d\r\ncache-status: " % age,
                           view.hit_status(view.lifetime - age).encode(), b"\r\n\r\n", e.body],
                          e.size)
        self._log(conn, req, 200, "hit")
        conn.finish()
        return True

    def hot_direct(self, conn: HttpConnection, target: str, e: HotEntry, t0: float) -> bool:
        """The hot answer straight from the parser, before any Request object is built: the
        caller saw a plain keep-alive HTTP/1.1 GET with no blocking header on an idle public
        connection. Same checks and answer as _hot_hit."""
        meta = self.store.get_meta(e.key)
        view = e.view
        now = self.clock()
        age = view.age_at + (now - view.rt)
        if meta is not e.meta or view.lifetime <= age or self.draining:
            return False
        self.counters.requests += 1
        self.counters.content_requests += 1
        self.hot_hits.append(e)
        for rk in e.remote:
            self.remote_hits[rk] = self.remote_hits.get(rk, 0) + 1
        conn.write_joined([e.prefix, b"age: %d\r\ncache-status: " % age,
                           view.hit_status(view.lifetime - age).encode(), b"\r\n\r\n", e.body],
                          e.size)
        self.counters.bytes_sent += e.size
        self.access.append((time.time(), conn.client, "GET", target.partition("?")[0], "", 200,
                            e.size, "hit", (time.monotonic() - t0) * 1000.0))
        self.by_cache["hit"] = self.by_cache.get("hit", 0) + 1
        return True

    def flush_hot_hits(self) -> None:
        """Tell the store about the hot path's hits (once a second, in a worker thread: the
        policies' bookkeeping takes the store's lock). Repeats are counted per entry first:
        a policy weighs how often, capped, not every single hit."""
        batch, self.hot_hits = self.hot_hits, []
        if not batch:
            return
        store = self.store
        counts: dict[int, list[Any]] = {}
        for e in batch:
            c = counts.get(id(e))
            if c is None:
                counts[id(e)] = [e, 1]
            else:
                c[1] += 1

        def record() -> None:
            for e, n in counts.values():
                for _ in range(min(n, 8)):
                    for i in e.chunks:
                        store.record_hit(e.meta, i)

        self._spawn(asyncio.to_thread(record))

    def _hot_put(self, req: Request, meta: ObjectMeta, view: MetaView, body: list[Any],
                 key: str) -> None:
        pieces = []
        chunks = []
        for it in body:
            if type(it) is not tuple:
                return
            index, off, ln, ref = it
            if ref is None or ref.data is None:
                return
            pieces.append(memoryview(ref.data)[off:off + ln])
            chunks.append(index)
        data = b"".join(pieces)
        if len(data) > self.hot_max:
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
                           b"content-length: %d\r\naccept-ranges: bytes\r\n" % len(data)))
        self._hot_drop(req.target)
        self.hot[req.target] = HotEntry(key, meta, view, prefix, data, tuple(chunks),
                                        tuple(remote))
        self.hot_bytes += len(data)

    def _hot_drop(self, target: str) -> None:
        old = self.hot.pop(target, None)
        if old is not None:
            self.hot_bytes -= old.size

