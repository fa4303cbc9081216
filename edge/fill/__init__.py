"""Proactive fill: this edge's manifest -> its disk, off-peak, peers first, under a cap.

The edge process creates ``FillWorker(store, origin, FillConfig.from_section(doc["fill"]),
edge=..., site=..., load=...)``, runs ``await worker.run()`` as a task, shows
``worker.status()`` in /healthz (EdgeReport.fill) and ``worker.metric_samples()`` in /metrics,
and calls ``await worker.stop()`` on shutdown.
"""

from edge.fill.config import PEER_FILL_HEADER, FillConfig
from edge.fill.window import FillWindow
from edge.fill.worker import FillWorker

__all__ = ["PEER_FILL_HEADER", "FillConfig", "FillWindow", "FillWorker"]
