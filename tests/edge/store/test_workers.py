"""Two Store instances on one directory, as two worker processes sharing the disk cache."""

from __future__ import annotations

import threading
import zlib

from .conftest import CS, chunk_files, fill, meta_for, payload, read_all


def shard(n: int, of: int = 2):
    return lambda ck: zlib.crc32(ck.encode()) % of == n


def test_each_worker_accounts_only_the_chunks_it_owns(make_store, tmp_path):
    a = make_store(owns=shard(0))
    b = make_store(owns=shard(1))
    metas = [meta_for(f"/w/{i}", 3 * CS) for i in range(8)]
    for m in metas:
        fill(a, m)  # a writes everything (e.g. while b was starting)
    for m in metas:
        assert read_all(b, b.get_meta(m.key)) == payload(m.key, m.size)
    keys = [f"{m.key}#{i}" for m in metas for i in range(3)]
    assert a.stats()["disk"].objects == sum(shard(0)(k) for k in keys)
    assert b.stats()["disk"].objects == sum(shard(1)(k) for k in keys)
    assert a.stats()["disk"].used_bytes + b.stats()["disk"].used_bytes == sum(
        m.size for m in metas)
    a.check()
    b.check()


def test_purge_and_new_version_reach_the_other_worker(make_store):
    a = make_store(mem=8 * CS)
    b = make_store(mem=8 * CS)
    gone = meta_for("/gone", CS)
    changed = meta_for("/changed", CS, etag='"1"')
    soft = meta_for("/soft", CS)
    for m in (gone, changed, soft):
        fill(a, m)
        b.get_meta(m.key)
        b.record_hit(m, 0)
    assert read_all(b, gone) is not None
    b.poll_changes()  # drain a's earlier put_metas
    a.purge(key=gone.key)
    new = meta_for("/changed", CS, etag='"2"')
    a.put_meta(new)
    a.purge(key=soft.key, soft=True)
    assert b.poll_changes() == 3  # get_meta does this every 50 ms
    b.flush()
    assert b.get_meta(gone.key) is None and b.get_chunk(gone, 0) is None
    assert b.get_meta(changed.key) == new and b.get_chunk(changed, 0) is None
    assert b.get_meta(soft.key).soft_purged
    assert read_all(b, soft) == payload(soft.key, CS)  # soft purge keeps the bytes
    b.check()


def test_concurrent_writers_of_the_same_chunks_on_two_workers(make_store, tmp_path):
    a = make_store()
    b = make_store()
    metas = [meta_for(f"/c/{i}", 2 * CS + 3) for i in range(6)]
    for m in metas:
        a.put_meta(m)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(store):
        try:
            start.wait()
            for m in metas:
                data = payload(m.key, m.size)
                for i in range(store.chunk_count(m)):
                    x, y = store.chunk_bounds(m, i)
                    w = store.new_writer(m, i)
                    w.write(data[x:y])
                    assert w.commit()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(s,)) for s in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    a.flush()
    b.flush()
    assert (tmp_path / "cache" / "tmp").exists() and not list((tmp_path / "cache" / "tmp").iterdir())
    assert len(chunk_files(tmp_path / "cache")) == 18
    for m in metas:
        assert read_all(a, m) == payload(m.key, m.size) == read_all(b, m)
    a.check()
    b.check()


def test_eviction_by_one_worker_is_a_miss_for_the_other(make_store):
    a = make_store(disk=2 * CS)
    b = make_store(disk=64 * CS, owns=lambda ck: False)  # b owns nothing, a evicts
    first = meta_for("/e/first", CS)
    fill(a, first)
    ref = b.get_chunk(b.get_meta(first.key), 0)
    assert ref is not None
    for i in range(3):
        fill(a, meta_for(f"/e/{i}", CS))
    a.flush()
    try:
        ref.open_fd()
        raise AssertionError("evicted chunk still on disk")
    except FileNotFoundError:
        b.chunk_missing(first, 0)
    assert b.get_chunk(first, 0) is None


async def test_two_worker_processes_share_one_directory(make_store, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    child = Path(__file__).with_name("crash_child.py")
    root = Path(__file__).resolve().parents[3]
    env = {**__import__("os").environ, "PYTHONPATH": str(root)}
    procs = [subprocess.Popen([sys.executable, str(child), str(tmp_path / "cache"), "shard",
                               str(n)], cwd=root, env=env, stdout=subprocess.PIPE, text=True)
             for n in (0, 1)]
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    metas = [meta_for(f"/w/{k}", 2 * CS + k) for k in range(20)]
    keys = [f"{m.key}#{i}" for m in metas for i in range(3 if m.size > 2 * CS else 2)]
    # each worker accounted exactly its own shard of the 59 chunks
    assert sorted(int(o[0]) for o in outs) == sorted(
        [sum(shard(0)(k) for k in keys), sum(shard(1)(k) for k in keys)])
    assert sum(int(o[1]) for o in outs) == sum(m.size for m in metas)
    s = make_store()
    await s.start()
    assert await s.wait_rebuilt(10)
    assert not list((tmp_path / "cache" / "tmp").iterdir())
    for m in metas:
        assert read_all(s, s.get_meta(m.key)) == payload(m.key, m.size)
    assert len(chunk_files(tmp_path / "cache")) == len(keys) == 59
