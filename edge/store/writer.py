"""Writing one chunk: temp file -> verify -> fsync -> rename, so only complete chunks exist
under their final names and a crash leaves nothing but temp garbage."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from edge.store.fsio import DiskFull, is_disk_full, unlink_quiet, write_all
from edge.store.integrity import crc
from edge.store.meta import ObjectMeta

if TYPE_CHECKING:
    from edge.store.store import Store

_OPEN, _COMMITTED, _ABORTED = "open", "committed", "aborted"


class ChunkWriter:
    """Created by ``Store.new_writer``.  ``write`` may run on the event loop (page-cache writes);
    ``commit`` fsyncs and renames: call it in a thread.  ``tmp_path``/``written`` let a
    read-while-writer reader follow the bytes as they land."""

    def __init__(self, store: Store, meta: ObjectMeta, index: int, length: int,
                 keep: bool) -> None:
        self.meta = meta
        self.version = meta.version
        self.index = index
        self.length = length
        self.written = 0
        self.crc = 0  # of the bytes written so far (edge.store.integrity)
        self.state = _OPEN
        self._store = store
        self._released = False
        self._keep: list[bytes] | None = [] if keep else None
        self.tmp_path = store.layout.temp_path()
        hook = store.cfg.fault_hook
        try:
            if hook:
                hook("create", self.tmp_path)
            self._fd = os.open(self.tmp_path,
                               os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as e:
            self.state = _ABORTED
            self._fd = -1
            self._release()
            if is_disk_full(e):
                store._note_disk_full()
                raise DiskFull(e.errno, f"disk full creating chunk: {e.strerror}") from e
            raise

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.state != _OPEN:
            raise ValueError(f"chunk writer is {self.state}")
        n = len(data)
        if self.written + n > self.length:
            self.abort()
            raise ValueError(f"chunk {self.index} overflows its length {self.length}")
        try:
            hook = self._store.cfg.fault_hook
            if hook:
                hook("write", self.tmp_path)
            write_all(self._fd, data)
        except OSError as e:
            self.abort()
            if is_disk_full(e):
                self._store._note_disk_full()
                raise DiskFull(e.errno, f"disk full writing chunk: {e.strerror}") from e
            raise
        self.written += n
        self.crc = crc(data, self.crc)
        if self._keep is not None:
            self._keep.append(bytes(data))

    def bind(self, meta: ObjectMeta) -> None:
        """Give a writer opened before its object's length was known (an origin body without
        Content-Length, ``Store.new_stream_writer``) the object's final meta: the chunk is
        checked against that meta's bounds and carries its version from now on."""
        start, end = self._store.chunk_bounds(meta, self.index)
        if meta.key != self.meta.key:
            raise ValueError("a stream writer cannot change its object key")
        self.meta = meta
        self.version = meta.version
        self.length = end - start

    def commit(self) -> bool:
        """Make the chunk visible if it is complete and its object still has this version.
        False (and nothing visible) otherwise.  Raises DiskFull if fsync/rename hit ENOSPC."""
        return self._store._commit(self)

    def abort(self) -> None:
        """Drop the temp file; the chunk never becomes visible.  Idempotent."""
        if self.state == _OPEN:
            self.state = _ABORTED
        self._close_fd()
        if self.state != _COMMITTED:
            unlink_quiet(self.tmp_path)
        self._keep = None
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._store._writer_done(self.meta.key)

    def _close_fd(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _data(self) -> bytes | None:
        keep, self._keep = self._keep, None
        return b"".join(keep) if keep is not None else None

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.state == _OPEN:
            self.abort()

    def __del__(self) -> None:  # a forgotten writer must not leak its fd
        try:
            if self.state == _OPEN:
                self.abort()
        except Exception:
            pass
