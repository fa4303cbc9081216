"""Prometheus metrics of one steering server (own registry, so tests can run several).

Label children are resolved once and memoised: ``labels()`` costs more than ``inc()``.
A scrape renders on the serving loop, and prometheus_client spends ~6 µs per sample: with
200 edges the per-edge families (5 state series + a load per edge) and per-site probe
histograms made a 2,000-sample, 13 ms stall per scrape. So the per-edge families are kept
in plain dicts and written from pre-rendered label prefixes (~0.2 ms for 1,200 lines), and
probe latency is a histogram per region.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from steering.health import EdgeState


class SteerMetrics:
    def __init__(self, edges: dict[str, str]) -> None:  # edge -> region
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
        self.probe = Histogram("edgecdn_steer_probe_seconds", "Health probe latency",
                               ["region"], registry=r,
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
        self._probe_region = {e: self.probe.labels(region) for e, region in edges.items()}
        self._state = dict.fromkeys(edges, EdgeState.UNKNOWN)
        self._load: dict[str, float] = {}
        self._state_pre = {(e, st): f'edgecdn_steer_edge_state{{edge="{_esc(e)}",'
                                    f'state="{st.value}"}} ' for e in edges for st in EdgeState}
        self._load_pre = {e: f'edgecdn_steer_edge_load{{edge="{_esc(e)}"}} ' for e in edges}

    def decision(self, site: str, reason: str) -> None:
        c = self._dec.get((site, reason))
        if c is None:
            c = self._dec[(site, reason)] = self.decisions.labels(site, reason)
        c.inc()

    def set_state(self, edge: str, state: EdgeState) -> None:
        self._state[edge] = state

    def set_load(self, edge: str, load: float) -> None:
        self._load[edge] = load

    def observe_probe(self, edge: str, seconds: float) -> None:
        self._probe_region[edge].observe(seconds)

    def render(self) -> bytes:
        out = [generate_latest(self.registry).decode(),
               "# HELP edgecdn_steer_edge_state 1 for the edge's current health state\n"
               "# TYPE edgecdn_steer_edge_state gauge\n"]
        pre = self._state_pre
        for e, cur in self._state.items():
            for st in EdgeState:
                out.append(pre[(e, st)] + ("1.0\n" if st is cur else "0.0\n"))
        out.append("# HELP edgecdn_steer_edge_load Edge egress/capacity from its last report\n"
                   "# TYPE edgecdn_steer_edge_load gauge\n")
        lpre = self._load_pre
        for e, x in self._load.items():
            out.append(lpre[e] + ("+Inf" if x == math.inf else repr(float(x))) + "\n")
        return "".join(out).encode()


def _esc(v: str) -> str:
    """A label value as the text exposition format wants it."""
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
