"""Prometheus metrics of one steering server (own registry, so tests can run several).

Label children are resolved once and memoised: ``labels()`` costs more than ``inc()``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from steering.health import EdgeState


class SteerMetrics:
    def __init__(self, edges: dict[str, str]) -> None:  # edge -> site
        r = self.registry = CollectorRegistry()
        self.decisions = Counter("edgecdn_steer_decisions_total",
                                 "Steering decisions by first site and reason",
                                 ["site", "reason"], registry=r)
        self.fallbacks = Counter("edgecdn_steer_fallbacks_total",
                                 "Decisions with no edge (CloudFront only or nothing)",
                                 registry=r)
        self.bad = Counter("edgecdn_steer_bad_requests_total", "Requests refused with 4xx",
                           ["status"], registry=r)
        self.dns = Counter("edgecdn_steer_dns_queries_total", "DNS queries by response code",
                           ["rcode", "transport"], registry=r)
        self.state = Gauge("edgecdn_steer_edge_state", "1 for the edge's current health state",
                           ["edge", "state"], registry=r)
        self.load = Gauge("edgecdn_steer_edge_load", "Edge egress/capacity from its last report",
                          ["edge"], registry=r)
        self.probe = Histogram("edgecdn_steer_probe_seconds", "Health probe latency",
                               ["site"], registry=r,
                               buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                        0.5, 1.0))
        self.probe_fail = Counter("edgecdn_steer_probe_failures_total", "Failed health probes",
                                  ["edge"], registry=r)
        self.region_weight = Gauge("edgecdn_steer_region_weight", "Effective region weight",
                                   ["region"], registry=r)
        self.region_keep = Gauge("edgecdn_steer_region_keep",
                                 "Share of its traffic a region keeps (0 = evacuated)",
                                 ["region"], registry=r)
        self.cf_signatures = Gauge("edgecdn_steer_cloudfront_signatures",
                                   "RSA signatures made for CloudFront URLs (memoised)",
                                   registry=r)
        self.loop_lag = Histogram("edgecdn_steer_loop_lag_seconds",
                                  "How late the serving loop ran its 0.2 s ticker", registry=r,
                                  buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25,
                                           0.5, 1.0))
        self._dec: dict[tuple[str, str], Counter] = {}
        self._probe_site = {e: self.probe.labels(site) for e, site in edges.items()}
        self._load = {e: self.load.labels(e) for e in edges}
        self._state = {(e, s): self.state.labels(e, s.value) for e in edges for s in EdgeState}
        for e in edges:
            self.set_state(e, EdgeState.UNKNOWN)

    def decision(self, site: str, reason: str) -> None:
        c = self._dec.get((site, reason))
        if c is None:
            c = self._dec[(site, reason)] = self.decisions.labels(site, reason)
        c.inc()

    def set_state(self, edge: str, state: EdgeState) -> None:
        for s in EdgeState:
            self._state[(edge, s)].set(1.0 if s is state else 0.0)

    def set_load(self, edge: str, load: float) -> None:
        self._load[edge].set(load)

    def observe_probe(self, edge: str, seconds: float) -> None:
        self._probe_site[edge].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
