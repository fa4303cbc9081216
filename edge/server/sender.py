"""Sending a stored response's body: memory pieces with the header in one write, disk pieces
by os.sendfile on the socket (waiting for writability on a dup of its fd: uvloop has no
loop.sendfile and refuses a writer on a transport's own fd), or pread + write as the always
tested fallback; chunks still being fetched are streamed from their flight as bytes arrive.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from edge.flights import FlightAbandoned, FlightFailed, fkey
from edge.server.protocol import HttpConnection, Request
from edge.store.meta import ObjectMeta

# measured (bench serve): transport.write of a 2 MiB bytes costs ~2.4x the CPU of os.sendfile
# of the same page-cached file; below this size both cost the same, so memory wins there
SENDFILE_MIN = 64 * 1024
log = logging.getLogger("edge.sender")


class BodySender:
    """Mixin of EdgeApp: body items -> socket."""

    # ---- body sending: sync as far as possible, then a task --------------------------------
    def send_body(self, conn: HttpConnection, req: Request, meta: ObjectMeta, body: list[Any],
                  i: int, status: int, word: str, npath: str, head: bytes = b"") -> None:
        """Send the header and body items without awaiting as far as the socket allows. Small
        pieces go out with the header in one write (one send() per small hit); large disk
        pieces with os.sendfile once the transport's buffer is empty, from a cached open fd
        (edge.server.fdcache). When the socket is full before or during a sendfile, this is
        called again from a writability callback (no task, no future: the segment hit path
        stays as lean as the bare sendfile server's); anything else that must wait (a chunk
        still being fetched, a large memory piece, a paused transport) continues in a task."""
        wait = False  # the socket is full: come back here once it is writable
        n = len(body)
        store = self.store
        pend: list[Any] = [head] if head else []
        nb = 0
        while i < n:
            it = body[i]
            if type(it) is not tuple:
                pend.append(it)
                nb += len(it)
                i += 1
                continue
            index, off, ln, ref = it
            if ref is None:
                break
            if ref.data is not None and (ln < SENDFILE_MIN or not ref.path
                                         or not self.use_sendfile):
                if ln < SENDFILE_MIN:
                    pend.append(memoryview(ref.data)[off:off + ln])
                    nb += ln
                    i += 1
                    continue
                if pend:
                    conn.write_joined(pend, nb)
                    pend, nb = [], 0
                conn.write(memoryview(ref.data)[off:off + ln])
                i += 1
                if conn.write_paused:
                    break
                continue
            if pend:
                conn.write_joined(pend, nb)
                pend, nb = [], 0
            if conn.closed:
                break
            if not self.use_sendfile or conn.sockfd < 0:
                break
            if conn.buffered():  # the header is still queued: the body must follow it
                wait = True
                break
            try:
                fd = self.fds.get(ref, time.monotonic())  # owned by the cache: no close
                sent = conn.sendfile_now(fd, off, ln)
            except (FileNotFoundError, EOFError):  # gone or cut short: fetched again
                store.chunk_missing(meta, index)
                self._hot_drop(self._hot_key(req) or req.target)  # type: ignore[attr-defined]
                body[i] = (index, off, ln, None)
                break
            except OSError:
                conn.abort()
                self._log(conn, req, status, word)
                return
            if sent == ln:
                i += 1
                continue
            body[i] = (index, off + sent, ln - sent, ref)
            wait = True
            break
        if pend:
            conn.write_joined(pend, nb)
        if conn.closed:
            self._log(conn, req, status, word)
            return
        if i >= n:
            self._log(conn, req, status, word)
            conn.finish()
            return
        if wait:
            conn.when_writable(lambda: self.send_body(conn, req, meta, body, i, status, word,
                                                      npath))
            return
        self._spawn_req(conn, req, self._send_rest(conn, req, meta, body, i, status, word, npath))

    async def _send_rest(self, conn: HttpConnection, req: Request, meta: ObjectMeta,
                         body: list[Any], i: int, status: int, word: str, npath: str) -> None:
        try:
            await self._send_items(conn, req, meta, body, i, npath)
        except (FlightFailed, ConnectionError, OSError) as e:
            if not isinstance(e, ConnectionError):
                log.debug("closing mid-body: %s", e)
            conn.abort()
            self._log(conn, req, status, word)
            return
        self._log(conn, req, status, word)
        conn.finish()

    async def _send_items(self, conn: HttpConnection, req: Request, meta: ObjectMeta,
                          body: list[Any], i: int, npath: str) -> None:
        store = self.store
        query = req.query if self.origin.kind == "http" else ""
        for j in range(i, len(body)):
            it = body[j]
            if conn.closed:
                raise ConnectionResetError("client went away")
            if type(it) is not tuple:
                await conn.drain()
                conn.write(it)
                continue
            index, off, ln, ref = it
            if ref is None:
                ref = store.get_chunk(meta, index)
            if ref is None:
                fl = self.flights.chunks.get(fkey(meta, index))
                if fl is None:
                    fl = self.flights.chunk_flight(meta, index, npath, query, req.headers)
                self._read_ahead(meta, body, j, npath, query, req)
                pos, end = off, off + ln
                while pos < end:
                    try:
                        data = await fl.read(pos, end)
                    except FlightAbandoned:  # its feeder (the fill) stopped: fetch it here
                        fl = self.flights.chunk_flight(meta, index, npath, query, req.headers)
                        continue
                    if not data:
                        raise FlightFailed("chunk ended early")
                    await conn.drain()
                    conn.write(data)
                    pos += len(data)
                continue
            if ref.data is not None and (ln < SENDFILE_MIN or not ref.path
                                         or not self.use_sendfile):
                await conn.drain()
                conn.write(memoryview(ref.data)[off:off + ln])
                continue
            try:
                fd = ref.open_fd()
                store.sent_unread(ref)
            except FileNotFoundError:
                store.chunk_missing(meta, index)
                body[j] = (index, off, ln, None)
                body_rest = body[j:]
                await self._send_items(conn, req, meta, body_rest, 0, npath)
                return
            try:
                await self._send_file(conn, fd, off, ln)
            except EOFError:  # cut short on disk mid-answer: this answer is cut, the next
                store.chunk_missing(meta, index)  # request fetches the chunk again
                raise OSError("chunk file shorter than indexed") from None
            finally:
                os.close(fd)

    def _read_ahead(self, meta: ObjectMeta, body: list[Any], j: int, npath: str, query: str,
                    req: Request) -> None:
        """Start the next missing chunk's fetch now, so it arrives while this one streams."""
        for k in range(j + 1, min(j + 4, len(body))):
            it = body[k]
            if type(it) is tuple and it[0] != body[j][0]:
                index = it[0]
                if (it[3] is None and fkey(meta, index) not in self.flights.chunks
                        and self.store.get_chunk(meta, index) is None):
                    self.flights.chunk_flight(meta, index, npath, query, req.headers)
                return

    async def _send_file(self, conn: HttpConnection, fd: int, off: int, ln: int) -> None:
        if self.use_sendfile and conn.sockfd >= 0:
            while ln > 0:
                if conn.buffered():
                    await conn.drain()
                    if conn.buffered():
                        await conn.writable()
                        continue
                n = conn.sendfile_now(fd, off, ln)
                if n == 0:
                    await conn.writable()
                    continue
                off += n
                ln -= n
            return
        step = 256 * 1024
        while ln > 0:
            data = os.pread(fd, min(step, ln), off)
            if not data:
                raise EOFError("chunk file shorter than indexed")
            await conn.drain()
            conn.write(data)
            off += len(data)
            ln -= len(data)

