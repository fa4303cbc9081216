"""The steering service's state and decisions, shared by the HTTP and DNS front ends.

Holds the health table (fed by probes), the traffic shifter (fed by the admin API and by
capacity), the current ``View`` snapshot the ranking reads, the signers and the memos. Time
is always passed in; the only I/O is the mmdb file and the decision log file.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
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
_MEMO_MAX = 100_000
REORDER_S = 5.0  # at most this often, load-band changes re-sort the sites per location
NOTHING_SERVES = "no edge is up and no CloudFront fallback is configured"
_CF_REST = ',"kind":"cloudfront","edge":"","site":"","region":"","distance_km":0.0}'


@dataclass(frozen=True, slots=True)
class _PathInfo:
    path: str  # normalised (decoded) request path
    acl: str  # what the token covers and the rendezvous key: the title folder
    qpath: str  # path as it goes into URLs (percent-encoded, JSON-safe)
    path_json: str


class BadRequest(ValueError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Unavailable(BadRequest):
    """Nothing can serve: no edge is up and there is no CloudFront fallback (503)."""

    def __init__(self, reason: str = NOTHING_SERVES) -> None:
        super().__init__(503, reason)


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
                 rnd: Callable[[], float] | None = None) -> None:
        self.fleet = fleet
        self.settings = s = settings
        self.edges = {e.name: e for e in fleet.edges}
        self.metrics = SteerMetrics({e.name: e.region for e in fleet.edges})
        self.locator = GeoLocator(s.geoip_db, default_location(fleet, s.default_region))
        self.ranker = Ranker(fleet, RankingConfig(
            s.coverage_km, s.distance_tie_km, s.edges_per_site, s.max_sites, s.shed_low,
            s.shed_high, cloudfront=fleet.cloudfront is not None))
        self.health: dict[str, EdgeHealth] = {n: EdgeHealth() for n in self.edges}
        try:
            self.shifter = TrafficShifter([r.name for r in fleet.regions], s.ramp_seconds,
                                          s.evacuate_below, s.restore_above, s.weights)
        except KeyError as e:
            raise ConfigError(f"steering.weights: {e.args[0]}") from None
        self.tokens = EdgeTokens(fleet.signing)
        self.cloudfront = (CloudFrontUrls(fleet.cloudfront, s.cloudfront_bucket)
                           if fleet.cloudfront else None)
        self.log = DecisionLog(s.decision_log, s.decision_log_sample)
        self.rnd = rnd or random.Random().random
        self._paths: dict[str, _PathInfo] = {}
        self._dists: dict[float, str] = {}
        self._cf_json: dict[str, str] = {}
        self._locs: dict[tuple, str] = {}
        self._ttl = str(int(s.response_ttl))
        # per edge: (JSON-escaped base URL, the rest of its target object up to distance_km)
        self._frags = {
            e.name: (json.dumps(e.url)[1:-1],
                     f',"kind":"edge","edge":{json.dumps(e.name)},"site":{json.dumps(e.site)},'
                     f'"region":{json.dumps(e.region)},"distance_km":')
            for e in fleet.edges}
        self._names = {n: json.dumps(n) for r in fleet.regions
                       for n in (r.name, *(s.name for s in r.sites))} | {"": '""'}
        self._names |= {e.name: json.dumps(e.name) for e in fleet.edges}
        self._gen = 0
        self._bands: dict[str, int] = {}
        self._serving: frozenset[str] = frozenset()
        self._reordered_at = 0.0
        self._order_gen = 0
        self._factors: tuple[dict[str, float], dict[str, float]] = ({}, {})
        self.view = View(0, {}, {}, {}, {}, 0)
        self.capacity_started = False  # auto-evacuation waits for the first probe round
        self.state_error = self._load_state()
        self.rebuild(0.0, force=True)

    def _load_state(self) -> str:
        """Last good admin state from disk; a bad file is reported, never half-applied."""
        path = self.settings.state_file
        if not path or not os.path.exists(path):
            return ""
        try:
            with open(path) as f:
                self.shifter.load_snapshot(json.load(f), time.time())
        except (OSError, ValueError, KeyError) as e:
            return f"{path}: {e}"
        return ""

    def save_state(self) -> None:
        """Write the admin state atomically (temp file + rename), if a state_file is set."""
        path = self.settings.state_file
        if not path:
            return
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.shifter.snapshot(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    # -- state ---------------------------------------------------------------------------
    def adopt(self, old: Steering, now: float) -> None:
        """Fleet reload: keep what the old instance learned about edges (same name and URL)
        and regions (same name), so a reload neither forgets a down edge nor ends a ramp."""
        for name, h in old.health.items():
            e = self.edges.get(name)
            if e is not None and e.url == old.edges[name].url:
                self.health[name] = h
                self.metrics.set_state(name, h.state)
        for r, t in old.shifter.regions.items():
            if r in self.shifter.regions:
                self.shifter.regions[r] = t
        self.capacity_started = old.capacity_started
        self.rebuild(now, force=True)

    def close(self) -> None:
        self.log.close()
        if self.cloudfront is not None:
            self.cloudfront.close()
        self.locator.close()

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
            self.metrics.set_load(edge, load)
        if changed:
            self.metrics.set_state(edge, h.state)
            self.rebuild(now)
        return changed

    def healthy_fractions(self) -> dict[str, float]:
        """Serving capacity / probed capacity per region. An edge with no probe result yet
        (``unknown``) counts on neither side, and a region with none probed is left out:
        not knowing is no reason to evacuate."""
        cap: dict[str, float] = {}
        ok: dict[str, float] = {}
        for name, e in self.edges.items():
            h = self.health[name]
            if h.state is EdgeState.UNKNOWN:
                continue
            c = e.capacity_bytes_per_s or 1.0  # capacity 0 in the file: count the edge
            cap[e.region] = cap.get(e.region, 0.0) + c
            if h.serving:
                ok[e.region] = ok.get(e.region, 0.0) + c
        return {r: (ok.get(r, 0.0) / c if c > 0 else 0.0) for r, c in cap.items()}

    def tick(self, now: float) -> list[str]:
        """Periodic: auto-evacuation, ramps and loads into a fresh view, log flush."""
        changes = []
        if self.capacity_started:
            changes = self.shifter.observe_capacity(self.healthy_fractions(), now)
        self.rebuild(now)
        self.log.flush()
        if self.cloudfront is not None:
            self.cloudfront.presign(now)  # hands re-signing to a thread, installs results
        return changes

    def rebuild(self, now: float, force: bool = False) -> None:
        """New view: current loads and region factors. ``gen`` bumps when the serving set
        changes, ``order_gen`` also when some edge changed load band (0.05 wide), at most
        every REORDER_S: the memos keyed on them are rebuilt lazily."""
        loads = {n: round(h.load, 3) for n, h in self.health.items() if h.serving}
        serving = frozenset(loads)
        bands = {n: int(x * 20) if x < 1e9 else -1 for n, x in loads.items()}
        if serving != self._serving or force:
            self._serving = serving
            self._gen += 1
            self._order_gen += 1
            self._bands = bands
            self._reordered_at = now
        elif bands != self._bands and now - self._reordered_at >= REORDER_S:
            # load only breaks distance ties: re-sorting every location's sites at most
            # every few seconds is enough (shedding always reads the live loads)
            self._order_gen += 1
            self._bands = bands
            self._reordered_at = now
        weight, keep = self.shifter.factors(now)
        self.view = View.build(self._gen, self._order_gen, loads, self.fleet, weight, keep)
        if (weight, keep) != self._factors:
            self._factors = (weight, keep)
            for r in weight:
                self.metrics.region_weight.labels(r).set(weight[r])
                self.metrics.region_keep.labels(r).set(keep[r])

    # -- decisions -----------------------------------------------------------------------
    def _path_info(self, raw_path: str) -> _PathInfo:
        pi = self._paths.get(raw_path)
        if pi is None:
            try:
                path = normalize_path(raw_path)
            except BadPath as e:
                raise BadRequest(400, f"bad path: {e}") from None
            pi = _PathInfo(path, ContentKey.parse(path).title_prefix, quote(path, safe=_SAFE),
                           json.dumps(path))
            if len(self._paths) >= _MEMO_MAX:
                self._paths.clear()
            self._paths[raw_path] = pi
        return pi

    def _decide(self, raw_path: str, client_ip: str, now: float
                ) -> tuple[_PathInfo, Location, Decision, str, str]:
        """The decision and what every output form needs: (path, location, decision,
        signed suffix for edge URLs, signed CloudFront URL or "")."""
        pi = self._path_info(raw_path)
        loc = self.locator.locate(client_ip)
        d = self.ranker.rank(pi.acl, loc, self.view, self.rnd)
        tq = self.tokens.query(pi.acl, now, client_ip)
        suffix = f"{pi.qpath}?{tq}" if tq else pi.qpath
        cf = self.cloudfront.url(pi.qpath, now) if self.cloudfront is not None else ""
        site = d.picks[0].site.name if d.picks else ("cloudfront" if cf else "none")
        self.metrics.decision(site, d.choice)
        if not d.picks:
            self.metrics.fallbacks.inc()
        log = self.log
        if log.enabled and (log.sample >= 1.0 or self.rnd() < log.sample):
            names = self._names
            log.add(f'{{"time":{now:.3f},"client":"{client_ip}","geo":"{loc.source}",'
                    f'"path":{pi.path_json},"reason":"{d.choice}","region":{names[d.region]},'
                    f'"site":{names.get(site) or json.dumps(site)},"edges":['
                    f'{",".join(names[p.edge.name] for p in d.picks)}],'
                    f'"cloudfront":{"true" if cf else "false"}}}')
        return pi, loc, d, suffix, cf

    def decide_json(self, raw_path: str, client_ip: str, now: float, via: str = "peer") -> bytes:
        """The ``contracts.steer.SteerResponse`` JSON, assembled from pre-escaped pieces
        (json.dumps of the whole document cost more than the decision itself)."""
        pi, loc, d, suffix, cf = self._decide(raw_path, client_ip, now)
        if not d.picks and not cf:
            raise Unavailable()
        frags, dists = self._frags, self._dists
        targets = []
        urls = []
        for p in d.picks:
            url_pre, rest = frags[p.edge.name]
            url = '"' + url_pre + suffix + '"'
            urls.append(url)
            dist = dists.get(p.distance_km)
            if dist is None:
                dist = dists[p.distance_km] = f"{p.distance_km:.1f}"
                if len(dists) > _MEMO_MAX:
                    dists.clear()
            targets.append('{"url":' + url + rest + dist + "}")
        if cf:
            url = self._cf_json.get(cf)
            if url is None:
                if len(self._cf_json) > _MEMO_MAX:
                    self._cf_json.clear()
                url = self._cf_json[cf] = json.dumps(cf)
            urls.append(url)
            targets.append('{"url":' + url + _CF_REST)
        if d.picks:
            first = d.picks[0]
            site = self._names[first.site.name]
            dist = dists[first.distance_km]
        else:
            site, dist = ('"cloudfront"' if cf else '"none"'), "null"
        lk = (loc.lat, loc.lon, loc.source, loc.country)
        where = self._locs.get(lk)
        if where is None:
            if len(self._locs) > _MEMO_MAX:
                self._locs.clear()
            where = self._locs[lk] = (
                f'"geo":"{loc.source}","country":{json.dumps(loc.country)},'
                f'"lat":{loc.lat!r},"lon":{loc.lon!r}}}}}')
        return ('{"path":' + pi.path_json + ',"targets":[' + ",".join(targets) + '],"ttl":'
                + self._ttl + ',"reason":{"choice":"' + d.choice + '","site":' + site
                + ',"region":' + self._names[d.region] + ',"distance_km":' + dist
                + (',"fallback":false' if d.picks else ',"fallback":true')
                + ',"spilled":' + (json.dumps(d.spilled) if d.spilled else "[]")
                + ',"client":{"ip":"' + client_ip + '","via":"' + via + '",' + where
                + ',"urls":[' + ",".join(urls) + "]}").encode()

    def decide(self, raw_path: str, client_ip: str, now: float,
               via: str = "peer") -> dict[str, Any]:
        """The same answer as a dict (tests, tools); the HTTP path uses ``decide_json``."""
        return json.loads(self.decide_json(raw_path, client_ip, now, via))

    def first_url(self, raw_path: str, client_ip: str, now: float) -> str:
        """Redirect mode: only the best URL ("" when nothing can serve)."""
        _, _, d, suffix, cf = self._decide(raw_path, client_ip, now)
        return d.picks[0].edge.url + suffix if d.picks else cf

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
            states[h.state] = states.get(h.state, 0) + 1
        serving = len(self.view.edge_load)
        return {"status": "ok" if serving else "degraded", "edges": len(self.edges),
                "serving_edges": serving, "states": {s.value: n for s, n in states.items()}}
