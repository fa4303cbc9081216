"""Counting for a player run: every request and session lands here, the report comes out.

One stats object owns all numbers (as in Caffeine's simulator): players only call
``request()`` and ``session()``; the live view, the JSON report and the PNG read from it.
Time is passed in (seconds since the run started), never read here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

# latency histogram bin edges (ms), log-spaced 0.1 ms .. 100 s
LAT_EDGES_MS = [round(10 ** (e / 8), 4) for e in range(-8, 41)]
MAX_SESSION_DETAIL = 20_000  # per-play lines kept in the JSON report (long runs stay readable)
TIMING_KEYS = frozenset({
    "wall_seconds", "startup_s", "segment_latency_ms", "throughput", "timeline",
    "latency_histogram", "rebuffer", "started_at", "bucket_seconds",
})


@dataclass(slots=True)
class RequestSample:
    """One HTTP request a player made (each failover attempt is its own sample)."""

    t: float  # seconds since run start, when the request finished
    kind: str  # "master" | "playlist" | "segment"
    source: str  # edge name, "cloudfront", or "steering"
    site: str
    region: str
    status: int  # 0: connection error or timeout
    nbytes: int
    latency: float  # seconds to the full body
    cache: str  # "hit" | "miss" | "" (no Cache-Status)
    ok: bool
    error: str = ""  # "timeout", "reset", "http 503", "corrupt", "short", ...


@dataclass(slots=True)
class SessionResult:
    player: int
    index: int
    title: str
    client_ip: str
    ok: bool
    reason: str = ""  # why the play failed
    startup: float | None = None  # wall seconds from start to first frame
    rebuffers: int = 0
    rebuffer_time: float = 0.0  # wall seconds stalled
    segments: int = 0  # segments played
    planned_segments: int = 0
    abandoned: bool = False
    cut: bool = False  # the run ended mid-play (not a failure)
    failovers: int = 0
    resteers: int = 0
    corrupt: int = 0
    renditions: list[str] = field(default_factory=list)  # rendition of each segment


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def parse_cache_status(value: str | None) -> str:
    """RFC 9211 Cache-Status -> "hit" / "miss" / "" for our edge's (first) entry."""
    if not value:
        return ""
    first = value.split(",")[0]
    params = [p.strip().lower() for p in first.split(";")[1:]]
    if "hit" in params:
        return "hit"
    if any(p.startswith("fwd=") for p in params):
        return "miss"
    return ""


class _Bucket:
    __slots__ = ("bytes", "hit_bytes", "requests", "hits", "errors", "by_site", "by_region",
                 "by_source")

    def __init__(self) -> None:
        self.bytes = self.hit_bytes = self.requests = self.hits = self.errors = 0
        self.by_site: dict[str, int] = defaultdict(int)
        self.by_region: dict[str, int] = defaultdict(int)
        self.by_source: dict[str, int] = defaultdict(int)


class RunStats:
    """All the numbers of one run. Not thread-safe; one event loop writes it."""

    def __init__(self, bucket_seconds: float = 1.0) -> None:
        self.bucket_seconds = bucket_seconds
        self.sources: dict[str, dict[str, Any]] = {}
        self.buckets: dict[int, _Bucket] = defaultdict(_Bucket)
        self.seg_latencies: list[float] = []
        self.sessions: list[SessionResult] = []
        self.events: list[dict[str, Any]] = []
        self.segments_ok = self.segments_corrupt = self.segments_short = 0
        self.segments_verified = self.segments_unverified = 0
        self.request_errors = 0
        self.failovers = 0
        self.active_players = 0
        self.sessions_started = 0
        self.last_t = 0.0

    # -- recording ---------------------------------------------------------------
    def request(self, s: RequestSample) -> None:
        self.last_t = max(self.last_t, s.t)
        src = self.sources.get(s.source)
        if src is None:
            src = self.sources[s.source] = {
                "kind": "cloudfront" if s.source == "cloudfront" else "edge",
                "site": s.site, "region": s.region, "requests": 0, "bytes": 0, "hits": 0,
                "hit_bytes": 0, "misses": 0, "errors": 0, "segments": 0,
            }
        src["requests"] += 1
        b = self.buckets[int(s.t // self.bucket_seconds)]
        b.requests += 1
        if not s.ok:
            src["errors"] += 1
            b.errors += 1
            self.request_errors += 1
        if s.ok:
            src["bytes"] += s.nbytes
            b.bytes += s.nbytes
            b.by_source[s.source] += s.nbytes
            if s.site:
                b.by_site[s.site] += s.nbytes
            if s.region:
                b.by_region[s.region] += s.nbytes
            if s.cache == "hit":
                src["hits"] += 1
                src["hit_bytes"] += s.nbytes
                b.hits += 1
                b.hit_bytes += s.nbytes
            elif s.cache == "miss":
                src["misses"] += 1
            if s.kind == "segment":
                src["segments"] += 1
                self.seg_latencies.append(s.latency)

    def segment_checked(self, verdict: str) -> None:
        """verdict: "ok" | "corrupt" | "short" | "unverified"."""
        if verdict == "ok":
            self.segments_ok += 1
            self.segments_verified += 1
        elif verdict == "unverified":
            self.segments_ok += 1
            self.segments_unverified += 1
        elif verdict == "corrupt":
            self.segments_corrupt += 1
        elif verdict == "short":
            self.segments_short += 1

    def session(self, r: SessionResult) -> None:
        self.sessions.append(r)
        self.failovers += r.failovers

    def event(self, t: float, what: str, ok: bool, detail: str = "") -> None:
        self.events.append({"t": round(t, 3), "what": what, "ok": ok, "detail": detail})

    def merge(self, o: RunStats) -> None:
        """Fold in the stats of another shard of the same run (same clock origin)."""
        for name, src in o.sources.items():
            mine = self.sources.get(name)
            if mine is None:
                self.sources[name] = dict(src)
            else:
                for k, v in src.items():
                    if isinstance(v, int):
                        mine[k] += v
        for i, b in o.buckets.items():
            m = self.buckets[i]
            m.bytes += b.bytes
            m.hit_bytes += b.hit_bytes
            m.requests += b.requests
            m.hits += b.hits
            m.errors += b.errors
            for mine_d, theirs in ((m.by_site, b.by_site), (m.by_region, b.by_region),
                                   (m.by_source, b.by_source)):
                for k, v in theirs.items():
                    mine_d[k] += v
        self.seg_latencies.extend(o.seg_latencies)
        self.sessions.extend(o.sessions)
        self.events = sorted(self.events + o.events, key=lambda e: e["t"])
        for k in ("segments_ok", "segments_corrupt", "segments_short", "segments_verified",
                  "segments_unverified", "request_errors", "failovers", "sessions_started"):
            setattr(self, k, getattr(self, k) + getattr(o, k))
        self.last_t = max(self.last_t, o.last_t)

    # -- reading -----------------------------------------------------------------
    def hit_ratios(self) -> tuple[float | None, float | None]:
        """(byte, object) hit ratio over responses that carried a Cache-Status."""
        hb = sum(s["hit_bytes"] for s in self.sources.values())
        hits = sum(s["hits"] for s in self.sources.values())
        judged = sum(s["hits"] + s["misses"] for s in self.sources.values())
        judged_bytes = sum(
            s["bytes"] for s in self.sources.values() if s["hits"] + s["misses"] > 0
        )
        byte_r = hb / judged_bytes if judged_bytes else None
        obj_r = hits / judged if judged else None
        return byte_r, obj_r

    def total_bytes(self) -> int:
        return sum(s["bytes"] for s in self.sources.values())

    def recent_mbps(self, now: float, window: float = 3.0) -> float:
        lo = int((now - window) // self.bucket_seconds)
        hi = int(now // self.bucket_seconds)
        total = sum(self.buckets[i].bytes for i in range(lo, hi) if i in self.buckets)
        return total * 8 / 1e6 / window

    def report(self, run: dict[str, Any]) -> dict[str, Any]:
        done = self.sessions
        failed = [s for s in done if not s.ok]
        reasons: dict[str, int] = defaultdict(int)
        for s in failed:
            reasons[s.reason] += 1
        startups = [s.startup for s in done if s.startup is not None]
        lat_ms = [x * 1000 for x in self.seg_latencies]
        byte_r, obj_r = self.hit_ratios()
        wall = float(run.get("wall_seconds") or self.last_t or 1.0)
        total = self.total_bytes()
        timeline = []
        peak = 0.0
        for i in range(max(self.buckets, default=-1) + 1):  # dense: idle seconds show as 0
            b = self.buckets[i] if i in self.buckets else _Bucket()
            mbps = b.bytes * 8 / 1e6 / self.bucket_seconds
            peak = max(peak, mbps)
            timeline.append({
                "t": round(i * self.bucket_seconds, 3), "bytes": b.bytes, "hit_bytes": b.hit_bytes,
                "requests": b.requests, "hits": b.hits, "errors": b.errors,
                "by_site": dict(sorted(b.by_site.items())),
                "by_region": dict(sorted(b.by_region.items())),
                "by_source": dict(sorted(b.by_source.items())),
            })
        hist = [0] * (len(LAT_EDGES_MS) + 1)
        for v in lat_ms:
            hist[_bin(v)] += 1
        by_site: dict[str, int] = defaultdict(int)
        by_region: dict[str, int] = defaultdict(int)
        for name, s in self.sources.items():
            by_site[s["site"] or name] += s["bytes"]
            by_region[s["region"] or name] += s["bytes"]
        return {
            "run": run,
            "plays": {
                "sessions": len(done),
                "ok": len(done) - len(failed),
                "failed": len(failed),
                "failed_reasons": dict(sorted(reasons.items())),
                "abandoned": sum(1 for s in done if s.abandoned),
                "cut_by_run_end": sum(1 for s in done if s.cut),
                "titles": _count(s.title for s in done),
            },
            "startup_s": _summary(startups),
            "rebuffer": {
                "count": sum(s.rebuffers for s in done),
                "seconds": round(sum(s.rebuffer_time for s in done), 3),
                "sessions_with_rebuffer": sum(1 for s in done if s.rebuffers),
            },
            "segment_latency_ms": _summary(lat_ms),
            "segments": {
                "played": sum(s.segments for s in done),
                "ok": self.segments_ok,
                "verified": self.segments_verified,
                "unverified": self.segments_unverified,
                "corrupt": self.segments_corrupt,
                "short": self.segments_short,
            },
            "requests": {
                "total": sum(s["requests"] for s in self.sources.values()),
                "errors": self.request_errors,
                "failovers": self.failovers,
                "resteers": sum(s.resteers for s in done),
            },
            "hit_ratio": {"byte": _r(byte_r), "object": _r(obj_r)},
            "bytes_total": total,
            "throughput": {
                "mean_mbps": round(total * 8 / 1e6 / wall, 3),
                "peak_mbps": round(peak, 3),
            },
            "sources": {k: self.sources[k] for k in sorted(self.sources)},
            "bytes_by_site": dict(sorted(by_site.items())),
            "bytes_by_region": dict(sorted(by_region.items())),
            "faults": self.events,
            "latency_histogram": {"edges_ms": LAT_EDGES_MS, "counts": hist},
            "bucket_seconds": self.bucket_seconds,
            "timeline": timeline,
            "sessions_detail": [
                {"player": s.player, "index": s.index, "title": s.title,
                 "client_ip": s.client_ip, "ok": s.ok, "reason": s.reason,
                 "segments": s.segments, "planned_segments": s.planned_segments,
                 "renditions": s.renditions, "failovers": s.failovers, "corrupt": s.corrupt}
                for s in sorted(done, key=lambda s: (s.player, s.index))[:MAX_SESSION_DETAIL]
            ],
            "sessions_detail_truncated": len(done) > MAX_SESSION_DETAIL,
        }


def without_timing(report: dict[str, Any]) -> dict[str, Any]:
    """The part of a report that must repeat exactly for the same seed."""
    out = {k: v for k, v in report.items() if k not in TIMING_KEYS}
    out["run"] = {k: v for k, v in report.get("run", {}).items() if k not in TIMING_KEYS}
    out["faults"] = [{k: v for k, v in e.items() if k != "t"} for e in report.get("faults", [])]
    return out


def _bin(v_ms: float) -> int:
    lo, hi = 0, len(LAT_EDGES_MS)
    while lo < hi:
        mid = (lo + hi) // 2
        if LAT_EDGES_MS[mid] <= v_ms:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _summary(vals: list[float]) -> dict[str, Any]:
    if not vals:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    return {
        "n": len(vals),
        "p50": _r(percentile(vals, 50)),
        "p90": _r(percentile(vals, 90)),
        "p99": _r(percentile(vals, 99)),
        "mean": _r(sum(vals) / len(vals)),
        "max": _r(max(vals)),
    }


def _count(items: Any) -> dict[str, int]:
    c: dict[str, int] = defaultdict(int)
    for x in items:
        c[x] += 1
    return dict(sorted(c.items()))
