"""A chunk damaged on disk at the same length (a bad sector, a stray write) is found by the
scrubber, its object is dropped on every worker, and players get the origin's bytes again:
fetched anew, through the same prepared (hot) answers that were sending the damaged file."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from tests.conftest import free_port
from tests.edge.server.conftest import CHUNK, EdgeProcess, fetch, payload
from tests.edge.server.test_processes import _args
from tests.edge.server.test_workers_hot_purge import _get

CC = {"Cache-Control": "max-age=600", "ETag": '"v1"'}
SIZE = 3 * CHUNK + 11  # sent from its chunk files (sendfile), not from memory


def _chunk_files(cache: Path, key: str) -> list[Path]:
    for m in cache.glob("v1-*/*/*/*/meta.json"):
        if json.loads(m.read_bytes()).get("key") == key:
            return sorted((p for p in m.parent.iterdir() if p.name != "meta.json"),
                          key=lambda p: int(p.name.rsplit(".", 1)[1]))
    raise AssertionError(f"{key} is not stored under {cache}")


def _damage(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))


def _corrupt_count(metrics: bytes) -> float:
    m = re.search(rb"^edgecdn_corrupt_chunks_total ([0-9.e+]+)$", metrics, re.M)
    return float(m[1]) if m else 0.0


async def test_the_scrubber_drops_a_damaged_object_on_every_worker(origin, edge_procs, client,
                                                                    tmp_path):
    path = "/v/seg_00001.ts"
    body = payload(SIZE, 3)
    origin.put(path, body, headers=CC)
    port = free_port()
    cache = tmp_path / "cache"
    e = EdgeProcess(_args(origin.url, cache, port, "--workers", "2",
                          "--scrub-rate", "64MiB", "--scrub-interval", "0.5"))
    edge_procs.append(e)
    e.wait_ready(2)
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(8)]
    try:
        for _ in range(3):  # miss, general-path hit, then prepared answers on both workers
            for c in conns:
                status, _, got = await _get(c, path)
                assert status == 200 and got == body
        assert origin.count(path) == 4  # one fetch per chunk
        _damage(_chunk_files(cache, path)[1])

        url = f"http://127.0.0.1:{port}/metrics"
        for _ in range(100):  # a pass every 0.5 s on each worker
            m = await fetch(client, url)
            if _corrupt_count(m.body) >= 1:
                break
            await asyncio.sleep(0.1)
        assert _corrupt_count(m.body) == 1, m.body.decode()[-2000:]
        await asyncio.sleep(0.3)  # the other worker reads the journal every 50 ms
        for _ in range(2):  # the refetch, then the answers prepared from it
            for c in conns:
                status, h, got = await _get(c, path)
                assert status == 200 and got == body, h
        assert origin.count(path) > 4
        again = _chunk_files(cache, path)
        assert [p.stat().st_size for p in again] == [CHUNK] * 3 + [11]
    finally:
        for _, w in conns:
            w.close()
    assert e.term() == 0


async def test_without_a_scrub_the_damage_stays_until_a_whole_read(origin, make_edge, client):
    """scrub_rate 0 turns the scrubber off (the operator's choice): the damaged chunk is
    still caught when its bytes are read whole, here by a promotion to the memory tier."""
    path = "/v/seg_00002.ts"
    body = payload(CHUNK, 4)
    origin.put(path, body, headers=CC)
    e = make_edge(origin.url, cache={"scrub_rate": 0, "memory": "0"})
    r = await fetch(client, e.url + path)
    assert r.status == 200 and r.body == body
    e.settle()
    e.call(e.node.store.flush)
    files = _chunk_files(Path(e.cfg.cache.dir), path)
    _damage(files[0])
    e.call(e.node.store._promote, e.node.store.get_meta(path), 0)
    assert e.node.store.counters["corrupt_chunks"] == 1
    assert e.node.store.counters["scrubbed_bytes"] == 0
    r = await fetch(client, e.url + path)
    assert r.status == 200 and r.body == body and origin.count(path) == 2


async def test_a_damaged_chunk_sent_after_a_restart_is_caught_within_seconds(
        origin, edge_procs, client, tmp_path):
    """The scrubber is slowed to one chunk a second over 60 chunks, so its pass would take
    a minute; a chunk the edge sends by sendfile is checked at its next step instead. The
    damage reaches at most the clients of those seconds, then the origin's bytes return."""
    paths = [f"/lib/t{i:02d}.ts" for i in range(20)]
    for i, p in enumerate(paths):
        origin.put(p, payload(SIZE, 10 + i), headers=CC)
    port = free_port()
    cache = tmp_path / "cache"
    args = _args(origin.url, cache, port, "--memory-cache", "0")
    first = EdgeProcess(args)
    edge_procs.append(first)
    first.wait_ready()
    for p in paths:
        assert (await fetch(client, f"http://127.0.0.1:{port}{p}")).status == 200
    assert first.term() == 0
    target, body = paths[7], payload(SIZE, 17)
    _damage(_chunk_files(cache, target)[2])

    e = EdgeProcess(args + ["--scrub-rate", "1", "--scrub-interval", "86400"])
    edge_procs.append(e)
    e.wait_ready()
    conn = await asyncio.open_connection("127.0.0.1", port)
    try:
        served = []
        for _ in range(40):  # 4 s at most
            status, _, got = await _get(conn, target)
            assert status == 200 and len(got) == SIZE
            served.append(got == body)
            if got == body and origin.count(target) > 4:
                break
            await asyncio.sleep(0.1)
        assert served[0] is False  # the damaged file went out once, at least
        assert served[-1] is True, f"still damaged after {len(served)} answers"
        m = await fetch(client, f"http://127.0.0.1:{port}/metrics")
        assert _corrupt_count(m.body) == 1
    finally:
        conn[1].close()
    assert e.term() == 0
