"""Small crash-safe file primitives: full writes, atomic replace, directory fsync, ENOSPC."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

# cfg.fault_hook(op, path): called before each disk operation; raise OSError to inject a fault.
FaultHook = Callable[[str, str], None]

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFull(OSError):
    """A write failed for lack of space (ENOSPC/EDQUOT): the caller should pass through."""


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quiet(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def replace_into(tmp: str, final: str) -> None:
    """rename(tmp, final), creating final's directory; retried if a concurrent cleaner removed
    the (then empty) directory between makedirs and rename."""
    d = os.path.dirname(final)
    for attempt in range(5):
        os.makedirs(d, exist_ok=True)
        try:
            os.replace(tmp, final)
            return
        except FileNotFoundError:
            if attempt == 4 or not os.path.exists(tmp):
                raise


def atomic_write(tmp: str, final: str, data: bytes, fsync: bool,
                 hook: FaultHook | None = None) -> None:
    """Write data to final atomically: temp file, (fsync), rename, (fsync dir)."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            if hook:
                hook("write", tmp)
            write_all(fd, data)
            if fsync:
                if hook:
                    hook("fsync", tmp)
                os.fsync(fd)
        finally:
            os.close(fd)
        if hook:
            hook("rename", final)
        replace_into(tmp, final)
    except BaseException:
        unlink_quiet(tmp)
        raise
    if fsync:
        fsync_dir(os.path.dirname(final))
