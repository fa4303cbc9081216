"""The issue's fill measure, end to end minus the HTTP server: logs -> `fill plan` -> one fill
window into a real Store -> a fresh player workload from the same popularity is replayed
against what the store holds. Byte hit ratio from the very first request must be >= 85% at a
budget that holds the objects making up 90% of the workload's bytes; a cold LRU cache of the
same size on the same workload is the comparison."""

from __future__ import annotations

import gzip
import json
import random
import time
from pathlib import Path

import boto3

from bench.fill_measure import Params, budget_for, catalogue, workload
from edge.config import OriginConfig
from edge.fill import FillConfig, FillWorker
from edge.origin_client import S3Origin
from edge.policy import make_policy
from edge.store import Store, StoreConfig
from edgecdn.cli import main
from tests.origin.standins import run_first_pass

# Zipf titles x (480p, 240p) x 10 segments, playlists 400 B, 240p segments 6-14 KB
SHAPE = Params(titles=16, segments=10, seg_min=6_000, seg_max=14_000)
FLEET = """
[origin]
url = "s3://{bucket}/o"
[[regions]]
name = "eu"
  [[regions.sites]]
  name = "lon"
  lat = 51.5
  lon = -0.1
  disk = {budget}
    [[regions.sites.edges]]
    name = "lon-1"
    url = "http://127.0.0.1:1"
"""


def _lru_byte_hit_ratio(requests: list[str], sizes: dict[str, int], capacity: int) -> float:
    p = make_policy("lru", capacity)
    hit = total = 0
    for path in requests:
        size = sizes[path]
        total += size
        if p.access(path, size):
            hit += size
        elif size <= capacity and p.admit(path, size):
            need = p.used + size - capacity
            if need > 0:
                p.victims(need)
            p.insert(path, size)
    return hit / total


async def test_planned_fill_serves_85_percent_of_bytes_from_the_first_request(
        tmp_path: Path, s3_endpoint: str, s3_bucket: str, capsys) -> None:
    rng = random.Random(11)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    sizes = catalogue(SHAPE, rng)
    for path, size in sizes.items():
        s3.put_object(Bucket=s3_bucket, Key="o" + path, Body=b"\x47" * size)

    # the logs the edges shipped: two hours of the same popularity
    now = time.time()
    past = workload(SHAPE, rng, 2500)
    lines = [json.dumps({"ts": now - 7200 + 7200 * i / len(past), "client": "1.1.1.1",
                         "method": "GET", "path": p, "status": 200, "bytes": sizes[p],
                         "cache": "hit", "dur_ms": 1, "edge": "lon-1", "site": "lon"})
             for i, p in enumerate(past)]
    s3.put_object(Bucket=s3_bucket, Key=f"logs/lon/lon-1/{int(now)}-1-1.jsonl.gz",
                  Body=gzip.compress("\n".join(lines).encode()))

    # the player workload to come, and the budget that holds 90% of its bytes
    future = workload(SHAPE, random.Random(99), 2500)
    budget = budget_for(future, sizes, 0.9)
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET.format(bucket=s3_bucket, budget=budget))
    assert main(["fill", "plan", "--fleet", str(fleet), "--endpoint-url", s3_endpoint,
                 "--half-life", "1h", "--json"]) == 0
    capsys.readouterr()

    store = Store(StoreConfig(tmp_path / "cache", 1 << 30, 0, 64 * 1024, fsync=False),
                  make_policy("lru", 1 << 30), make_policy("lru", 0))
    await store.start()
    origin = S3Origin(OriginConfig(url=f"s3://{s3_bucket}/o", kind="s3", bucket=s3_bucket,
                                   prefix="o", endpoint_url=s3_endpoint))
    cfg = FillConfig.from_section({"manifests": f"s3://{s3_bucket}/manifests/",
                                   "endpoint_url": s3_endpoint, "window": "now", "rate": 0,
                                   "concurrency": 4})
    w = FillWorker(store, origin, cfg, edge="lon-1", site="lon")
    try:
        st = await run_first_pass(w, 60)
    finally:
        await origin.close()
    assert st["state"] == "complete" and st["bytes_present"] <= budget

    held = {p for p in sizes if store.get_meta(p) is not None}
    store.close()

    def filled(reqs: list[str]) -> float:
        return sum(sizes[p] for p in reqs if p in held) / sum(sizes[p] for p in reqs)

    first = future[: len(future) // 10]  # "from its very first request"
    ratios = {"filled": filled(future), "cold_lru": _lru_byte_hit_ratio(future, sizes, budget),
              "filled_first_10pct": filled(first),
              "cold_lru_first_10pct": _lru_byte_hit_ratio(first, sizes, budget)}
    print(f"budget {budget} B ({budget / sum(sizes.values()):.0%} of the catalogue): "
          + ", ".join(f"{k} {v:.1%}" for k, v in ratios.items()))
    assert ratios["filled"] >= 0.85 and ratios["filled_first_10pct"] >= 0.85
    assert ratios["filled_first_10pct"] > ratios["cold_lru_first_10pct"]
