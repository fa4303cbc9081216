"""The open-file cache for sendfile: reuse only for the same ChunkRef and for a short time;
a purge, a new version or an eviction by another worker never serves the old file's bytes as
the current object."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge.server.fdcache import FdCache
from edge.store.refs import ChunkRef
from tests.edge.server.conftest import CHUNK, fetch, payload

CC = {"Cache-Control": "max-age=300", "ETag": '"f1"', "Content-Type": "video/mp2t"}


def _open_fds(under: Path) -> int:
    """This process's open files under a directory (other tests' edges may still be closing
    their own fds meanwhile, so the process-wide count is not ours to compare)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith(str(under))
        except OSError:
            pass
    return n


def _chunk(tmp_path: Path, name: str, data: bytes) -> ChunkRef:
    p = tmp_path / name
    p.write_bytes(data)
    return ChunkRef(str(p), len(data))


def test_the_same_ref_reuses_one_open_file(tmp_path):
    c = FdCache()
    ref = _chunk(tmp_path, "v1.0", b"a" * 100)
    fd = c.get(ref, 0.0)
    assert c.get(ref, 0.5) == fd and c.opens == 1
    assert os.pread(fd, 100, 0) == b"a" * 100
    c.clear()
    assert len(c) == 0


def test_a_new_ref_for_the_same_path_opens_the_new_file(tmp_path):
    c = FdCache()
    old = _chunk(tmp_path, "v1.0", b"a" * 100)
    c.get(old, 0.0)
    n = _open_fds(tmp_path)
    tmp = tmp_path / "tmp"
    tmp.write_bytes(b"b" * 100)
    os.replace(tmp, old.path)  # refetched after a purge: same name, new file, new ref
    new = ChunkRef(old.path, 100)
    fd = c.get(new, 0.1)
    assert os.pread(fd, 100, 0) == b"b" * 100
    assert _open_fds(tmp_path) == n and c.opens == 2  # the old file's fd was closed


def test_past_its_validity_an_unlinked_file_is_gone(tmp_path):
    c = FdCache(valid=1.0)
    ref = _chunk(tmp_path, "v1.0", b"a" * 100)
    c.get(ref, 0.0)
    os.unlink(ref.path)  # evicted by another worker
    assert os.pread(c.get(ref, 0.5), 100, 0) == b"a" * 100  # same version's bytes, briefly
    with pytest.raises(FileNotFoundError):
        c.get(ref, 1.5)
    assert len(c) == 0


def test_size_bound_and_sweep_close_files(tmp_path):
    n = _open_fds(tmp_path)
    c = FdCache(size=2, valid=1.0)
    refs = [_chunk(tmp_path, f"v1.{i}", b"x") for i in range(3)]
    for i, r in enumerate(refs):
        c.get(r, i * 0.1)
    assert len(c) == 2 and _open_fds(tmp_path) == n + 2
    c.sweep(1.15)  # the first kept one (opened at 0.1) has expired
    assert len(c) == 1 and _open_fds(tmp_path) == n + 1
    c.sweep(5.0)
    assert len(c) == 0 and _open_fds(tmp_path) == n


def _disk_edge(make_edge, origin):
    return make_edge(origin.url, edge={"sendfile": True}, cache={"memory": "0"})


async def _hit(client, edge, path: str, want: bytes) -> None:
    r = await fetch(client, edge.url + path)
    assert r.status == 200 and r.body == want and r.cache.startswith("edgecdn; hit"), r.cache


async def test_purge_stops_serving_through_a_cached_fd(origin, make_edge, client):
    v1, v2 = payload(2 * CHUNK, 1), payload(2 * CHUNK, 2)
    origin.put("/f.ts", v1, headers=CC)
    edge = _disk_edge(make_edge, origin)
    await fetch(client, edge.url + "/f.ts")
    edge.settle()
    await _hit(client, edge, "/f.ts", v1)
    fds = edge.node.app.fds
    opened = fds.opens
    for _ in range(3):
        await _hit(client, edge, "/f.ts", v1)
    assert len(fds) == 2 and fds.opens == opened  # three hits on the two files kept open
    origin.put("/f.ts", v2, headers={**CC, "ETag": '"f2"'})
    r = await fetch(client, edge.url + "/admin/purge", "POST",
                    headers={"Authorization": "Bearer sekrit"}, data=b'{"key": "/f.ts"}')
    assert json.loads(r.body)["purged"] == 1 and len(fds) == 0
    r = await fetch(client, edge.url + "/f.ts")
    assert r.body == v2 and "fwd=miss" in r.cache
    edge.settle()
    await _hit(client, edge, "/f.ts", v2)
    await _hit(client, edge, "/f.ts", v2)


async def test_a_new_version_is_served_from_its_own_files(origin, make_edge, client):
    v1, v2 = payload(2 * CHUNK, 3), payload(2 * CHUNK, 4)
    origin.put("/n.ts", v1, headers=CC)
    edge = _disk_edge(make_edge, origin)
    await fetch(client, edge.url + "/n.ts")
    edge.settle()
    await _hit(client, edge, "/n.ts", v1)
    origin.put("/n.ts", v2, headers={**CC, "ETag": '"f2"'})
    await fetch(client, edge.url + "/n.ts", "POST", data=b"x")  # invalidates the stored one
    r = await fetch(client, edge.url + "/n.ts")
    assert r.body == v2 and "fwd=miss" in r.cache
    edge.settle()
    await _hit(client, edge, "/n.ts", v2)


async def test_a_chunk_unlinked_by_another_worker_is_refetched_once_the_fd_expires(
        origin, make_edge, client):
    body = payload(2 * CHUNK, 5)
    origin.put("/e.ts", body, headers=CC)
    edge = _disk_edge(make_edge, origin)
    await fetch(client, edge.url + "/e.ts")
    edge.settle()
    await _hit(client, edge, "/e.ts", body)
    fetched = origin.count("/e.ts")
    meta = edge.call(edge.node.store.get_meta, "/e.ts")
    ref = edge.call(edge.node.store.get_chunk, meta, 1)
    os.unlink(ref.path)  # what the owning worker's eviction does
    await _hit(client, edge, "/e.ts", body)  # the open fd: same version's bytes
    edge.call(edge.node.app.fds.sweep, float("inf"))  # as the once-a-second sweep will
    r = await fetch(client, edge.url + "/e.ts")
    assert r.status == 200 and r.body == body
    assert origin.count("/e.ts") == fetched + 1  # the missing chunk came from the origin again
