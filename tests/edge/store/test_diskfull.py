"""ENOSPC: the write fails cleanly (DiskFull, temp removed), the store says so, and recovers."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from edge.store import DiskFull

from .conftest import CS, chunk_files, fill, meta_for, payload, read_all


class Faults:
    """cfg.fault_hook: raise ENOSPC on chosen operations while armed."""

    def __init__(self) -> None:
        self.ops: set[str] = set()

    def __call__(self, op: str, path: str) -> None:
        if op in self.ops:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


@pytest.mark.parametrize("op", ["create", "write", "fsync", "rename"])
def test_enospc_on_a_chunk_raises_diskfull_and_leaves_nothing(make_store, tmp_path, op):
    faults = Faults()
    s = make_store(fault_hook=faults, fsync=True)
    m = meta_for("/full", CS)
    s.put_meta(m)
    faults.ops = {op}
    with pytest.raises(DiskFull):
        w = s.new_writer(m, 0)
        w.write(payload(m.key, CS))
        w.commit()
    assert s.disk_full and s.stats()["disk"].full
    assert os.listdir(tmp_path / "cache" / "tmp") == []
    assert s.get_chunk(m, 0) is None and chunk_files(tmp_path / "cache") == {}
    assert s.should_store(m, 0) is False  # the server passes through meanwhile
    faults.ops = set()
    fill(s, m)  # a later successful write clears it
    assert not s.disk_full and not s.stats()["disk"].full
    assert read_all(s, m) == payload(m.key, CS)


def test_enospc_on_meta_raises_diskfull_and_keeps_old_meta(make_store, tmp_path):
    faults = Faults()
    s = make_store(fault_hook=faults)
    older = [meta_for(f"/older/{i}", CS) for i in range(6)]
    for o in older:
        fill(s, o)
    m = meta_for("/meta", 10)
    fill(s, m)
    faults.ops = {"write"}
    with pytest.raises(DiskFull):
        s.put_meta(meta_for("/meta", 10, etag='"other"'))
    assert s.disk_full
    s.flush()  # DiskFull made the janitor evict our oldest chunks (4 x chunk size)
    assert [s.get_meta(o.key) is None for o in older] == [True] * 4 + [False] * 2
    assert not s.disk_full
    assert s.get_meta("/meta") == m
    assert os.listdir(tmp_path / "cache" / "tmp") == []


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A real 1 MiB tmpfs (root only: mount)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_real_full_filesystem_then_eviction_frees_space(make_store, tiny_fs):
    cs = 128 * 1024
    s = make_store(dir=tiny_fs / "cache", disk=100 * cs, cs=cs)  # the policy thinks it fits
    written = []
    with pytest.raises(DiskFull):
        for i in range(20):
            m = meta_for(f"/t/{i}", cs)
            fill(s, m)
            written.append(m)
    assert 3 <= len(written) < 8
    assert s.disk_full and s.stats()["disk"].full
    assert os.listdir(tiny_fs / "cache" / "tmp") == []
    s.flush()  # DiskFull asked the janitor to evict some of our own chunks
    assert all(size == cs for size in chunk_files(tiny_fs / "cache").values())
    assert not s.disk_full
    assert s.counters["evictions"] >= 1
    m = meta_for("/t/after", cs)
    fill(s, m)
    assert read_all(s, m) == payload(m.key, cs)
    s.check()
