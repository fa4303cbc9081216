"""Chunk checksums: every committed chunk carries the CRC-32 of its bytes; a chunk damaged on
disk at the same length is caught by whole reads (the memory tier's copy) and by the
scrubber, and its object is removed rather than served."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from edge.store.integrity import XATTR, ChunkCorrupt, read_chunk, recorded

from .conftest import CS, fill, meta_for, payload


def _damage(path: str, at: int = 100) -> None:
    """Flip one byte in place: same length, other bytes (a bad sector, a stray write)."""
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x5A]))


def _chunk_path(store, meta, i: int) -> str:
    ref = store.get_chunk(meta, i)
    assert ref is not None and ref.path
    return ref.path


def test_every_committed_chunk_carries_the_crc_of_its_bytes(make_store):
    s = make_store()
    m = meta_for("/t/seg1.ts", 2 * CS + 77)
    fill(s, m)
    data = payload(m.key, m.size)
    for i in range(3):
        path = _chunk_path(s, m, i)
        a, b = s.chunk_bounds(m, i)
        assert os.getxattr(path, XATTR) == b"%08x" % zlib.crc32(data[a:b])
        assert read_chunk(path, b - a) == data[a:b]
    assert s.counters["unchecked_chunks"] == 0


def test_a_damaged_chunk_fails_its_read_and_an_unstamped_one_reads_unchecked(make_store,
                                                                           tmp_path: Path):
    s = make_store()
    m = meta_for("/t/seg2.ts", CS)
    fill(s, m)
    path = _chunk_path(s, m, 0)
    _damage(path)
    with pytest.raises(ChunkCorrupt):
        read_chunk(path, CS)
    with pytest.raises(ChunkCorrupt):
        s.get_chunk(m, 0).read()  # type: ignore[union-attr]
    with pytest.raises(OSError):  # the wrong length is refused before any checksum
        read_chunk(path, CS - 1)
    os.setxattr(path, XATTR, b"not-hex!")  # a damaged record matches nothing
    with pytest.raises(ChunkCorrupt):
        read_chunk(path, CS)
    plain = tmp_path / "plain"  # written before checksums, or on a filesystem without xattrs
    plain.write_bytes(b"x" * 10)
    fd = os.open(plain, os.O_RDONLY)
    try:
        assert recorded(fd) is None
    finally:
        os.close(fd)
    assert read_chunk(str(plain), 10) == b"x" * 10


def test_the_scrubber_finds_a_damaged_chunk_and_drops_its_object(make_store):
    s = make_store(scrub_rate=CS, scrub_interval=3600.0)  # one chunk per step
    good = meta_for("/t/good.ts", 2 * CS)
    bad = meta_for("/t/bad.ts", 2 * CS)
    fill(s, good)
    fill(s, bad)
    _damage(_chunk_path(s, bad, 1))
    steps = 0
    while s.counters["scrub_passes"] == 0:
        s.scrub_due(1000.0 + steps)
        s.flush()
        steps += 1
        assert steps < 10
    assert steps == 4  # four chunks, one per step; the pass ends with the last
    assert s.counters["corrupt_chunks"] == 1 and s.counters["scrubbed_bytes"] == 4 * CS
    assert s.get_meta(bad.key) is None and s.get_chunk(bad, 0) is None
    assert s.get_meta(good.key) == good
    assert read_chunk(_chunk_path(s, good, 0), CS) == payload(good.key, 2 * CS)[:CS]
    scrubbed = s.counters["scrubbed_bytes"]
    s.scrub_due(1000.0 + steps + 10)  # the next pass waits for scrub_interval
    s.flush()
    assert s.counters["scrubbed_bytes"] == scrubbed
    s.scrub_due(1000.0 + 3600.0 + 1)
    s.flush()
    assert s.counters["scrubbed_bytes"] == scrubbed + CS
    s.check()


def test_no_scrub_at_rate_zero(make_store):
    s = make_store(scrub_rate=0)
    m = meta_for("/t/x.ts", CS)
    fill(s, m)
    _damage(_chunk_path(s, m, 0))
    s.scrub_due(1e9)
    s.flush()
    assert s.counters["scrubbed_bytes"] == 0 and s.get_meta(m.key) == m


def test_promotion_to_memory_checks_the_chunk(make_store):
    s = make_store(mem=0)  # so the chunk is on disk only, as after a restart
    m = meta_for("/t/promote.ts", CS)
    fill(s, m)
    assert s.get_chunk(m, 0).data is None  # type: ignore[union-attr]
    _damage(_chunk_path(s, m, 0))
    s._promote(m, 0)  # what the janitor runs after promote_after disk hits
    assert s.counters["corrupt_chunks"] == 1 and s.counters["promotions"] == 0
    assert s.get_meta(m.key) is None


def test_a_chunk_sent_unread_is_checked_ahead_of_the_pass(make_store, tmp_path: Path):
    """What sendfile sends is never read by us: the scrubber checks such a file at its next
    step, long before its pass would reach it, and drops its object if it is damaged."""
    a = make_store(dir=tmp_path / "c")
    metas = [meta_for(f"/t/s{i}.ts", CS) for i in range(6)]
    for m in metas:
        fill(a, m)
    bad = metas[3]
    _damage(_chunk_path(a, bad, 0))
    a.close()

    b = make_store(dir=tmp_path / "c", scrub_rate=CS, scrub_interval=3600.0)  # a restart
    good = [m for m in metas if m is not bad]
    for m in good:  # a whole pass over the other five, so that none is due
        assert b.get_meta(m.key) == m and b.get_chunk(m, 0) is not None
    steps = 0
    while b.counters["scrub_passes"] == 0:
        b.scrub_due(1000.0 + steps)
        b.flush()
        steps += 1
    base = b.counters["scrubbed_bytes"]
    assert b.counters["corrupt_chunks"] == 0 and base <= 5 * CS

    ref = b.get_chunk(b.get_meta(bad.key), 0)
    assert ref is not None and ref.data is None
    b.sent_unread(ref)
    b.sent_unread(ref)  # queued once
    b.scrub_due(1010.0)  # no pass is due: the step is for the sent chunk alone
    b.flush()
    assert b.counters["corrupt_chunks"] == 1 and b.counters["scrubbed_bytes"] == base + CS
    assert b.get_meta(bad.key) is None and b.get_chunk(bad, 0) is None
    b.scrub_due(1011.0)
    b.flush()
    assert b.counters["scrubbed_bytes"] == base + CS

    mine = meta_for("/t/new.ts", CS)  # written by this process: its bytes are known good
    fill(b, mine)
    b.sent_unread(b.get_chunk(mine, 0))
    b.scrub_due(1012.0)
    b.flush()
    assert b.counters["scrubbed_bytes"] == base + CS
    b.check()
