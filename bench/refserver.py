"""A bare uvloop + httptools hit server: the yardstick ``bench serve`` is validated against.

Not a cache anyone should run: a miss blocks the loop while it fetches the whole object
from the origin (the bench only misses during warm-up). What it is for is the hit path,
with three ways of sending the body so they can be measured rather than guessed:

- ``memory``: the body is bytes in memory, written with ``transport.write``;
- ``sendfile``: the body is a file; the header goes through the transport, then
  ``os.sendfile`` writes the file straight into the socket; on EAGAIN it waits for
  writability on a dup of the socket fd (uvloop refuses add_writer on a transport's fd);
- ``pread``: the body is a file, ``os.pread`` into bytes, then ``transport.write``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import httptools

MODES = ("memory", "sendfile", "pread")
SMALL = 64 * 1024  # below this, header and body go out as one write

_HEAD = (b"HTTP/1.1 200 OK\r\nServer: refserver\r\nContent-Type: application/octet-stream\r\n"
         b"Content-Length: %d\r\nCache-Status: %s\r\n\r\n")
_404 = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass(slots=True)
class Entry:
    size: int
    head_hit: bytes
    body: bytes | None  # memory mode
    fd: int  # file modes, else -1


class Store:
    """Objects by URL path; fills from the origin on first request (blocking, warm-up only)."""

    def __init__(self, origin: str, mode: str, cache_dir: Path) -> None:
        self.origin = origin.rstrip("/")
        self.mode = mode
        self.cache_dir = cache_dir
        self.entries: dict[bytes, Entry] = {}
        self.stats = {"calls": 0, "done": 0, "eagain": 0, "buffered": 0}
        self.coalesce_below = SMALL

    def fill(self, path: bytes) -> tuple[Entry | None, bool]:
        """(entry, hit): file modes first look for another worker's complete file."""
        f = self.cache_dir / hashlib.sha1(path).hexdigest()
        if self.mode != "memory" and f.exists():
            fd = os.open(f, os.O_RDONLY)
            size = os.fstat(fd).st_size
            e = Entry(size, _HEAD % (size, b"refserver; hit"), None, fd)
            self.entries[path] = e
            return e, True
        try:
            with urllib.request.urlopen(self.origin + path.decode(), timeout=10) as r:
                body = r.read()
        except (OSError, ValueError, UnicodeDecodeError):
            return None, False
        size = len(body)
        head = _HEAD % (size, b"refserver; hit")
        if self.mode == "memory":
            e = Entry(size, head, body, -1)
        else:
            tmp = f.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(body)
            os.rename(tmp, f)  # whole files only, shared by every worker
            e = Entry(size, head, None, os.open(f, os.O_RDONLY))
        self.entries[path] = e
        return e, False


class RefProtocol(asyncio.Protocol):
    __slots__ = ("store", "parser", "transport", "sock_fd", "url", "dup_fd", "waiting")

    def __init__(self, store: Store) -> None:
        self.store = store
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.sock_fd = -1
        self.url = b""
        self.dup_fd = -1
        self.waiting = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.sock_fd = transport.get_extra_info("socket").fileno()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(_400)
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        t = self.transport
        assert t is not None
        path = self.url.split(b"?", 1)[0]
        e = self.store.entries.get(path)
        if e is None:
            e, hit = self.store.fill(path)
            if e is None:
                t.write(_404)
                return
            head = e.head_hit if hit else _HEAD % (e.size, b"refserver; fwd=miss; stored")
        else:
            head = e.head_hit
        if self.store.mode == "memory":
            assert e.body is not None
            if e.size < self.store.coalesce_below:
                t.write(head + e.body)
            else:
                t.write(head)
                t.write(e.body)
        elif self.store.mode == "pread":
            body = os.pread(e.fd, e.size, 0)
            if e.size < self.store.coalesce_below:
                t.write(head + body)
            else:
                t.write(head)
                t.write(body)
        else:
            self._sendfile(t, head, e, self.parser.should_keep_alive())
            return  # _sendfile closes when done if not keep-alive
        if not self.parser.should_keep_alive():
            t.close()

    def _sendfile(self, t: asyncio.Transport, head: bytes, e: Entry, keep: bool) -> None:
        t.write(head)
        st = self.store.stats
        if t.get_write_buffer_size():  # header still queued: the body must queue behind it
            st["buffered"] += 1
            t.write(os.pread(e.fd, e.size, 0))
            return
        self._sendfile_from(e, 0, keep)

    def _sendfile_from(self, e: Entry, off: int, keep: bool) -> None:
        st = self.store.stats
        while off < e.size:
            try:
                n = os.sendfile(self.sock_fd, e.fd, off, e.size - off)
            except BlockingIOError:
                self._wait_writable(e, off, keep)
                return
            except OSError:
                assert self.transport is not None
                self.transport.close()
                return
            st["calls"] += 1
            if n == 0:
                break
            off += n
        st["done"] += 1
        assert self.transport is not None
        if self.waiting:
            self.waiting = False
            self.transport.resume_reading()
        if not keep:
            self.transport.close()

    def _wait_writable(self, e: Entry, off: int, keep: bool) -> None:
        """uvloop refuses add_writer on a transport's fd, so watch a dup of it."""
        self.store.stats["eagain"] += 1
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        if self.dup_fd < 0:
            self.dup_fd = os.dup(self.sock_fd)
        if not self.waiting:
            self.waiting = True
            self.transport.pause_reading()

        def writable() -> None:
            loop.remove_writer(self.dup_fd)
            self._sendfile_from(e, off, keep)

        loop.add_writer(self.dup_fd, writable)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.dup_fd >= 0:
            asyncio.get_running_loop().remove_writer(self.dup_fd)
            os.close(self.dup_fd)
            self.dup_fd = -1


async def serve(host: str, port: int, store: Store) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: RefProtocol(store), host, port, backlog=1024,
                                      reuse_port=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    if store.mode == "sendfile":
        print(f"refserver sendfile stats: {store.stats}", file=sys.stderr, flush=True)


def store(a: argparse.Namespace, cache_dir: Path) -> Store:
    st = Store(a.origin, a.mode, cache_dir)
    st.coalesce_below = a.coalesce_below
    return st


def main(argv: list[str] | None = None) -> int:
    import uvloop

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT")
    ap.add_argument("--origin", required=True, help="http://host:port")
    ap.add_argument("--mode", choices=MODES, default="memory")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=1, help="processes on one port (SO_REUSEPORT)")
    ap.add_argument("--coalesce-below", type=int, default=SMALL,
                    help="bodies smaller than this go out in one write with the header")
    a = ap.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    with tempfile.TemporaryDirectory(prefix="refserver-") as tmp:
        cache_dir = a.cache_dir or Path(tmp)
        children: list[int] = []
        for _ in range(a.workers - 1):
            pid = os.fork()
            if pid == 0:  # a worker: serve, then leave the temp dir to the parent
                uvloop.run(serve(host, int(port), store(a, cache_dir)))
                os._exit(0)
            children.append(pid)
        try:
            uvloop.run(serve(host, int(port), store(a, cache_dir)))
        finally:
            for pid in children:
                os.kill(pid, signal.SIGTERM)
            for pid in children:
                os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
