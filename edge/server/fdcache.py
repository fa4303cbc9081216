"""Open chunk files kept for reuse by sendfile (nginx's open_file_cache): a large hit then
costs one sendfile instead of openat + sendfile + close.

Correctness rests on two rules:
- An fd is reused only for the very ChunkRef object the store handed out with it. The store
  hands out a new ref (or none) after anything that changes what a path may serve in this
  process: a purge, a new version, an eviction, or a change another worker made (seen through
  the store's journal before the meta lookup that precedes every hit).
- An fd is reused for at most ``valid`` seconds and expired entries are closed by ``sweep``
  (called once a second). A chunk another worker evicted is unlinked while our index may still
  name it; its open fd reads the same bytes of the same version, but must not keep the disk
  space for long, and the next open after expiry finds the file gone (FileNotFoundError, as
  without this cache).
"""

from __future__ import annotations

import os
from typing import Any

DEFAULT_SIZE = 64  # open files kept (2 MiB chunks: at most 128 MiB held after an unlink)
DEFAULT_VALID = 1.0  # seconds an fd is reused before the path is opened again


class FdCache:
    def __init__(self, size: int = DEFAULT_SIZE, valid: float = DEFAULT_VALID,
                 on_open: Any = None) -> None:
        """on_open(ref): told of every file opened (the store's sent_unread: what sendfile
        sends is never read by us, so the scrubber checks it soon)."""
        self.size = size
        self.valid = valid
        self.on_open = on_open
        self._fds: dict[str, tuple[Any, int, float]] = {}  # path -> (ref, fd, expires)
        self.opens = 0  # files opened (a reuse costs nothing, not even a count)

    def __len__(self) -> int:
        return len(self._fds)

    def get(self, ref: Any, now: float) -> int:
        """An open fd of ref's file, owned by the cache (never close it). Raises
        FileNotFoundError when the file is gone."""
        e = self._fds.get(ref.path)
        if e is not None and e[0] is ref and now < e[2]:
            return e[1]
        return self._open(ref, now)

    def _open(self, ref: Any, now: float) -> int:
        path = ref.path
        e = self._fds.pop(path, None)
        if e is not None:  # another ref for this path, or past its validity
            os.close(e[1])
        fd = ref.open_fd()
        self.opens += 1
        if self.on_open is not None:
            self.on_open(ref)
        if len(self._fds) >= self.size:
            old = next(iter(self._fds))  # the oldest opened
            os.close(self._fds.pop(old)[1])
        self._fds[path] = (ref, fd, now + self.valid)
        return fd

    def sweep(self, now: float) -> None:
        """Close the fds past their validity."""
        dead = [p for p, e in self._fds.items() if now >= e[2]]
        for p in dead:
            os.close(self._fds.pop(p)[1])

    def clear(self) -> None:
        """Close everything (a purge in this process, shutdown)."""
        fds, self._fds = self._fds, {}
        for _, fd, _ in fds.values():
            os.close(fd)
