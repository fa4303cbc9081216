"""Handles on stored chunks, and the in-memory index entry of an object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from edge.store.integrity import read_chunk
from edge.store.meta import ObjectMeta


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """A complete chunk.  ``data`` is set when it is in the memory tier (serve it directly);
    else send the file at ``path`` (``open_fd`` for sendfile).  A chunk evicted by another
    worker after the lookup makes ``open_fd`` raise FileNotFoundError: treat it as a miss and
    tell the store (``Store.chunk_missing``)."""

    path: str
    length: int
    data: bytes | None = None

    def open_fd(self) -> int:
        return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)

    def read(self) -> bytes:
        """The chunk's bytes (memory tier, else one checked read of the file: ChunkCorrupt
        when they do not match its checksum); blocking."""
        if self.data is not None:
            return self.data
        return read_chunk(self.path, self.length)


@dataclass(slots=True, eq=False)
class Entry:
    """One object in the in-memory index: its meta and the chunks known to be complete."""

    meta: ObjectMeta
    version: str
    chunks: dict[int, ChunkRef] = field(default_factory=dict)  # on disk
    mem: dict[int, ChunkRef] = field(default_factory=dict)  # in the memory tier (data set)
