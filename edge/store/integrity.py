"""Chunk checksums. A chunk file carries the CRC-32 of its bytes in an extended attribute,
set on the temporary file before the rename that makes it visible (so it is as durable as the
bytes). A chunk damaged on disk later (same length, other bytes: a bad sector, a stray write)
is then caught by any whole read of it, the memory tier's copy and the scrubber, and its
object is dropped and fetched again instead of being served. A sendfile hit cannot look at
the bytes it sends, so such a file is checked at the scrubber's next step
(``Store.sent_unread``): damage reaches at most the clients of that moment.

A filesystem without user xattrs (or a chunk written before checksums existed) just has no
recorded sum: such chunks are read as before, unchecked."""

from __future__ import annotations

import errno
import os
import zlib

XATTR = "user.edgecdn.crc32"


class ChunkCorrupt(OSError):
    """A chunk's bytes do not match its recorded checksum."""


def crc(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    return zlib.crc32(data, value)


def stamp(fd: int, value: int) -> bool:
    """Record value on the open chunk file; False where the filesystem keeps no xattrs (or no
    room for one): the chunk is stored unchecked rather than not at all."""
    try:
        os.setxattr(fd, XATTR, b"%08x" % value)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSPC, errno.EPERM, errno.E2BIG):
            return False
        raise
    return True


def recorded(fd: int) -> int | None:
    """The chunk's recorded checksum; None when it has none; -1 when the record itself is
    damaged (no chunk can match it)."""
    try:
        raw = os.getxattr(fd, XATTR)
    except OSError:  # ENODATA (never stamped), ENOTSUP
        return None
    try:
        return int(raw, 16) if len(raw) == 8 else -1
    except ValueError:
        return -1


def read_chunk(path: str, length: int) -> bytes:
    """A chunk file's bytes, checked: OSError when it is not ``length`` bytes long,
    ChunkCorrupt when they do not match the recorded checksum. Blocking."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts = []
        got = 0
        while got <= length:
            b = os.read(fd, length + 1 - got)
            if not b:
                break
            parts.append(b)
            got += len(b)
        data = b"".join(parts)
        if len(data) != length:
            raise OSError(errno.EIO, f"chunk {path} has {len(data)} bytes, expected {length}")
        want = recorded(fd)
        if want is not None and zlib.crc32(data) != want:
            raise ChunkCorrupt(errno.EIO, f"chunk {path} does not match its checksum")
        return data
    finally:
        os.close(fd)
