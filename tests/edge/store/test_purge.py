from __future__ import annotations

import pytest

from .conftest import CS, chunk_files, fill, meta_for, payload, read_all


def test_hard_purge_of_a_key_removes_meta_and_chunks(make_store, tmp_path):
    s = make_store(mem=8 * CS)
    m = meta_for("/p/1", 2 * CS)
    fill(s, m)
    assert s.purge(key=m.key) == 1
    assert s.get_meta(m.key) is None
    assert s.get_chunk(m, 0) is None  # also for a request that still holds the meta
    s.flush()
    assert chunk_files(tmp_path / "cache") == {}
    assert s.stats()["disk"].used_bytes == 0 and s.stats()["memory"].used_bytes == 0
    assert s.purge(key=m.key) == 0
    s.check()


def test_prefix_purge_covers_keys_only_on_disk(make_store):
    a = make_store()
    b = make_store()  # another worker: its objects are not in a's index
    fill(a, meta_for("/titles/A/1.ts", 10))
    fill(b, meta_for("/titles/A/2.ts", 10))
    fill(a, meta_for("/titles/B/1.ts", 10))
    assert a.purge(prefix="/titles/A/") == 2
    assert a.get_meta("/titles/A/1.ts") is None
    assert a.get_meta("/titles/A/2.ts") is None
    assert a.get_meta("/titles/B/1.ts") is not None


def test_soft_purge_marks_stale_and_keeps_bytes(make_store):
    s = make_store()
    m = meta_for("/soft", CS + 1)
    fill(s, m)
    assert s.purge(key=m.key, soft=True) == 1
    got = s.get_meta(m.key)
    assert got.soft_purged and got.version == m.version
    assert read_all(s, got) == payload(m.key, m.size)
    s.put_meta(got.replace(soft_purged=False))  # revalidated: 304
    assert not s.get_meta(m.key).soft_purged
    assert read_all(s, m) == payload(m.key, m.size)


def test_remove_object_is_a_hard_purge(make_store):
    s = make_store()
    m = meta_for("/rm", 10)
    fill(s, m)
    s.remove_object(m.key)
    assert s.get_meta(m.key) is None


def test_purge_needs_a_target(make_store):
    s = make_store()
    with pytest.raises(ValueError):
        s.purge()
    with pytest.raises(ValueError):
        s.purge(prefix="")


def test_refetch_after_hard_purge_never_revives_old_chunks(make_store):
    s = make_store()
    m = meta_for("/revive", 2 * CS)  # same validators before and after: only purge tells
    fill(s, m)
    s.purge(key=m.key)
    s.put_meta(m)  # the refetch starts at once, before any background cleanup
    assert s.get_chunk(m, 0) is None and s.get_chunk(m, 1) is None
    s.flush()
    assert s.get_chunk(m, 0) is None


async def test_loader_finishes_an_interrupted_removal(make_store, tmp_path):
    import os
    import subprocess
    import sys

    a = make_store()
    m = meta_for("/half-removed", CS)
    fill(a, m)
    a.close()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    gone = tmp_path / "cache" / "tmp" / f"{dead}.0abc.tmp"  # as _hard_remove leaves it
    os.rename(os.path.dirname(a.layout.meta_path(m.key)), gone)
    b = make_store()
    await b.start()
    assert await b.wait_rebuilt(10)
    assert not gone.exists()
    assert b.get_meta(m.key) is None
