"""The steering service's state and decisions, shared by the HTTP and DNS front ends.

Holds the health table (fed by probes), the traffic shifter (fed by the admin API and by
capacity), the current ``View`` snapshot the ranking reads, the signers and the memos. Time
is always passed in; the only I/O is the mmdb file and the decision log file.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from contracts.config import ConfigError
from contracts.fleet import Fleet
from contracts.keys import BadPath, ContentKey, normalize_path
from steering.decision_log import DecisionLog
from steering.geo import Location
from steering.geoip import GeoLocator
from steering.health import EdgeHealth, EdgeState, observe
from steering.metrics import SteerMetrics
from steering.ranking import Decision, Ranker, RankingConfig, View
from steering.settings import SteeringSettings
from steering.signing import CloudFrontUrls, EdgeTokens
from steering.traffic import TrafficShifter

_SAFE = "/-._~!$&'()*+,;=:@"


class BadRequest(ValueError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def default_location(fleet: Fleet, region: str) -> Location:
    name = region or fleet.regions[0].name
    for r in fleet.regions:
        if r.name == name and r.sites:
            lat = sum(s.lat for s in r.sites) / len(r.sites)
            lon = sum(s.lon for s in r.sites) / len(r.sites)
            return Location(lat, lon, "default")
    raise ConfigError(f"steering.default_region {name!r} is not a region with sites")


class Steering:
    def __init__(self, fleet: Fleet, settings: SteeringSettings, *,
                 rnd: Callable[[], float] | None = None, geoip_db: str | None = None) -> None:
        self.fleet = fleet
        self.settings = s = settings
        self.edges = {e.name: e for e in fleet.edges}
        self.site_of = {e.name: fleet.site(e.site) for e in fleet.edges}
        self.metrics = SteerMetrics({e.name: e.site for e in fleet.edges})
        db = s.geoip_db if geoip_db is None else geoip_db
        self.locator = GeoLocator(db, default_location(fleet, s.default_region))
        self.ranker = Ranker(fleet, RankingConfig(
            s.coverage_km, s.distance_tie_km, s.edges_per_site, s.max_sites, s.shed_low,
            s.shed_high))
        self.health: dict[str, EdgeHealth] = {n: EdgeHealth() for n in self.edges}
        self.shifter = TrafficShifter([r.name for r in fleet.regions], s.ramp_seconds,
                                      s.evacuate_below, s.restore_above, s.weights)
        self.tokens = EdgeTokens(fleet.signing)
        self.cloudfront = (CloudFrontUrls(fleet.cloudfront, s.cloudfront_bucket)
                           if fleet.cloudfront else None)
        self.log = DecisionLog(s.decision_log, s.decision_log_sample)
        self.rnd = rnd or random.Random().random
        self._gen = 0
        self._loads: dict[str, float] = {}
        self.view = View(0, {}, {}, {})
        self.capacity_started = False  # auto-evacuation waits for the first probe round
        self.rebuild(0.0, force=True)

    # -- state ---------------------------------------------------------------------------
    def on_probe(self, edge: str, *, ok: bool, load: float, now: float, error: str = "",
                 latency_s: float = 0.0) -> bool:
        """One probe result; returns True when the edge's state changed (view rebuilt)."""
        s = self.settings
        h = self.health[edge]
        changed = observe(h, ok=ok, load=load, now=now, shed_low=s.shed_low,
                          down_after=s.down_after, up_after=s.up_after, error=error,
                          latency_s=latency_s)
        self.metrics.observe_probe(edge, latency_s)
        if not ok:
            self.metrics.probe_fail.labels(edge).inc()
        else:
            self.metrics.load.labels(edge).set(load)
        if changed:
            self.metrics.set_state(edge, h.state)
            self.rebuild(now)
        return changed

    def healthy_fractions(self) -> dict[str, float]:
        cap: dict[str, float] = {}
        ok: dict[str, float] = {}
        for name, e in self.edges.items():
            cap[e.region] = cap.get(e.region, 0.0) + e.capacity_bytes_per_s
            st = self.health[name].state
            if st in (EdgeState.UP, EdgeState.SHEDDING, EdgeState.UNKNOWN):
                ok[e.region] = ok.get(e.region, 0.0) + e.capacity_bytes_per_s
        return {r: (ok.get(r, 0.0) / c if c > 0 else 0.0) for r, c in cap.items()}

    def tick(self, now: float) -> list[str]:
        """Periodic: auto-evacuation, ramps and loads into a fresh view, log flush."""
        changes = []
        if self.capacity_started:
            changes = self.shifter.observe_capacity(self.healthy_fractions(), now)
        self.rebuild(now)
        self.log.flush()
        return changes

    def rebuild(self, now: float, force: bool = False) -> None:
        loads = {n: round(h.load, 3) for n, h in self.health.items() if h.serving}
        if loads != self._loads or force:
            self._loads = loads
            self._gen += 1
        weight, keep = self.shifter.factors(now)
        self.view = View(self._gen, loads, weight, keep)
        for r in weight:
            self.metrics.region_weight.labels(r).set(weight[r])
            self.metrics.region_keep.labels(r).set(keep[r])

    # -- decisions -----------------------------------------------------------------------
    def decide(self, raw_path: str, client_ip: str, now: float,
               via: str = "peer") -> tuple[dict[str, Any], Decision]:
        try:
            path = normalize_path(raw_path)
        except BadPath as e:
            raise BadRequest(400, f"bad path: {e}") from None
        key = ContentKey.parse(path)
        acl = key.title_prefix
        loc = self.locator.locate(client_ip)
        d = self.ranker.rank(acl, loc, self.view, self.rnd)
        qpath = quote(path, safe=_SAFE)
        tq = self.tokens.query(acl, now, client_ip)
        suffix = f"{qpath}?{tq}" if tq else qpath
        targets = [{"url": p.edge.url + suffix, "kind": "edge", "edge": p.edge.name,
                    "site": p.site.name, "region": p.site.region,
                    "distance_km": round(p.distance_km, 1)} for p in d.picks]
        cf = self.cloudfront.url(qpath, now) if self.cloudfront is not None else ""
        if cf:
            targets.append({"url": cf, "kind": "cloudfront", "edge": "", "site": "",
                            "region": "", "distance_km": 0.0})
        site = d.picks[0].site.name if d.picks else ("cloudfront" if cf else "none")
        reason = {
            "choice": d.choice, "site": site, "region": d.region,
            "distance_km": targets[0]["distance_km"] if d.picks else None,
            "fallback": not d.picks, "spilled": d.spilled,
            "client": {"ip": client_ip, "via": via, "geo": loc.source, "country": loc.country,
                       "lat": loc.lat, "lon": loc.lon},
        }
        doc = {"path": path, "targets": targets, "ttl": self.settings.response_ttl,
               "reason": reason, "urls": [t["url"] for t in targets]}
        self.metrics.decision(site, d.choice)
        if not d.picks:
            self.metrics.fallbacks.inc()
        log = self.log
        if log.enabled and (log.sample >= 1.0 or self.rnd() < log.sample):
            log.add((now, client_ip, loc.source, path, d.choice, d.region, site,
                     [p.edge.name for p in d.picks], bool(cf)))
        return doc, d

    def decide_json(self, raw_path: str, client_ip: str, now: float, via: str = "peer") -> bytes:
        doc, _ = self.decide(raw_path, client_ip, now, via)
        return json.dumps(doc, separators=(",", ":")).encode()

    def decide_for_location(self, key: str, loc: Location) -> Decision:
        """DNS mode: same ranking, keyed by the queried name instead of a title."""
        d = self.ranker.rank(key, loc, self.view, self.rnd)
        self.metrics.decision(d.site or "none", d.choice)
        if not d.picks:
            self.metrics.fallbacks.inc()
        return d

    # -- introspection -------------------------------------------------------------------
    def regions_doc(self, now: float) -> dict[str, dict[str, Any]]:
        """Region traffic state; weight/keep are the values decisions use right now (the
        view, refreshed every tick), not the ramp's value at this instant."""
        doc = self.shifter.describe(now)
        for r, d in doc.items():
            d["weight"] = round(self.view.weight.get(r, 0.0), 3)
            d["keep"] = round(self.view.keep.get(r, 0.0), 4)
        return doc

    def fleet_doc(self, now: float) -> dict[str, Any]:
        edges = []
        for name, e in self.edges.items():
            h = self.health[name]
            edges.append({
                "name": name, "url": e.url, "site": e.site, "region": e.region,
                "state": h.state.value, "load": round(h.load, 4) if h.load < 1e9 else "draining",
                "last_probe": h.last_probe or None, "last_ok": h.last_ok or None,
                "last_error": h.last_error, "probe_latency_ms": round(h.latency_s * 1000, 2),
                "consecutive_failures": h.fails, "consecutive_successes": h.oks,
            })
        return {"time": now, "regions": self.regions_doc(now), "edges": edges,
                "view_generation": self.view.gen,
                "cloudfront": self.fleet.cloudfront.domain if self.fleet.cloudfront else None}

    def health_doc(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for h in self.health.values():
            states[h.state.value] = states.get(h.state.value, 0) + 1
        serving = sum(1 for h in self.health.values() if h.serving)
        return {"status": "ok" if serving else "degraded", "edges": len(self.edges),
                "serving_edges": serving, "states": states}
