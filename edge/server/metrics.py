"""Prometheus metrics. The hot path bumps plain integers (edge.server.app.Counters); ``sync``
moves the deltas into prometheus-client once a second and before each scrape, so with
``PROMETHEUS_MULTIPROC_DIR`` set (``--workers N``) every worker's values land in the shared
files and any worker answers /metrics for all of them."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class EdgeMetrics:
    def __init__(self) -> None:
        self.multiproc = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        r = self.registry = CollectorRegistry()
        self.requests = Counter("edgecdn_requests", "Responses by cache status", ["cache"],
                                registry=r)
        self.bytes = Counter("edgecdn_bytes_sent", "Response bytes sent to clients", registry=r)
        self.origin_fetches = Counter("edgecdn_origin_fetches", "Requests sent to the origin",
                                      registry=r)
        self.origin_errors = Counter("edgecdn_origin_errors", "Origin fetches that failed",
                                     registry=r)
        self.origin_bytes = Counter("edgecdn_origin_bytes", "Bytes read from the origin",
                                    registry=r)
        self.origin_latency = Histogram(
            "edgecdn_origin_first_byte_seconds", "Origin time to response headers",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r)
        self.evictions = Counter("edgecdn_evictions", "Chunks evicted", ["tier"], registry=r)
        self.corrupt = Counter("edgecdn_corrupt_chunks",
                               "Chunks that failed their checksum (their objects were dropped)",
                               registry=r)
        self.scrubbed = Counter("edgecdn_scrubbed_bytes",
                                "Chunk bytes re-read against their checksums", registry=r)
        self.tier_used = Gauge("edgecdn_tier_used_bytes", "Bytes held per tier", ["tier"],
                               registry=r, multiprocess_mode="livesum")
        self.tier_capacity = Gauge("edgecdn_tier_capacity_bytes", "Capacity per tier", ["tier"],
                                   registry=r, multiprocess_mode="livemax")
        self.active = Gauge("edgecdn_active_connections", "Open client connections",
                            registry=r, multiprocess_mode="livesum")
        self.negative = Gauge("edgecdn_negative_answers",
                              "Stored non-2xx answers (404, 410, 301...) held in memory",
                              registry=r, multiprocess_mode="livesum")
        self._last: dict[str, int] = {}

    def _delta(self, name: str, value: int) -> int:
        d = value - self._last.get(name, 0)
        self._last[name] = value
        return d

    def sync(self, app: Any, flights: Any, store: Any) -> None:
        app.fold_hot_counts()
        for cache, n in list(app.by_cache.items()):
            d = self._delta(f"req:{cache}", n)
            if d:
                self.requests.labels(cache).inc(d)
        for name, val, metric in (
            ("bytes", app.counters.bytes_sent, self.bytes),
            ("fetches", flights.stats.origin_fetches, self.origin_fetches),
            ("errors", flights.stats.origin_errors, self.origin_errors),
            ("obytes", flights.stats.origin_bytes, self.origin_bytes),
        ):
            d = self._delta(name, val)
            if d:
                metric.inc(d)
        lat = flights.stats.latencies
        if lat:
            flights.stats.latencies = []
            for v in lat:
                self.origin_latency.observe(v)
        counters = getattr(store, "counters", {})
        for tier, name in (("disk", "evictions"), ("memory", "memory_evictions")):
            d = self._delta(f"ev:{tier}", int(counters.get(name, 0)))
            if d:
                self.evictions.labels(tier).inc(d)
        for name, metric in (("corrupt_chunks", self.corrupt), ("scrubbed_bytes", self.scrubbed)):
            d = self._delta(name, int(counters.get(name, 0)))
            if d:
                metric.inc(d)
        for tier, usage in store.stats().items():
            self.tier_used.labels(tier).set(usage.used_bytes)
            self.tier_capacity.labels(tier).set(usage.capacity_bytes)
        self.active.set(app.counters.active)
        self.negative.set(len(app.negative.entries))

    def render(self) -> bytes:
        if self.multiproc:
            r = CollectorRegistry()
            MultiProcessCollector(r)
            return generate_latest(r)
        return generate_latest(self.registry)
