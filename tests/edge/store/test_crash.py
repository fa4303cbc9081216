"""kill -9 at any moment leaves only complete chunks (or temp garbage the loader removes)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from .conftest import CS, chunk_files, meta_for, payload, read_chunk

ROOT = Path(__file__).resolve().parents[3]
CHILD = Path(__file__).with_name("crash_child.py")


def _spawn(root: Path, mode: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(CHILD), str(root), mode], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)


def _kill(p: subprocess.Popen[str]) -> None:
    os.kill(p.pid, signal.SIGKILL)
    assert p.wait(10) == -signal.SIGKILL
    p.stdout.close()


def _assert_every_chunk_file_is_whole(store, root: Path) -> int:
    """Each chunk file on disk has exactly its chunk's bytes (not just its length)."""
    n = 0
    for path in chunk_files(root):
        meta_path = os.path.join(os.path.dirname(path), "meta.json")
        from edge.store import ObjectMeta

        m = ObjectMeta.from_json(open(meta_path, "rb").read())
        version, index = os.path.basename(path).split(".")
        assert version == m.version
        a, b = store.chunk_bounds(m, int(index))
        assert open(path, "rb").read() == payload(m.key, m.size)[a:b], path
        n += 1
    return n


async def test_kill_mid_chunk_keeps_complete_chunks_only(make_store, tmp_path):
    root = tmp_path / "cache"
    p = _spawn(root, "mid")
    assert p.stdout.readline().strip() == "MID"
    assert len(os.listdir(root / "tmp")) == 1  # the half-written chunk
    _kill(p)
    s = make_store()
    await s.start()
    assert await s.wait_rebuilt(10)
    m = s.get_meta("/crash")
    assert m == meta_for("/crash", 4 * CS)
    data = payload(m.key, m.size)
    for i in range(3):
        assert read_chunk(s, m, i) == data[i * CS:(i + 1) * CS]
    assert s.get_chunk(m, 3) is None
    assert os.listdir(root / "tmp") == []
    assert _assert_every_chunk_file_is_whole(s, root) == 3
    s.check()


async def test_kill_at_random_moments_never_exposes_partial_chunks(make_store, tmp_path):
    rng = random.Random(7)
    root = tmp_path / "cache"
    committed: set[tuple[str, int]] = set()
    for _ in range(3):
        p = _spawn(root, "loop")
        target = rng.randint(3, 25)
        for _ in range(target):
            _, key, idx = p.stdout.readline().split()
            committed.add((key, int(idx)))
        _kill(p)  # somewhere in put_meta, a write, fsync or rename
    s = make_store(disk=1 << 30)
    await s.start()
    assert await s.wait_rebuilt(10)
    s.flush()
    assert os.listdir(root / "tmp") == []
    for key, idx in committed:  # every reported commit survived
        m = s.get_meta(key)
        assert m is not None, key
        a, b = s.chunk_bounds(m, idx)
        assert read_chunk(s, m, idx) == payload(key, m.size)[a:b]
    assert _assert_every_chunk_file_is_whole(s, root) >= len(committed)
    s.check()
