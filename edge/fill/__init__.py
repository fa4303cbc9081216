"""Proactive fill: this edge's manifest -> its disk, off-peak, peers first, under a cap.

Wiring (the edge process)::

    cfg = FillConfig.from_section(doc.get("fill"))       # the [fill] table
    worker = FillWorker(store, origin, cfg, edge=name, site=site, load=lambda: egress/cap,
                        state_dir=cache_dir / "fill",      # last good manifest (pins at start)
                        token=(kid, secret) if tokens required else None)
    task = asyncio.create_task(worker.run())
    ... /healthz: EdgeReport(fill=worker.status()); /metrics: worker.metric_samples()
    await worker.stop(); await task

With several worker processes, one runs ``FillWorker(...)`` and the others
``FillWorker(..., fetch=False)``, which only pin the chunk keys their store owns.

Peer-fill requests (what a peer edge must answer; ``PEER_FILL_HEADER``)::

    GET /titles/T/480p/seg_00003.ts[?token=...]
    X-Edgecdn-Peer-Fill: 1
    Cache-Control: only-if-cached
    [Range: bytes=a-b]

answered 200/206 from the store only when every chunk of the requested range is stored
(as for a hit: ETag, Last-Modified, Content-Type, Cache-Control, Content-Length/-Range),
else 404 (504 is accepted too); never an origin fetch, never a flight join, nothing stored.
Logged with ``cache="peerfill"`` (the planner ignores those lines: not audience demand).
"""

from edge.fill.config import PEER_FILL_HEADER, FillConfig
from edge.fill.window import FillWindow
from edge.fill.worker import FillWorker

__all__ = ["PEER_FILL_HEADER", "FillConfig", "FillWindow", "FillWorker"]
