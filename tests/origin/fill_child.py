"""Child process for the kill -9 test: fills from an S3 origin, printing each chunk commit."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from edge.config import OriginConfig
from edge.fill import FillConfig, FillWorker
from edge.origin_client import S3Origin
from edge.policy import make_policy
from edge.store import Store, StoreConfig


async def main(a: dict) -> None:
    store = Store(StoreConfig(Path(a["dir"]), 1 << 30, 0, a["chunk"], fsync=True),
                  make_policy("lru", 1 << 30), make_policy("lru", 0))
    await store.start()
    origin = S3Origin(OriginConfig(url="", kind="s3", bucket=a["bucket"], prefix="pfx",
                                   endpoint_url=a["origin"]))
    cfg = FillConfig.from_section({"manifests": f"s3://{a['bucket']}/manifests/",
                                   "endpoint_url": a["s3"], "window": "now",
                                   "rate": a["rate"]})
    w = FillWorker(store, origin, cfg, edge="lon-1", site="lon")
    task = asyncio.create_task(w.run())
    seen = 0
    while not task.done():
        if w.chunks_committed != seen:
            seen = w.chunks_committed
            print(f"committed {seen}", flush=True)
        await asyncio.sleep(0.005)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
