from __future__ import annotations

import pytest

from .conftest import CS, chunk_files, fill, meta_for, payload, read_all, read_chunk


def test_disk_eviction_keeps_files_within_capacity(make_store, tmp_path):
    s = make_store(disk=4 * CS)
    metas = [meta_for(f"/titles/T/720p/seg_{i:05d}.ts", CS) for i in range(10)]
    for m in metas:
        fill(s, m)
    s.flush()  # unlinks run on the janitor thread, not in commit's caller
    files = chunk_files(tmp_path / "cache")
    assert sum(files.values()) <= 4 * CS and len(files) == 4
    assert s.stats()["disk"].used_bytes == 4 * CS
    for m in metas[:6]:  # LRU: oldest gone, meta and all
        assert s.get_meta(m.key) is None
    for m in metas[6:]:
        assert read_all(s, m) == payload(m.key, m.size)
    assert s.counters["evictions"] == 6
    s.check()


def test_hits_keep_a_chunk_resident(make_store):
    s = make_store(disk=3 * CS)
    hot = meta_for("/hot", CS)
    fill(s, hot)
    for i in range(6):
        fill(s, meta_for(f"/cold{i}", CS))
        s.record_hit(hot, 0)
    s.flush()
    assert read_chunk(s, hot, 0) == payload(hot.key, CS)
    s.check()


def test_partly_evicted_object_keeps_its_meta(make_store):
    s = make_store(disk=3 * CS)
    big = meta_for("/big", 3 * CS)
    fill(s, big)
    fill(s, meta_for("/newer", CS))  # pushes out chunk 0 of /big
    s.flush()
    assert s.get_meta("/big") == big
    assert s.get_chunk(big, 0) is None
    assert read_chunk(s, big, 2) == payload(big.key, 3 * CS)[2 * CS:]
    s.check()


def test_memory_tier_is_bounded_and_holds_the_newest(make_store):
    s = make_store(mem=3 * CS, disk=64 * CS)
    metas = [meta_for(f"/m{i}", CS) for i in range(8)]
    for m in metas:
        fill(s, m)
    assert s.stats()["memory"].used_bytes <= 3 * CS
    assert [s.get_chunk(m, 0).data is not None for m in metas] == [False] * 5 + [True] * 3
    s.check()


def test_repeated_disk_hits_promote_into_memory(make_store):
    s = make_store(mem=2 * CS, promote_after=2)
    cold = meta_for("/cold", CS)
    fill(s, cold)
    for i in range(2):
        fill(s, meta_for(f"/push{i}", CS))
    assert s.get_chunk(cold, 0).data is None
    s.record_hit(cold, 0)
    s.flush()
    assert s.get_chunk(cold, 0).data is None  # one disk hit is not enough
    s.record_hit(cold, 0)
    s.flush()
    ref = s.get_chunk(cold, 0)
    assert ref.data == payload(cold.key, CS)
    assert s.counters["promotions"] == 1
    assert s.stats()["memory"].used_bytes <= 2 * CS
    s.check()


def test_chunk_larger_than_memory_tier_stays_on_disk(make_store):
    s = make_store(mem=CS // 2)
    m = meta_for("/big", CS)
    fill(s, m)
    assert s.get_chunk(m, 0).data is None
    assert s.stats()["memory"].used_bytes == 0


def test_should_store_refuses_what_cannot_fit(make_store):
    s = make_store(disk=CS // 2)
    assert s.should_store(meta_for("/huge", CS), 0) is False
    assert s.should_store(meta_for("/small", CS // 4), 0) is True


def test_pinned_chunks_survive_eviction(make_store):
    s = make_store(disk=3 * CS)
    keep = meta_for("/titles/T/720p/seg_00000.ts", CS)
    s.pin(f"{keep.key}#0", 0)
    fill(s, keep)
    for i in range(6):
        fill(s, meta_for(f"/x{i}", CS))
    s.flush()
    assert read_chunk(s, keep, 0) == payload(keep.key, CS)
    s.unpin(f"{keep.key}#0")
    s.check()


def test_popularity_policy_drives_the_disk_tier_too(make_store, tmp_path):
    pytest.importorskip("edge.policy.popularity")
    s = make_store(disk=4 * CS, policy="popularity")
    for i in range(12):
        m = meta_for(f"/titles/T/720p/seg_{i:05d}.ts", CS)
        if s.should_store(m, 0):
            fill(s, m)
    s.flush()
    assert sum(chunk_files(tmp_path / "cache").values()) <= 4 * CS
    s.check()


def test_lookups_never_unlink_eviction_waits_for_the_janitor(make_store, tmp_path):
    import threading

    a = make_store(disk=64 * CS)
    metas = [meta_for(f"/j/{i}", CS) for i in range(6)]
    for m in metas:
        fill(a, m)
    b = make_store(disk=2 * CS)  # a smaller worker that discovers the chunks on lookups
    gate = threading.Event()
    b._janitor.submit(gate.wait)  # hold b's background thread
    for m in metas:
        assert read_chunk(b, b.get_meta(m.key), 0) == payload(m.key, CS)
    assert len(chunk_files(tmp_path / "cache")) == 6  # victims chosen, nothing unlinked yet
    assert b.stats()["disk"].used_bytes == 2 * CS
    gate.set()
    b.flush()
    assert len(chunk_files(tmp_path / "cache")) == 2
    b.check()
