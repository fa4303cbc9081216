"""Store fixtures: real directories, real policies from edge.policy, deterministic payloads."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.policy import make_policy
from edge.store import ObjectMeta, Store, StoreConfig

CS = 64 * 1024  # small chunks keep the tests fast


def payload(key: str, size: int) -> bytes:
    """The object's bytes, derivable from its key alone (subprocesses and checks agree)."""
    return random.Random(key).randbytes(size)


def meta_for(key: str, size: int, etag: str = '"v1"', **kw) -> ObjectMeta:
    return ObjectMeta(key=key, size=size, etag=etag, content_type="video/mp2t", **kw)


def fill(store: Store, meta: ObjectMeta, data: bytes | None = None) -> None:
    """put_meta then write and commit every chunk, as the server's miss path does."""
    data = payload(meta.key, meta.size) if data is None else data
    store.put_meta(meta)
    for i in range(store.chunk_count(meta)):
        a, b = store.chunk_bounds(meta, i)
        w = store.new_writer(meta, i)
        w.write(data[a:b])
        assert w.commit(), f"chunk {i} of {meta.key} not committed"


def read_chunk(store: Store, meta: ObjectMeta, i: int) -> bytes | None:
    ref = store.get_chunk(meta, i)
    if ref is None:
        return None
    if ref.data is not None:
        return ref.data
    fd = ref.open_fd()
    try:
        return os.pread(fd, ref.length + 1, 0)
    finally:
        os.close(fd)


def read_all(store: Store, meta: ObjectMeta) -> bytes | None:
    parts = [read_chunk(store, meta, i) for i in range(store.chunk_count(meta))]
    return None if any(p is None for p in parts) else b"".join(parts)  # type: ignore[arg-type]


def chunk_files(root: Path) -> dict[str, int]:
    """Every chunk file under the cache trees -> its size."""
    out = {}
    for p in root.glob("v1-*/*/*/*/*"):
        if p.name != "meta.json":
            out[str(p)] = p.stat().st_size
    return out


MakeStore = Callable[..., Store]


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[MakeStore]:
    stores: list[Store] = []

    def make(dir: Path | None = None, disk: int = 64 * CS, mem: int = 0, cs: int = CS,
             policy: str = "lru", **kw) -> Store:
        kw.setdefault("fsync", False)
        cfg = StoreConfig(dir or tmp_path / "cache", disk, mem, cs, **kw)
        s = Store(cfg, make_policy(policy, disk), make_policy("lru", mem))
        stores.append(s)
        return s

    yield make
    for s in stores:
        s.close()
