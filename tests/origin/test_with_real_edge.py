"""With a real `edgecdn edge` process: it is the peer a filling edge asks first, and its
access-log spool is what the LogShipper sends to S3 and the planner counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import boto3
import pytest

from bench.fill_measure import EdgeProcess
from edge.config import OriginConfig
from edge.fill import FillConfig, FillWorker
from edge.logship import LogShipper
from edge.origin_client import S3Origin
from edge.policy import make_policy
from edge.store import Store, StoreConfig
from origin.popularity import Popularity, read_logs
from tests.conftest import free_port
from tests.origin.standins import RecordingProxy, run_first_pass
from tests.origin.test_fill_worker import _put_manifest, _put_objects, _stored

CS = 256 * 1024


@pytest.fixture
async def peer_edge(tmp_path: Path, s3_endpoint: str,
                    s3_bucket: str) -> AsyncIterator[tuple[str, EdgeProcess, RecordingProxy, Path]]:
    """A real edge in front of the bucket (its origin traffic recorded), access-log spool on."""
    proxy = RecordingProxy(s3_endpoint)
    await proxy.start()
    port = free_port()
    cache = tmp_path / "peer-cache"
    cfg = tmp_path / "peer.toml"
    cfg.write_text("\n".join([
        "[edge]", 'name = "lon-2"', 'site = "lon"', 'region = "eu"',
        f'listen = "127.0.0.1:{port}"', "",
        "[origin]", f'url = "s3://{s3_bucket}/pfx"', f'endpoint_url = "{proxy.url}"',
        'region = "us-east-1"', "",
        "[cache]", f'dir = "{cache}"', 'memory = "0"', 'disk = "1GiB"',
        f'chunk_size = "{CS}"', "fsync = false", "",
        "[log]", 'access = ""', "spool = true", "rotate_seconds = 0.2", "",
    ]))
    edge = EdgeProcess(cfg)
    try:
        assert await asyncio.to_thread(edge.ready.wait, 60) and edge.proc.poll() is None, \
            "".join(edge.lines)
        yield f"http://127.0.0.1:{port}", edge, proxy, cache
    finally:
        edge.stop()
        await proxy.close()


async def test_real_peer_edge_serves_the_fill_and_its_logs_reach_the_planner(
        tmp_path: Path, s3_endpoint: str, s3_bucket: str, peer_edge) -> None:
    peer_url, edge, peer_origin, peer_cache = peer_edge
    objects = _put_objects(s3_endpoint, s3_bucket, [3 * CS + 10, 2 * CS, 100_000, 5 * CS])
    paths = list(objects)
    async with aiohttp.ClientSession() as http:
        for p in paths[:2]:  # players watched these at the peer: it holds them whole
            for _ in range(2):
                async with http.get(peer_url + p) as r:
                    assert r.status == 200 and await r.read() == objects[p]
                    status = r.headers.get("Cache-Status", "")
            assert "hit" in status and "fwd=" not in status, status
    peer_origin.seen.clear()

    _put_manifest(s3_endpoint, s3_bucket, objects, {"lon-2": peer_url})
    proxy = RecordingProxy(s3_endpoint)
    await proxy.start()
    origin = S3Origin(OriginConfig(url="", kind="s3", bucket=s3_bucket, prefix="pfx",
                                   endpoint_url=proxy.url))
    store = Store(StoreConfig(tmp_path / "cache", 1 << 30, 0, CS, fsync=False),
                  make_policy("lru", 1 << 30), make_policy("lru", 0))
    await store.start()
    cfg = FillConfig.from_section({"manifests": f"s3://{s3_bucket}/manifests/",
                                   "endpoint_url": s3_endpoint, "window": "now", "rate": 0})
    w = FillWorker(store, origin, cfg, edge="lon-1", site="lon")
    try:
        st = await run_first_pass(w, 30)
    finally:
        await origin.close()
        await proxy.close()
    assert st["state"] == "complete", st
    for p, body in objects.items():
        assert _stored(store, p) == body
    # the filling edge's origin saw only what the peer lacked; the peer went to no origin
    assert {g.path.removeprefix(f"/{s3_bucket}/pfx") for g in proxy.gets()} == set(paths[2:])
    assert peer_origin.gets() == []
    assert st["bytes_by_source"]["peer"] == len(objects[paths[0]]) + len(objects[paths[1]])
    store.close()

    # the peer's access log spool -> S3 -> the planner's popularity
    edge.stop()  # rotates the last spool file
    shipper = LogShipper(peer_cache / "logs", bucket=s3_bucket, prefix="logs/", site="lon",
                         edge="lon-2")
    assert shipper.pending()
    assert await asyncio.to_thread(shipper.ship_once) and shipper.pending() == []
    pop = Popularity(3600.0, site_region={"lon": "eu"})
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    read_logs(s3, s3_bucket, "logs/", pop)
    assert pop.bad_lines == 0
    top = {i.key: i.hits for i in pop.sites["lon"].top(pop.landmark or 0.0)}
    assert set(paths[:2]) <= set(top)  # the 4 player GETs (+ peer reads) were logged
