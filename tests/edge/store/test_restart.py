from __future__ import annotations

import os
import subprocess
import sys

from .conftest import CS, chunk_files, fill, meta_for, payload, read_all


async def test_new_store_on_same_dir_finds_everything(make_store, tmp_path):
    a = make_store()
    metas = [meta_for(f"/r/{i}", CS * (i % 3) + 100) for i in range(20)]
    for m in metas:
        fill(a, m)
    a.close()
    b = make_store()
    await b.start()
    assert await b.wait_rebuilt(10)
    assert not b.rebuilding
    assert b.stats()["disk"].used_bytes == sum(m.size for m in metas)
    assert b.stats()["disk"].objects == sum(b.chunk_count(m) for m in metas)
    os.unlink(chunk_files(tmp_path / "cache").popitem()[0])
    for m in metas:  # every object indexed: answered without a disk check
        assert b._objs[m.key].meta == m
        assert len(b._objs[m.key].chunks) == b.chunk_count(m)
    b.check()


async def test_serving_works_while_the_index_rebuilds(make_store):
    a = make_store()
    metas = [meta_for(f"/load/{i:03d}", CS + i) for i in range(60)]
    for m in metas:
        fill(a, m)
    a.close()
    b = make_store(loader_batch=1, loader_sleep=0.03)  # a slow loader, ~2 s
    await b.start()  # returns at once
    assert b.rebuilding
    for m in reversed(metas[-10:]):
        got = b.get_meta(m.key)
        assert got == m
        assert read_all(b, got) == payload(m.key, m.size)
    assert b.rebuilding, "loader finished before the lookups: make it slower"
    assert await b.wait_rebuilt(30)
    assert b.stats()["disk"].used_bytes == sum(m.size for m in metas)  # no double accounting
    b.check()


async def test_loader_removes_garbage_and_keeps_live_temp_files(make_store, tmp_path):
    a = make_store()
    good = meta_for("/good", 2 * CS)
    fill(a, good)
    gone = meta_for("/gone", CS)
    fill(a, gone)
    a.close()
    root = tmp_path / "cache"
    gdir = os.path.dirname(a.layout.meta_path(good.key))
    with open(os.path.join(gdir, f"{good.version}.1"), "r+b") as f:
        f.truncate(CS - 1)  # damaged chunk
    open(os.path.join(gdir, f"{'0' * 16}.0"), "wb").write(b"old version")
    os.unlink(a.layout.meta_path(gone.key))  # chunks without meta: unreachable
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    open(root / "tmp" / f"{dead}.00ff.tmp", "wb").write(b"partial")
    live = root / "tmp" / f"{os.getppid()}.00aa.tmp"
    live.write_bytes(b"another worker is writing this")
    b = make_store()
    await b.start()
    assert await b.wait_rebuilt(10)
    b.flush()
    assert sorted(os.listdir(root / "tmp")) == [live.name]
    assert set(chunk_files(root)) == {b.layout.chunk_path(good.key, good.version, 0)}
    assert b.get_meta(gone.key) is None
    assert b.get_chunk(good, 1) is None
    assert b.get_chunk(good, 0) is not None
    b.check()


async def test_restart_with_a_smaller_disk_evicts_down_to_it(make_store, tmp_path):
    a = make_store(disk=20 * CS)
    for i in range(10):
        fill(a, meta_for(f"/s/{i}", CS))
    a.close()
    b = make_store(disk=4 * CS)
    await b.start()
    assert await b.wait_rebuilt(10)
    b.flush()
    assert sum(chunk_files(tmp_path / "cache").values()) <= 4 * CS
    assert b.stats()["disk"].used_bytes <= 4 * CS
    b.check()


async def test_rebuilt_recency_follows_storage_time(make_store, tmp_path):
    a = make_store(disk=64 * CS)
    metas = [meta_for(f"/age/{i}", CS) for i in range(6)]
    for n, m in enumerate(metas):
        fill(a, m)
        t = 1_000_000 + (5 - n) * 100  # mtimes say /age/0 was stored last
        os.utime(a.layout.meta_path(m.key), (t, t))
    a.close()
    b = make_store(disk=3 * CS)  # room for half: the three most recent by mtime stay
    await b.start()
    assert await b.wait_rebuilt(10)
    b.flush()
    assert [b.get_meta(m.key) is not None for m in metas] == [True] * 3 + [False] * 3
    b.check()
