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
