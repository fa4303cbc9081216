"""Real `edgecdn edge` processes: kill -9 mid-fill, restart keeps the cache, SIGTERM, and
--workers 2 sharing one port and one disk cache with one origin fetch per chunk."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import aiohttp

from contracts.reports import EdgeReport
from tests.conftest import free_port
from tests.edge.server.conftest import CHUNK, EdgeProcess, fetch, payload

CC = {"Cache-Control": "max-age=600", "ETag": '"p"'}


def _args(origin_url: str, cache_dir, port: int, *extra: str) -> list[str]:
    return ["--origin", origin_url, "--listen", f"127.0.0.1:{port}", "--cache-dir",
            str(cache_dir), "--chunk-size", str(CHUNK), "--memory-cache", "4MiB",
            "--disk-cache", "64MiB", "--policy", "lru", "--access-log", "", *extra]


async def _disk_used(url: str, at_least: int, timeout: float = 10.0) -> None:
    """Wait until the edge reports that many bytes committed to disk (healthz)."""
    end = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while True:
            async with s.get(url + "/healthz") as r:
                rep = json.loads(await r.read())
            if rep["tiers"]["disk"]["used_bytes"] >= at_least:
                return
            assert time.monotonic() < end, rep
            await asyncio.sleep(0.05)


async def test_kill9_mid_fill_keeps_complete_chunks_and_serves_correct_bytes(
        origin, edge_procs, tmp_path, client):
    body = payload(4 * CHUNK, 7)
    origin.put("/k.ts", body, headers=CC)
    port = free_port()
    cache = tmp_path / "cache"
    e = EdgeProcess(_args(origin.url, cache, port))
    edge_procs.append(e)
    e.wait_ready()
    url = f"http://127.0.0.1:{port}"
    r = await fetch(client, url + "/k.ts", headers={"Range": f"bytes=0-{2 * CHUNK - 1}"})
    assert r.status == 206 and r.body == body[:2 * CHUNK]
    await _disk_used(url, 2 * CHUNK)
    origin.held.add("/k.ts")  # the next fills stall after their first piece
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /k.ts HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.to_thread(origin.wait_requests, "/k.ts", 3)  # chunk 2 fill under way
    e.kill9()
    writer.close()
    origin.held.clear()
    origin.release()
    before = len(origin.requests)
    e2 = EdgeProcess(_args(origin.url, cache, port))
    edge_procs.append(e2)
    e2.wait_ready()
    r = await fetch(client, url + "/k.ts")
    assert r.status == 200 and r.body == body
    again = [h.get("Range") for _, p, h in origin.requests[before:] if p == "/k.ts"]
    # chunks 0 and 1 survived the crash; only 2 and 3 were fetched again
    assert sorted(again) == [f"bytes={2 * CHUNK}-{3 * CHUNK - 1}",
                             f"bytes={3 * CHUNK}-{4 * CHUNK - 1}"]
    assert e2.term() == 0


async def test_restart_keeps_cache_and_sigterm_is_graceful(origin, edge_procs, tmp_path,
                                                           client):
    bodies = {f"/r/{i}.ts": payload(CHUNK + i * 1000, i) for i in range(3)}
    for p, b in bodies.items():
        origin.put(p, b, headers=CC)
    port = free_port()
    cache = tmp_path / "cache"
    e = EdgeProcess(_args(origin.url, cache, port, "--access-log", "-"))
    edge_procs.append(e)
    e.wait_ready()
    url = f"http://127.0.0.1:{port}"
    for p, b in bodies.items():
        assert (await fetch(client, url + p)).body == b
    await _disk_used(url, sum(len(b) for b in bodies.values()))
    assert e.term() == 0
    spool = cache / "logs"
    assert len(list(spool.glob("*.ready"))) >= 1 and not list(spool.glob("*.jsonl"))
    n = len(origin.requests)
    e2 = EdgeProcess(_args(origin.url, cache, port))
    edge_procs.append(e2)
    e2.wait_ready()
    for p, b in bodies.items():
        r = await fetch(client, url + p)
        assert r.body == b and r.cache.startswith("edgecdn; hit")
    assert len(origin.requests) == n


async def test_two_workers_one_port_one_fetch_per_chunk(origin, edge_procs, tmp_path):
    body = payload(6 * CHUNK + 5, 3)
    origin.put("/w.ts", body, headers=CC)
    origin.delay = 0.05
    port = free_port()
    cache = tmp_path / "cache"
    e = EdgeProcess(_args(origin.url, cache, port, "--workers", "2"))
    edge_procs.append(e)
    lines = e.wait_ready(2)
    pids = {int(line.split(" pid ")[1].split()[0]) for line in lines}
    assert len(pids) == 2
    url = f"http://127.0.0.1:{port}"

    async def one() -> bytes:
        async with aiohttp.ClientSession() as s:  # a new connection each: spread over workers
            async with s.get(url + "/w.ts") as r:
                assert r.status == 200
                return await r.read()

    got = await asyncio.gather(*(one() for _ in range(24)))
    assert all(g == body for g in got)
    assert origin.count("/w.ts") == 7  # one per chunk across both workers
    # any worker answers /metrics for all of them (each syncs its counters once a second)
    end = time.monotonic() + 5
    served = 0.0
    while served < 24 and time.monotonic() < end:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/metrics") as r:
                text = (await r.read()).decode()
        served = sum(float(line.split()[-1]) for line in text.splitlines()
                     if line.startswith("edgecdn_requests_total{")
                     and 'cache="ops"' not in line)
        await asyncio.sleep(0.2)
    assert served == 24, text  # client requests only: peer requests between workers not counted
    # /healthz from any worker is a valid report covering the whole edge (workers share
    # their figures once a second)
    for _ in range(4):
        assert await one() == body  # hits now
    end = time.monotonic() + 5
    while True:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/healthz") as r:
                rep = EdgeReport.from_dict(json.loads(await r.read()))
        if rep.hit_ratio == round(4 / 28, 4) or time.monotonic() > end:
            break
        await asyncio.sleep(0.2)
    assert rep.status == "ok" and rep.hit_ratio == round(4 / 28, 4)
    assert rep.tiers["disk"].capacity_bytes == 32 * 1024**2  # this worker's half of 64MiB
    # kill -9 one worker: the supervisor restarts it and nothing stays locked
    victim = sorted(pids)[0]
    origin.held.add("/w2.ts")
    origin.put("/w2.ts", payload(2 * CHUNK, 4), headers=CC)
    pending = [asyncio.ensure_future(one_path(url, "/w2.ts")) for _ in range(4)]
    await asyncio.to_thread(origin.wait_requests, "/w2.ts", 1)
    os.kill(victim, signal.SIGKILL)
    origin.held.clear()
    origin.release()
    await asyncio.gather(*pending, return_exceptions=True)
    for _ in range(6):
        assert await one_path(url, "/w2.ts") == payload(2 * CHUNK, 4)
    e.wait_ready(3, timeout=20)  # the restarted worker's ready line
    assert e.term() == 0


async def one_path(url: str, path: str) -> bytes:
    async with aiohttp.ClientSession() as s:
        async with s.get(url + path) as r:
            assert r.status == 200
            return await r.read()


async def test_fill_from_manifest_then_hits_and_logs_shipped(s3_endpoint, s3_bucket, edge_procs,
                                                             tmp_path, client):
    import boto3

    from contracts.manifest import Manifest, ManifestEntry, edge_manifest_key

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    objects = {f"/titles/f{i}/480p/seg_00000.ts": payload(CHUNK * (i + 1) + 17, 40 + i)
               for i in range(3)}
    for path, body in objects.items():
        s3.put_object(Bucket=s3_bucket, Key="pfx" + path, Body=body, ContentType="video/mp2t")
    entries = [ManifestEntry(p, len(b), i + 1, ("lon-1",)) for i, (p, b) in
               enumerate(objects.items())]
    m = Manifest("lon", 1 << 30, entries, time.time(), "eu", "lon-1", {})
    s3.put_object(Bucket=s3_bucket, Key=edge_manifest_key("manifests/", "lon", "lon-1"),
                  Body=m.to_json())
    port = free_port()
    conf = tmp_path / "edge.toml"
    conf.write_text("\n".join([
        "[edge]", 'name = "lon-1"', 'site = "lon"', 'region = "eu"',
        f'listen = "127.0.0.1:{port}"', "",
        "[origin]", f'url = "s3://{s3_bucket}/pfx"', f'endpoint_url = "{s3_endpoint}"', "",
        "[cache]", f'dir = "{tmp_path / "cache"}"', 'disk = "64MiB"', f"chunk_size = {CHUNK}",
        "fsync = false", "",
        "[log]", 'access = ""', "rotate_seconds = 0.2", "",
        "[fill]", f'manifests = "s3://{s3_bucket}/manifests/"', 'window = "always"',
        "rate = 0", "refresh = 0.5", "",
        "[logship]", f'to = "s3://{s3_bucket}/logs/"', "interval = 0.2", "",
    ]))
    e = EdgeProcess(["--config", str(conf)])
    edge_procs.append(e)
    e.wait_ready()
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 20
    while True:  # the fill runs in the background; its progress is in /healthz
        rep = json.loads((await fetch(client, url + "/healthz")).body)
        fill = rep["fill"]
        if fill.get("objects_total") == 3 and fill.get("objects_present") == 3:
            break
        assert time.monotonic() < end, fill
        await asyncio.sleep(0.1)
    assert fill["bytes_by_source"]["origin"] == sum(len(b) for b in objects.values())
    for path, body in objects.items():
        r = await fetch(client, url + path)
        assert r.status == 200 and r.body == body and r.cache.startswith("edgecdn; hit")
    text = (await fetch(client, url + "/metrics")).body.decode()
    assert 'edgecdn_fill_bytes_total{source="origin"}' in text
    assert e.term() == 0  # the last spool file is shipped on the way out
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="logs/lon/lon-1/")
            .get("Contents", [])]
    assert keys and all(k.endswith(".jsonl.gz") for k in keys)


async def test_sigterm_lets_in_flight_responses_finish(origin, edge_procs, tmp_path):
    body = payload(2 * CHUNK, 9)
    origin.put("/g.ts", body, headers=CC)
    origin.held.add("/g.ts")
    port = free_port()
    e = EdgeProcess(_args(origin.url, tmp_path / "cache", port))
    edge_procs.append(e)
    e.wait_ready()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /g.ts HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200")
    e.proc.send_signal(signal.SIGTERM)  # mid-response
    origin.held.clear()
    origin.release()
    got = await asyncio.wait_for(reader.readexactly(len(body)), 10)
    assert got == body
    assert b"connection: close" in head.lower() or await reader.read() == b""
    writer.close()
    assert await asyncio.to_thread(e.proc.wait, 20) == 0


def test_port_in_use_exits_with_a_reason(origin, edge_procs, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        for workers in ("1", "2"):
            e = EdgeProcess(_args(origin.url, tmp_path / "cache", port, "--workers", workers))
            edge_procs.append(e)
            rc = e.proc.wait(30)
            assert rc != 0
            assert any("cannot start" in line for line in e.lines) or rc == 3
