"""Cross-worker change feed: an append-only file of the object keys each process changed.

Workers sharing one cache directory each keep their own index.  put_meta, purge and removal
append one line ``[writer_id, key]``; every store reads the lines others appended (at most
every POLL_INTERVAL seconds, from get_meta) and re-reads those objects from disk.  A small
O_APPEND write is atomic with respect to other appenders, and a torn last line (a kill -9
mid-append) is simply waited for or skipped.

Every open store holds a shared flock on the file; a store that opens it while nobody else
does (exclusive lock granted) truncates it when it has grown past MAX_BYTES.  Nobody reads it
then, and later openers start at its end, so no change is lost.
"""

from __future__ import annotations

import fcntl
import json
import os

POLL_INTERVAL = 0.05
PREFIX_MARK = "\x00"  # a key starting with it names a purged prefix (object keys start "/")
MAX_READ = 1 << 20
MAX_BYTES = 32 << 20


class Journal:
    def __init__(self, path: str, writer_id: str, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.writer_id = writer_id
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(self._fd).st_size > max_bytes:  # alone: nobody is reading it
                os.ftruncate(self._fd, 0)
        except BlockingIOError:
            pass  # others have it open: leave it
        fcntl.flock(self._fd, fcntl.LOCK_SH)  # (converts an exclusive lock we hold)
        # Start at the end: what happened before start-up is on disk and the loader reads it.
        self._offset = os.fstat(self._fd).st_size
        self._partial = b""

    def append(self, key: str) -> None:
        # Leading newline: ends any torn line a killed writer left, so ours stays readable.
        line = "\n" + json.dumps([self.writer_id, key], separators=(",", ":")) + "\n"
        os.write(self._fd, line.encode("utf-8", "surrogatepass"))

    def read_others(self) -> list[str]:
        """Keys other writers changed since the last call (may be empty)."""
        size = os.fstat(self._fd).st_size
        if size < self._offset:  # truncated by an operator: start over
            self._offset, self._partial = 0, b""
        out: list[str] = []
        while self._offset < size:
            data = os.pread(self._fd, min(size - self._offset, MAX_READ), self._offset)
            if not data:
                break
            self._offset += len(data)
            *lines, self._partial = (self._partial + data).split(b"\n")
            for line in lines:
                if not line:
                    continue
                try:
                    who, key = json.loads(line)
                except (ValueError, TypeError):
                    continue
                if who != self.writer_id and isinstance(key, str):
                    out.append(key)
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
