"""Objects whose length is known only at their end: stream writers, bound then committed with
their chunks placed before their meta (Store.new_stream_writer / commit_stream)."""

from __future__ import annotations

import errno
import os

import pytest

from .conftest import CS, chunk_files, meta_for, payload, read_all


def _spool(store, key: str, data: bytes):
    """Write data as the stream flight does: one stream writer per chunk-size segment."""
    writers = []
    for i in range(0, max(len(data), 1), CS):
        if i >= len(data):
            break
        w = store.new_stream_writer(key, i // CS)
        w.write(data[i:i + CS])
        writers.append(w)
    return writers


def test_stream_writers_bound_and_committed_read_back(make_store, tmp_path):
    s = make_store()
    data = payload("/live", 2 * CS + 77)
    writers = _spool(s, "/live", data)
    m = meta_for("/live", len(data))
    for w in writers:
        w.bind(m)
    assert s.commit_stream(m, writers) == 3
    assert s.get_meta("/live") == m and read_all(s, m) == data
    assert s.stats()["disk"].used_bytes == len(data)
    assert os.listdir(s.layout.tmp) == []
    s.check()


def test_nothing_is_visible_before_commit_and_abort_leaves_no_files(make_store, tmp_path):
    s = make_store()
    writers = _spool(s, "/cut", payload("/cut", CS + 5))
    assert s.get_meta("/cut") is None and chunk_files(tmp_path / "cache") == {}
    for w in writers:
        w.abort()
    assert os.listdir(s.layout.tmp) == []


def test_a_segment_overflowing_a_chunk_is_refused(make_store):
    s = make_store()
    w = s.new_stream_writer("/o", 0)
    with pytest.raises(ValueError):
        w.write(b"x" * (CS + 1))
    assert os.listdir(s.layout.tmp) == []


def test_a_chunk_of_the_wrong_length_is_never_placed(make_store, tmp_path):
    s = make_store()
    data = payload("/w", 2 * CS)
    writers = _spool(s, "/w", data[:CS] + data[CS:2 * CS - 1])  # the last one short by 1
    m = meta_for("/w", len(data))
    for w in writers:
        w.bind(m)
    assert s.commit_stream(m, writers) == 1
    assert read_all(s, m) is None and s.get_chunk(m, 1) is None
    assert len(chunk_files(tmp_path / "cache")) == 1


def test_meta_write_failing_removes_the_placed_chunks(make_store, tmp_path):
    def hook(op: str, path: str) -> None:
        if op == "rename" and path.endswith("meta.json"):
            raise OSError(errno.ENOSPC, "no space")

    s = make_store(fault_hook=hook)
    data = payload("/f", CS + 1)
    writers = _spool(s, "/f", data)
    m = meta_for("/f", len(data))
    for w in writers:
        w.bind(m)
    with pytest.raises(OSError):
        s.commit_stream(m, writers)
    assert s.get_meta("/f") is None and chunk_files(tmp_path / "cache") == {}
    assert os.listdir(s.layout.tmp) == []
