from __future__ import annotations

import asyncio
import gzip
import json
import os
import time
from pathlib import Path

import boto3
import pytest

from contracts.config import ConfigError
from contracts.logs import AccessRecord
from edge.logship import LogShipConfig, LogShipper, object_name
from origin.popularity import Popularity, read_logs
from tests.conftest import free_port


def _lines(n: int, path: str = "/titles/T/480p/seg_00001.ts") -> bytes:
    now = time.time()
    return b"".join(
        AccessRecord(now - i, "10.0.0.1", "GET", path, 200, 1000, "hit", 0.3, "", "lon-1",
                     "lon", "eu").to_json().encode() + b"\n" for i in range(n))


def _spool(tmp_path: Path) -> Path:
    d = tmp_path / "cache" / "logs"
    d.mkdir(parents=True)
    (d / "access-100-1.ready").write_bytes(_lines(3))
    (d / "access-100-2.jsonl.ready").write_bytes(_lines(2))
    (d / "access-100-3.jsonl").write_bytes(_lines(1))  # still being written: not shipped
    return d


def _keys(s3, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


async def test_ships_ready_files_gzipped_then_deletes(tmp_path, s3_endpoint, s3_bucket) -> None:
    spool = _spool(tmp_path)
    want = {f"logs/lon/lon-1/{object_name(p)}": p.read_bytes()
            for p in sorted(spool.glob("*.ready"))}
    cfg = LogShipConfig.from_section({"to": f"s3://{s3_bucket}/logs",
                                      "endpoint_url": s3_endpoint, "interval": 60})
    sh = LogShipper.from_config(cfg, spool, "lon", "lon-1")
    task = asyncio.create_task(sh.run())
    async with asyncio.timeout(20):
        await sh.round_done.wait()
    await sh.stop()
    await task
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    assert _keys(s3, s3_bucket) == sorted(want)
    for key, raw in want.items():
        body = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        assert gzip.decompress(body) == raw
        assert key.split("/")[-1].split("-")[1] == "100"  # <ts>-<pid>-<seq>.jsonl.gz
    assert sorted(p.name for p in spool.iterdir()) == ["access-100-3.jsonl"]
    st = sh.status()
    assert st["shipped_files"] == 2 and st["pending_files"] == 0 and st["failures"] == 0
    assert ("edgecdn_logship_files_total", {}, 2.0) in sh.metric_samples()
    # what the planner reads back is every line shipped
    pop = Popularity(3600.0)
    read_logs(s3, s3_bucket, "logs/", pop)
    assert pop.counted == 5 and pop.bad_lines == 0


async def test_outage_keeps_files_and_restart_ships_them_once(tmp_path, s3_endpoint,
                                                              s3_bucket) -> None:
    spool = _spool(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: S3 is down
    down = LogShipper(spool, bucket=s3_bucket, prefix="logs/", site="lon", edge="lon-1",
                      endpoint_url=dead, interval=60)
    assert down.ship_once() is False
    assert len(down.pending()) == 2 and down.status()["failures"] == 1
    assert "lon-1" in down.status()["destination"] and down.last_error

    # a crash between upload and delete: the object is there, the file too
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    first = down.pending()[0]
    s3.put_object(Bucket=s3_bucket, Key=f"logs/lon/lon-1/{object_name(first)}",
                  Body=gzip.compress(first.read_bytes()))

    # the restarted edge ships everything, and the re-shipped file lands on the same key
    up = LogShipper(spool, bucket=s3_bucket, prefix="logs/", site="lon", edge="lon-1",
                    endpoint_url=s3_endpoint, interval=60)
    task = asyncio.create_task(up.run())
    async with asyncio.timeout(20):
        await up.round_done.wait()
    await up.stop()
    await task
    assert len(_keys(s3, s3_bucket)) == 2 and up.pending() == []


async def test_shipping_a_big_file_does_not_block_the_loop(tmp_path, s3_endpoint,
                                                           s3_bucket) -> None:
    spool = tmp_path / "logs"
    spool.mkdir()
    (spool / "access-7-1.ready").write_bytes(_lines(20_000) * 5)  # ~20 MiB of JSON lines
    sh = LogShipper(spool, bucket=s3_bucket, prefix="logs/", site="lon", edge="lon-1",
                    endpoint_url=s3_endpoint, interval=60)
    task = asyncio.create_task(sh.run())
    worst = 0.0
    last = time.monotonic()
    while not sh.round_done.is_set():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        worst = max(worst, now - last)
        last = now
    await sh.stop()
    await task
    assert sh.status()["shipped_files"] == 1
    assert worst < 0.5, f"event loop stalled {worst:.2f} s"


def test_config_and_names(tmp_path) -> None:
    assert not LogShipConfig.from_section({}).enabled
    for bad in ({"to": "http://x"}, {"to": "s3://b", "interval": 0}, {"to": "s3://b", "x": 1}):
        with pytest.raises(ConfigError):
            LogShipConfig.from_section(bad)
    with pytest.raises(ValueError):
        LogShipper(tmp_path, bucket="b", prefix="logs/", site="../x", edge="e")
    p = tmp_path / "access-12-34.ready"
    p.write_text("{}\n")
    os.utime(p, (1_700_000_000, 1_700_000_000))
    assert object_name(p) == "1700000000-12-34.jsonl.gz"
    q = tmp_path / "access-odd name.ready"
    q.write_text("{}\n")
    assert object_name(q).endswith("-0-odd_name.jsonl.gz")
    json.dumps(LogShipper(tmp_path, bucket="b", prefix="", site="s", edge="e").status())
