"""Where everything lives under the cache directory: paths are a pure function of the key.

    <dir>/v1-<chunk_size>/ab/cd/<sha1(key)>/meta.json
    <dir>/v1-<chunk_size>/ab/cd/<sha1(key)>/<version>.<index>     complete chunks only
    <dir>/tmp/<pid>.<nonce>.tmp                                    in-flight writes
    <dir>/journal.log                                              cross-worker change feed

Any worker process finds a chunk by path alone, without a shared index.  The chunk size is part
of the tree name: a restart with another chunk size starts a fresh tree (the old one is removed
in the background) instead of misreading chunks cut at other boundaries.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re

TREE_PREFIX = "v1-"
META_NAME = "meta.json"
_CHUNK_NAME = re.compile(r"^([0-9a-f]{16})\.(\d{1,12})$")
_TEMP_NAME = re.compile(r"^(\d+)\.[0-9a-f]+\.tmp$")
_NONCE = os.urandom(6).hex()  # per import: a reused pid after a crash still gets fresh names
_SEQ = itertools.count()


def key_hash(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()


def chunk_name(version: str, index: int) -> str:
    return f"{version}.{index}"


def parse_chunk_name(name: str) -> tuple[str, int] | None:
    """(version, index) for a chunk file name, None for anything else (meta.json, strays)."""
    m = _CHUNK_NAME.match(name)
    return (m.group(1), int(m.group(2))) if m else None


def temp_owner(name: str) -> int | None:
    """The pid that created a temp file (from its name), None if the name is not ours."""
    m = _TEMP_NAME.match(name)
    return int(m.group(1)) if m else None


class Layout:
    __slots__ = ("root", "tree", "tmp", "journal")

    def __init__(self, root: str | os.PathLike[str], chunk_size: int) -> None:
        self.root = os.fspath(root)
        self.tree = os.path.join(self.root, f"{TREE_PREFIX}{chunk_size}")
        self.tmp = os.path.join(self.root, "tmp")
        self.journal = os.path.join(self.root, "journal.log")

    def make_dirs(self) -> None:
        os.makedirs(self.tree, exist_ok=True)
        os.makedirs(self.tmp, exist_ok=True)

    def object_dir(self, key: str) -> str:
        h = key_hash(key)
        return f"{self.tree}/{h[:2]}/{h[2:4]}/{h}"

    def meta_path(self, key: str) -> str:
        return f"{self.object_dir(key)}/{META_NAME}"

    def chunk_path(self, key: str, version: str, index: int) -> str:
        return f"{self.object_dir(key)}/{version}.{index}"

    def temp_path(self) -> str:
        """A fresh temp file name on the cache's filesystem (so rename is atomic)."""
        return f"{self.tmp}/{os.getpid()}.{_NONCE}{next(_SEQ):x}.tmp"

    def old_trees(self) -> list[str]:
        """Trees of other chunk sizes (or layouts) under root: garbage to remove."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        mine = os.path.basename(self.tree)
        return [os.path.join(self.root, n) for n in names
                if n.startswith(TREE_PREFIX) and n != mine]

    def object_dirs(self):  # -> Iterator[str]
        """Every object directory in the tree (a generator: the loader walks it lazily)."""
        for a in _listdir(self.tree):
            pa = f"{self.tree}/{a}"
            for b in _listdir(pa):
                pb = f"{pa}/{b}"
                for h in _listdir(pb):
                    yield f"{pb}/{h}"


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
