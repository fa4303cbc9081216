"""A cacheable origin body of unknown length (chunked or close-delimited, no Content-Length).

Its length, and so its store version, is known only at the end, so nothing can be committed
while it arrives. The body is cut into chunk-size segments: the one being filled lives in
memory; a complete one is written to its own temp file (a stream ChunkWriter) and read back
from there with pread, so at most two segments per flight sit in memory however long the body
is. Any number of readers stream it from offset 0 while it arrives (read-while-writer);
they await a progress future, never poll.

Once the body has ended cleanly the Flights bind the writers to the object's meta, write the
meta and commit the chunks (each checked against its bounds). If the origin connection dies
first, every writer is aborted (only temp garbage existed) and readers get FlightFailed, which
cuts their response: a truncated body is never stored nor sent as whole.

Past ``limit`` bytes (the disk tier's size) the flight stops storing: writers are aborted and
later segments are relayed from memory only, the origin read waiting for the slowest reader
(about two segments in memory, like a proxy without buffering). Readers keep reading earlier
segments from the still-open read fds of the aborted temp files; no new reader can join.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import Any

from edge.origin_client.base import Headers

READ_MAX = 256 * 1024
PENDING_WRITES = 2  # segments written concurrently before the origin read waits
JOIN_WAIT = 1.0  # relaying: seconds to wait for a first reader before giving the fetch up



def wake(f: asyncio.Future[None] | None) -> None:
    """Resolve a one-shot waiter's future (readers await a fresh one each time)."""
    if f is not None and not f.done():
        f.set_result(None)

class StreamFailed(Exception):
    """Raised to readers: the body cannot be delivered whole (the connection must be cut)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = 502


class StreamFlight:
    """One unknown-length origin body, readable from any offset that is still held."""

    def __init__(self, key: str, chunk_size: int, headers: Headers, vary: dict[str, str],
                 limit: int, new_writer: Callable[[int], Any] | None) -> None:
        self.key = key
        self.cs = chunk_size
        self.headers = headers  # stored end-to-end headers (what clients are sent)
        self.vary = vary
        self.limit = limit
        self.new_writer = new_writer
        self.storing = new_writer is not None
        self.size = 0  # bytes received so far
        self.mem: dict[int, bytearray] = {}
        self.fds: dict[int, int] = {}
        self.writers: dict[int, Any] = {}
        self.writes: dict[int, asyncio.Task[None]] = {}
        self.ended = False
        self.error: StreamFailed | None = None
        self.readers: dict[int, int] = {}  # reader id -> the next offset it asked for
        self._rid = 0
        self.ever_joined = False
        self.held = True  # still listed for new readers (until stored): keep the fds open
        self.stop_reason = ""
        self._progress: asyncio.Future[None] | None = None
        self._moved: asyncio.Future[None] | None = None  # a reader advanced (relay mode)
        self._closed = False

    # ---- feeding (the fetch task) ----------------------------------------------------------
    def _wake(self) -> None:
        f, self._progress = self._progress, None
        wake(f)

    def feed(self, data: bytes | memoryview) -> None:
        mv = memoryview(data)
        cs = self.cs
        while mv:
            i = self.size // cs
            seg = self.mem.get(i)
            if seg is None:
                seg = self.mem[i] = bytearray()
            take = min(len(mv), cs - len(seg))
            seg += mv[:take]
            mv = mv[take:]
            self.size += take
            if len(seg) == cs:
                self._sealed(i)
        if self.storing and self.size > self.limit:
            self.stop_storing("larger than the disk tier")
        self._trim()
        self._wake()

    def _trim(self) -> None:
        """Relaying: drop the segments every reader has passed (the previous one is kept),
        closing the read fds of aborted temp files so their disk space is freed."""
        if self.storing or not self.ever_joined:
            return
        cur = self.size // self.cs
        low = cur - 1
        if self.readers:
            low = min(low, min(self.readers.values()) // self.cs)
        for k in [k for k in self.mem if k < low and k not in self.writes]:
            del self.mem[k]
        for k in [k for k in self.fds if k < low]:  # unlinked temp files: free their space
            with contextlib.suppress(OSError):
                os.close(self.fds.pop(k))

    def _sealed(self, i: int) -> None:
        """Segment i is complete: write it out (when storing)."""
        if self.storing:
            self.writes[i] = asyncio.get_running_loop().create_task(self._write(i))

    async def _write(self, i: int) -> None:
        fd = -1
        try:
            seg = self.mem.get(i)
            if seg is None or not self.storing:
                return
            assert self.new_writer is not None
            w = self.new_writer(i)
            self.writers[i] = w
            await asyncio.to_thread(w.write, bytes(seg))
            fd = os.open(w.tmp_path, os.O_RDONLY | os.O_CLOEXEC)
        except (OSError, ValueError) as e:  # disk full, store refused: relay only
            self.stop_storing(f"write failed: {type(e).__name__}")
            return
        finally:
            self.writes.pop(i, None)
            if fd < 0:
                self.close_if_idle()
        if self._closed:
            os.close(fd)
            return
        self.fds[i] = fd
        self.mem.pop(i, None)  # readers continue from the file
        self.close_if_idle()

    async def room(self) -> bool:
        """Backpressure before the next origin read: while storing, wait while too many
        segments are still being written; while relaying, wait until every reader has
        reached the segment being filled (memory stays at about two segments). False: the
        body is only relayed and nobody reads it any more (or nobody came): stop fetching."""
        while len(self.writes) >= PENDING_WRITES:
            await next(iter(self.writes.values()))
        while not self.storing and self.error is None:
            if not self.readers:
                if self.ever_joined:
                    return False
                self._moved = asyncio.get_running_loop().create_future()
                try:
                    async with asyncio.timeout(JOIN_WAIT):
                        await self._moved
                except TimeoutError:
                    return bool(self.readers)
                continue
            if min(self.readers.values()) >= (self.size // self.cs) * self.cs:
                return True
            self._moved = asyncio.get_running_loop().create_future()
            await self._moved
        return True

    def _reader_moved(self) -> None:
        f, self._moved = self._moved, None
        wake(f)

    async def flush(self) -> bool:
        """The body ended: write the last, partial segment and wait for every write. True if
        all segments are in temp files (the object can be committed)."""
        if self.storing and self.size % self.cs:
            i = self.size // self.cs
            self.writes[i] = asyncio.get_running_loop().create_task(self._write(i))
        while self.writes:
            await asyncio.gather(*list(self.writes.values()), return_exceptions=True)
        n = -(-self.size // self.cs)
        return self.storing and all(i in self.writers for i in range(n))

    def stop_storing(self, reason: str) -> None:
        """Relay only from now on: abort the writers (their temp files go; read fds that are
        open keep earlier segments readable for readers already under way)."""
        if not self.storing:
            return
        self.storing = False
        self.stop_reason = reason
        for w in self.writers.values():
            with contextlib.suppress(Exception):
                w.abort()
        self.writers.clear()
        cur = self.size // self.cs
        for i in [k for k in self.mem if k < cur - 1 and k in self.fds]:
            del self.mem[i]
        self._reader_moved()

    def end(self) -> None:
        """The origin finished the body cleanly: readers may complete their responses."""
        self.ended = True
        self._wake()

    def fail(self, reason: str) -> None:
        if self.error is None and not self.ended:
            self.error = StreamFailed(reason)
        self.stop_storing(reason)
        self._wake()
        self._reader_moved()
        self.close_if_idle()

    # ---- reading (one task per client) -----------------------------------------------------
    @property
    def from_start(self) -> bool:
        """Can a new reader still get the whole body from offset 0?"""
        return self.error is None and self.storing and not self._closed

    async def read(self, pos: int, rid: int = 0) -> bytes:
        """Bytes from ``pos`` as soon as any are there; b"" at the end of a complete body.
        ``rid`` (from ``join``) lets a relaying feeder wait for this reader."""
        if rid:
            self.readers[rid] = pos
            self._reader_moved()
        while True:
            if self.error is not None:
                raise self.error
            if pos < self.size:
                i, off = divmod(pos, self.cs)
                seg = self.mem.get(i)
                if seg is not None and len(seg) > off:
                    return bytes(memoryview(seg)[off:off + READ_MAX])
                fd = self.fds.get(i)
                if fd is not None:
                    n = min(READ_MAX, self.cs - off, self.size - pos)
                    data = os.pread(fd, n, off)
                    if data:
                        return data
                raise StreamFailed("reader fell behind a relayed stream")
            if self.ended:
                return b""
            if self._progress is None:
                self._progress = asyncio.get_running_loop().create_future()
            await self._progress

    def join(self) -> int:
        self._rid += 1
        self.readers[self._rid] = 0
        self.ever_joined = True
        self._reader_moved()
        return self._rid

    def leave(self, rid: int) -> None:
        self.readers.pop(rid, None)
        self._reader_moved()
        self.close_if_idle()

    def close_if_idle(self) -> None:
        """Release the read fds and memory once the body is over and nobody reads it."""
        if (self.readers or self.writes or self.held
                or not (self.ended or self.error is not None)):
            return
        self._closed = True
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()
        self.mem.clear()
