"""Audit: a damaged cache directory across restarts, odd admin input, purge racing a fill,
soft purge with the origin down, ops endpoints under load and a two-worker purge.

Every damage is made to real files between two edges on the same --cache-dir; afterwards the
edge must answer byte-exact (from cache or refetched), never a corrupt body, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import free_port
from tests.edge.server.conftest import (
    CHUNK,
    EdgeProcess,
    OriginServer,
    Resp,
    fetch,
    payload,
)

CC = {"Cache-Control": "max-age=600", "ETag": '"v1"'}
AUTH = {"Authorization": "Bearer sekrit"}


def _obj_dir(cache: Path, key: str) -> Path:
    """The object directory whose meta.json names key."""
    for m in cache.glob("v1-*/*/*/*/meta.json"):
        try:
            if json.loads(m.read_bytes()).get("key") == key:
                return m.parent
        except ValueError:
            continue
    raise AssertionError(f"no object dir for {key}: {list(cache.rglob('*'))}")


def _chunks(d: Path) -> list[Path]:
    return sorted((p for p in d.iterdir() if p.name != "meta.json"),
                  key=lambda p: int(p.name.rsplit(".", 1)[1]))


async def _filled(origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession,
                  cache: Path, path: str, body: bytes) -> Path:
    """Store path in an edge on cache, stop that edge; the object's directory."""
    origin.put(path, body, headers=CC)
    e = make_edge(origin.url, cache_dir=cache)
    r = await fetch(client, e.url + path)
    assert r.status == 200 and r.body == body
    e.settle()
    e.call(e.node.store.flush)
    e.stop()
    d = _obj_dir(cache, path)
    assert len(_chunks(d)) == -(-len(body) // CHUNK)
    return d


async def _exact_twice(client: aiohttp.ClientSession, url: str, body: bytes) -> list[Resp]:
    out = []
    for _ in range(2):
        r = await fetch(client, url)
        assert r.status == 200, (r.status, r.body[:200])
        assert r.body == body
        out.append(r)
    return out


# ---- damaged cache directory across a restart ----------------------------------------------
async def test_truncated_chunk_is_refetched_not_served_short(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    """A chunk file cut short between runs is refetched; the answer stays byte-exact."""
    body = payload(3 * CHUNK, 11)
    cache = tmp_path / "c"
    d = await _filled(origin, make_edge, client, cache, "/t.ts", body)
    with open(_chunks(d)[1], "r+b") as f:
        f.truncate(CHUNK // 2)
    n = origin.count("/t.ts")
    e = make_edge(origin.url, cache_dir=cache)
    await _exact_twice(client, e.url + "/t.ts", body)
    assert origin.count("/t.ts") > n


async def test_meta_deleted_chunks_kept_is_refetched(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    """Chunks with no meta are unreachable: refetched, exact, and the orphans cleaned."""
    body = payload(2 * CHUNK + 5, 13)
    cache = tmp_path / "c"
    d = await _filled(origin, make_edge, client, cache, "/nometa.ts", body)
    (d / "meta.json").unlink()
    n = origin.count("/nometa.ts")
    e = make_edge(origin.url, cache_dir=cache)
    await _exact_twice(client, e.url + "/nometa.ts", body)
    assert origin.count("/nometa.ts") > n


@pytest.mark.parametrize("garbage", [b"{not json", b"", b"\xff\xfe\x00", b"[1,2]",
                                     b'{"format":1,"key":"/g.ts","size":-3}',
                                     b'{"format":1,"key":"/g.ts","size":1e9}',
                                     b'{"format":1,"key":"/g.ts","size":131072,"status":"x"}',
                                     b'{"format":1,"key":"/g.ts","size":131072,"headers":[]}'])
async def test_garbage_meta_json_is_treated_as_absent(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession, tmp_path: Path,
        garbage: bytes) -> None:
    """A meta.json that is not a valid meta: refetch, exact, never a 500."""
    body = payload(2 * CHUNK, 14)
    cache = tmp_path / "c"
    d = await _filled(origin, make_edge, client, cache, "/g.ts", body)
    (d / "meta.json").write_bytes(garbage)
    e = make_edge(origin.url, cache_dir=cache)
    await _exact_twice(client, e.url + "/g.ts", body)


async def test_meta_json_that_is_a_directory_never_gives_a_500(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    """meta.json replaced by a directory: the object is absent, the edge still serves."""
    body = payload(CHUNK, 15)
    cache = tmp_path / "c"
    d = await _filled(origin, make_edge, client, cache, "/md.ts", body)
    (d / "meta.json").unlink()
    (d / "meta.json").mkdir()
    e = make_edge(origin.url, cache_dir=cache)
    await _exact_twice(client, e.url + "/md.ts", body)


async def test_directory_where_a_chunk_file_should_be(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    """A directory squatting a chunk's name: refetched and served exact, twice, no 500."""
    body = payload(3 * CHUNK, 16)
    cache = tmp_path / "c"
    d = await _filled(origin, make_edge, client, cache, "/dir.ts", body)
    c1 = _chunks(d)[1]
    c1.unlink()
    c1.mkdir()
    (c1 / "x").write_bytes(b"x")
    e = make_edge(origin.url, cache_dir=cache)
    await _exact_twice(client, e.url + "/dir.ts", body)
    r = await fetch(client, e.url + "/dir.ts", headers={"Range": f"bytes={CHUNK}-{CHUNK + 9}"})
    assert r.status == 206 and r.body == body[CHUNK:CHUNK + 10]


async def test_stray_temp_files_and_foreign_names_are_harmless(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    """Temp files of a dead pid are removed at start-up; foreign files are ignored."""
    body = payload(2 * CHUNK, 17)
    cache = tmp_path / "c"
    d = await _filled(origin, make_edge, client, cache, "/tmp.ts", body)
    dead = cache / "tmp" / "999999.abcdef01.tmp"
    dead.write_bytes(b"partial" * 100)
    (cache / "tmp" / "not-ours").write_bytes(b"?")
    (d / "README").write_bytes(b"foreign")
    (d / "0123456789abcdef.7").write_bytes(b"short")  # a chunk name no meta names
    n = origin.count("/tmp.ts")
    e = make_edge(origin.url, cache_dir=cache)
    rs = await _exact_twice(client, e.url + "/tmp.ts", body)
    assert "hit" in rs[0].cache and origin.count("/tmp.ts") == n
    assert await asyncio.to_thread(e.node.store.rebuilt.wait, 10)
    assert not dead.exists()
    assert not (d / "0123456789abcdef.7").exists()


async def test_journal_with_a_torn_last_line_and_garbage(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    """A journal ending in a torn line (kill -9 mid-append) or holding garbage: start-up and
    serving are unaffected and the cache is still used."""
    body = payload(CHUNK + 7, 18)
    cache = tmp_path / "c"
    await _filled(origin, make_edge, client, cache, "/j.ts", body)
    with open(cache / "journal.log", "ab") as f:
        f.write(b'["dead-1","/j.t\x00\xff{[[\n[1,2,3]\n"x"\n["w","/j.ts"')
    n = origin.count("/j.ts")
    e = make_edge(origin.url, cache_dir=cache)
    rs = await _exact_twice(client, e.url + "/j.ts", body)
    assert "hit" in rs[0].cache and origin.count("/j.ts") == n


async def test_disk_tier_smaller_than_one_chunk_passes_through(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession) -> None:
    """disk < one chunk: every answer exact, /healthz 200, used never above capacity."""
    body = payload(3 * CHUNK + 1, 19)
    origin.put("/small.ts", body, headers=CC)
    e = make_edge(origin.url, cache={"disk": "16KiB", "memory": "0"})
    await _exact_twice(client, e.url + "/small.ts", body)
    r = await fetch(client, e.url + "/small.ts", headers={"Range": "bytes=100-199"})
    assert r.status == 206 and r.body == body[100:200]
    e.settle()
    h = await fetch(client, e.url + "/healthz")
    assert h.status == 200
    disk = json.loads(h.body)["tiers"]["disk"]
    assert disk["used_bytes"] <= disk["capacity_bytes"]


async def test_many_objects_evicted_while_clients_read_them(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession) -> None:
    """A disk tier holding ~4 chunks and 12 objects read concurrently, repeatedly: every
    answer exact, no 500, files on disk stay within capacity."""
    bodies = {f"/ev/{i}.ts": payload(2 * CHUNK + i, 100 + i) for i in range(12)}
    for p, b in bodies.items():
        origin.put(p, b, headers=CC)
    e = make_edge(origin.url, cache={"disk": f"{4 * CHUNK}", "memory": "0"})

    async def one(p: str) -> None:
        r = await fetch(client, e.url + p)
        assert r.status == 200 and r.body == bodies[p], (p, r.status)

    for _ in range(3):
        await asyncio.gather(*(one(p) for p in bodies))
    e.settle()
    e.call(e.node.store.flush)
    on_disk = sum(f.stat().st_size for f in Path(e.cfg.cache.dir).glob("v1-*/*/*/*/*.*")
                  if f.name != "meta.json")
    assert on_disk <= 4 * CHUNK


# ---- admin input -----------------------------------------------------------------------------
@pytest.mark.parametrize("doc", [
    b'{"key": 123}', b'{"key": ["/a"]}', b'{"key": {"a": 1}}', b'{"key": true}',
    b'{"key": ""}', b'{"key": "?q=1"}', b'{"prefix": 5}', b'{"prefix": ""}',
    b'{"prefix": []}', b'{"prefix": "no-slash"}', b'{"key": "/a", "soft": "yes"}',
    b'{"key": "/a", "soft": 1}', b'{"key": "/a\\u0000b"}', b'{"key": "/a\\ud800"}',
    b'{"key": "/%00"}', b"[]", b'"str"', b"null", b"123", b"\xff\xfe", b"{}",
    b'{"key": null, "prefix": null}', b'{"key": "/' + b"a" * 20000 + b'"}',
    b'{"prefix": "/a", "soft": null}', b'{"key": 1e400}', b'{"key": "/a"' + b" " * 10,
])
async def test_bad_purge_bodies_get_a_clear_4xx(origin: OriginServer, make_edge: Any,
                                                client: aiohttp.ClientSession,
                                                doc: bytes) -> None:
    """Wrong JSON types, empty targets, non-JSON: a 4xx with a JSON error, never a 500."""
    e = make_edge(origin.url)
    r = await fetch(client, e.url + "/admin/purge", "POST", headers=AUTH, data=doc)
    assert 400 <= r.status < 500, (r.status, r.body[:300])
    if r.status != 413:
        assert "error" in json.loads(r.body)
    h = await fetch(client, e.url + "/healthz")
    assert h.status == 200


async def test_huge_purge_body_is_refused_not_a_500(origin: OriginServer, make_edge: Any,
                                                    client: aiohttp.ClientSession) -> None:
    """A multi-megabyte purge body gets 413 (or 400), and the edge keeps serving."""
    origin.put("/hb.ts", b"x" * 10, headers=CC)
    e = make_edge(origin.url)
    doc = b'{"key": "/a", "pad": "' + b"p" * (8 << 20) + b'"}'
    try:
        r = await fetch(client, e.url + "/admin/purge", "POST", headers=AUTH, data=doc)
        assert 400 <= r.status < 500, r.status
    except aiohttp.ClientError:
        pass  # the edge may close after answering 413 early
    assert (await fetch(client, e.url + "/hb.ts")).body == b"x" * 10


async def test_prefix_slash_purges_everything_including_disk_only_keys(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    """prefix "/" right after a restart (index not rebuilt) purges every stored object."""
    cache = tmp_path / "c"
    bodies = {f"/all/{i}.ts": payload(CHUNK + i, 200 + i) for i in range(5)}
    for p, b in bodies.items():
        await _filled(origin, make_edge, client, cache, p, b)
    e = make_edge(origin.url, cache_dir=cache)
    r = await fetch(client, e.url + "/admin/purge", "POST", headers=AUTH,
                    data=b'{"prefix": "/"}')
    assert r.status == 200 and json.loads(r.body)["purged"] == 5
    counts = {p: origin.count(p) for p in bodies}
    for p, b in bodies.items():
        r = await fetch(client, e.url + p)
        assert r.body == b and origin.count(p) > counts[p]


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_purge_during_fill_does_not_resurrect(origin: OriginServer, make_edge: Any,
                                                    client: aiohttp.ClientSession,
                                                    framing: str) -> None:
    """A hard purge while the key is being filled: after the fill ends the object is not in
    the cache (the next request goes to the origin and gets the new bytes)."""
    old, new = payload(3 * CHUNK, 30), payload(3 * CHUNK, 31)
    origin.put("/f.ts", old, headers={"Cache-Control": "max-age=600"}, framing=framing)
    e = make_edge(origin.url)
    origin.held.add("/f.ts")
    t = asyncio.ensure_future(fetch(client, e.url + "/f.ts"))
    await asyncio.to_thread(origin.wait_requests, "/f.ts", 1)
    await asyncio.sleep(0.2)
    r = await fetch(client, e.url + "/admin/purge", "POST", headers=AUTH,
                    data=b'{"key": "/f.ts"}')
    assert r.status == 200
    origin.put("/f.ts", new, headers={"Cache-Control": "max-age=600"}, framing=framing)
    origin.held.clear()
    origin.release()
    first = await t
    assert first.status == 200 and first.body in (old, new)
    e.settle()
    e.call(e.node.store.flush)
    r = await fetch(client, e.url + "/f.ts")
    assert r.status == 200 and r.body == new, "the purged object came back from the cache"


async def test_soft_purge_then_origin_down_follows_stale_if_error(
        origin: OriginServer, make_edge: Any, client: aiohttp.ClientSession) -> None:
    """Soft-purged and still fresh: served when the origin is down. Soft-purged no-cache /
    must-revalidate copies: an error (502/503/504), never the stale bytes, never a 500."""
    fresh, strict = payload(CHUNK, 40), payload(CHUNK, 41)
    origin.put("/sp/fresh.ts", fresh, headers=CC)
    origin.put("/sp/strict.ts", strict,
               headers={"Cache-Control": "max-age=0, must-revalidate", "ETag": '"s"'})
    e = make_edge(origin.url)
    for p in ("/sp/fresh.ts", "/sp/strict.ts"):
        await fetch(client, e.url + p)
    e.settle()
    r = await fetch(client, e.url + "/admin/purge", "POST", headers=AUTH,
                    data=b'{"prefix": "/sp/", "soft": true}')
    assert r.status == 200 and json.loads(r.body)["purged"] == 2
    origin.down = True
    r = await fetch(client, e.url + "/sp/fresh.ts")
    assert r.status == 200 and r.body == fresh
    r = await fetch(client, e.url + "/sp/strict.ts")
    assert r.status in (502, 503, 504), r.status
    origin.down = False
    r = await fetch(client, e.url + "/sp/fresh.ts")
    assert r.status == 200 and r.body == fresh and "fwd-status=304" in r.cache


async def test_healthz_and_metrics_under_load(origin: OriginServer, make_edge: Any,
                                              client: aiohttp.ClientSession) -> None:
    """/healthz and /metrics answer 200 with well-formed bodies while 60 fills run."""
    bodies = {f"/load/{i}.ts": payload(CHUNK + 17 * i, 300 + i) for i in range(20)}
    for p, b in bodies.items():
        origin.put(p, b, headers=CC)
    origin.delay = 0.05
    e = make_edge(origin.url)

    async def get(p: str) -> None:
        r = await fetch(client, e.url + p)
        assert r.status == 200 and r.body == bodies[p]

    async def ops() -> None:
        for _ in range(10):
            h = await fetch(client, e.url + "/healthz")
            assert h.status == 200 and json.loads(h.body)["status"] in ("ok", "degraded")
            m = await fetch(client, e.url + "/metrics")
            assert m.status == 200 and b"edgecdn_requests_total" in m.body

    await asyncio.gather(*(get(p) for p in list(bodies) * 3), ops(), ops())


async def test_unwritable_cache_dir_at_start_still_serves(
        origin: OriginServer, edge_procs: list[EdgeProcess], client: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    """--cache-dir below a regular file (cannot be created): either a clear exit or a
    serving edge; never a crash loop with a traceback-only message."""
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    origin.put("/u.ts", b"u" * 100, headers=CC)
    port = free_port()
    p = EdgeProcess(["--origin", origin.url, "--listen", f"127.0.0.1:{port}", "--cache-dir",
                     str(blocker / "cache"), "--chunk-size", str(CHUNK), "--access-log", ""])
    edge_procs.append(p)
    try:
        p.wait_ready(timeout=20)
    except RuntimeError:
        rc = p.proc.wait(10)
        err = "".join(p.lines)
        assert rc != 0 and "cache" in err.lower() and "Traceback" not in err, err
        return
    r = await fetch(client, f"http://127.0.0.1:{port}/u.ts")
    assert r.status == 200 and r.body == b"u" * 100


async def test_two_workers_prefix_purge_then_read_through_both(
        origin: OriginServer, edge_procs: list[EdgeProcess], tmp_path: Path) -> None:
    """--workers 2: a prefix purge sent to one worker; reads on many connections (both
    workers) all see the new bytes afterwards."""
    port = free_port()
    origin.put("/w/a.ts", payload(2 * CHUNK, 50), headers=CC)
    p = EdgeProcess(["--origin", origin.url, "--listen", f"127.0.0.1:{port}", "--cache-dir",
                     str(tmp_path / "c"), "--chunk-size", str(CHUNK), "--access-log", "",
                     "--workers", "2", "--admin-token", "sekrit"])
    edge_procs.append(p)
    p.wait_ready(2)
    url = f"http://127.0.0.1:{port}"
    for _ in range(6):  # fresh connections spread over both workers
        async with aiohttp.ClientSession() as s:
            r = await fetch(s, url + "/w/a.ts")
            assert r.body == payload(2 * CHUNK, 50)
    new = payload(2 * CHUNK, 51)
    origin.put("/w/a.ts", new, headers={**CC, "ETag": '"v2"'})
    async with aiohttp.ClientSession() as s:
        r = await fetch(s, url + "/admin/purge", "POST", headers=AUTH,
                        data=b'{"prefix": "/w/"}')
        assert r.status == 200, r.body
    await asyncio.sleep(0.2)
    for _ in range(8):
        async with aiohttp.ClientSession() as s:
            r = await fetch(s, url + "/w/a.ts")
            assert r.status == 200 and r.body == new
    assert os.path.isdir(tmp_path / "c")
