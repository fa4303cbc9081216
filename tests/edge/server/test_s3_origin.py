"""An S3 origin (moto server) through boto3 presigning + aiohttp streaming, and a real HLS
rendition pulled through the edge by ffmpeg."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import boto3

from tests.edge.server.conftest import CHUNK, fetch, payload


def _s3(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


async def test_s3_miss_hit_range_head_and_404(s3_endpoint, s3_bucket, make_edge, client):
    body = payload(3 * CHUNK + 77)
    s3 = _s3(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="packaged/titles/t1/r/seg_00001.ts", Body=body,
                  ContentType="video/mp2t")
    edge = make_edge(f"s3://{s3_bucket}/packaged", origin={"default_ttl": 60})
    url = edge.url + "/titles/t1/r/seg_00001.ts"
    r = await fetch(client, url)
    assert r.status == 200 and r.body == body
    assert r.headers["content-type"] == "video/mp2t" and r.headers["etag"]
    assert "fwd=miss" in r.cache
    assert not any(k.startswith("x-amz-") for k in r.headers)
    r = await fetch(client, url)
    assert r.body == body and r.cache.startswith("edgecdn; hit; ttl=")
    assert r.headers["cache-control"] == "max-age=60, stale-if-error=86400"
    r = await fetch(client, url, headers={"Range": f"bytes={CHUNK - 1}-{CHUNK}"})
    assert r.status == 206 and r.body == body[CHUNK - 1:CHUNK + 1]
    r = await fetch(client, url, "HEAD")
    assert r.status == 200 and r.headers["content-length"] == str(len(body))
    r = await fetch(client, edge.url + "/titles/t1/r/nope.ts")
    assert r.status == 404
    # the query string is not part of an S3 object's key
    r = await fetch(client, url + "?utm=1&x=2")
    assert r.status == 200 and r.cache.startswith("edgecdn; hit")
    r = await fetch(client, url, "DELETE")
    assert r.status == 405 and "GET" in r.headers["allow"]


async def test_s3_revalidation_by_etag_after_ttl(s3_endpoint, s3_bucket, make_edge, client):
    s3 = _s3(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="o.bin", Body=b"first" * 100)
    edge = make_edge(f"s3://{s3_bucket}", origin={"default_ttl": 0})
    url = edge.url + "/o.bin"
    assert (await fetch(client, url)).body == b"first" * 100
    r = await fetch(client, url)  # ttl 0: heuristic freshness from Last-Modified (just now)
    assert r.body == b"first" * 100
    s3.put_object(Bucket=s3_bucket, Key="o.bin", Body=b"second" * 100)
    edge.call(edge.node.store.purge, "/o.bin", None, True)  # soft: revalidate before reuse
    r = await fetch(client, url)
    assert r.body == b"second" * 100


async def test_s3_concurrent_misses_one_get_per_chunk(s3_endpoint, s3_bucket, make_edge, client):
    body = payload(4 * CHUNK)
    _s3(s3_endpoint).put_object(Bucket=s3_bucket, Key="c.bin", Body=body)
    edge = make_edge(f"s3://{s3_bucket}")
    rs = await asyncio.gather(*(fetch(client, edge.url + "/c.bin") for _ in range(10)))
    assert all(r.body == body for r in rs)
    assert edge.node.flights.stats.origin_fetches == 4


async def test_ffmpeg_pulls_hls_through_the_edge(s3_endpoint, s3_bucket, make_edge, ffmpeg,
                                                 hls_rendition: Path, tmp_path, client):
    s3 = _s3(s3_endpoint)
    files = sorted(hls_rendition.iterdir())
    for f in files:
        ctype = "application/vnd.apple.mpegurl" if f.suffix == ".m3u8" else "video/mp2t"
        s3.put_object(Bucket=s3_bucket, Key=f"titles/demo/r360/{f.name}", Body=f.read_bytes(),
                      ContentType=ctype)
    edge = make_edge(f"s3://{s3_bucket}", cache={"chunk_size": "64KiB"},
                     log={"access": str(tmp_path / "access.jsonl")})
    out = tmp_path / "out.ts"
    proc = await asyncio.create_subprocess_exec(
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-i", f"{edge.url}/titles/demo/r360/index.m3u8", "-c", "copy", str(out),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert out.stat().st_size > 100_000
    # every segment as fetched through the edge (now from cache) equals the source file
    segs = [f for f in files if f.suffix == ".ts"]
    assert len(segs) >= 3
    via_edge = b""
    for f in segs:
        r = await fetch(client, f"{edge.url}/titles/demo/r360/{f.name}")
        assert r.status == 200 and r.cache.startswith("edgecdn; hit")
        via_edge += r.body
    assert via_edge == b"".join(f.read_bytes() for f in segs)
    # ffmpeg's copy holds the same number of TS packets' worth of media (188-byte aligned)
    assert out.stat().st_size % 188 == 0


async def test_s3_unreachable_serves_stale_else_502(s3_endpoint, s3_bucket, make_edge, client):
    s3 = _s3(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="keep.bin", Body=b"kept" * 10)
    edge = make_edge(f"s3://{s3_bucket}", origin={"default_ttl": 1, "connect_timeout": 0.3,
                                                  "first_byte_timeout": 0.5})
    assert (await fetch(client, edge.url + "/keep.bin")).body == b"kept" * 10
    edge.call(edge.node.store.purge, "/keep.bin", None, True)  # must revalidate now
    # S3 goes away: presigned URLs now point at a port where nothing listens
    origin = edge.node.origin
    origin.client = boto3.client("s3", endpoint_url="http://127.0.0.1:9",
                                 region_name="us-east-1")
    origin._urls.clear()
    r = await fetch(client, edge.url + "/keep.bin")
    assert r.status == 200 and r.body == b"kept" * 10
    assert "stale-if-error" in r.cache
    r = await fetch(client, edge.url + "/never-cached.bin")
    assert r.status == 502 and b"unreachable" in r.body
