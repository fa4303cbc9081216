"""Steering ranking (pure): client location + fleet view + region factors -> ranked edges.

How one decision is made:
1. Regions with a serving edge are ordered by the distance from the client to their nearest
   site. Regions within ``coverage_km`` of the nearest one *cover* the client.
2. The primary region is drawn among the covering regions in proportion to their weights;
   a drawn region keeps the client with probability ``keep`` (evacuation ramps keep to 0),
   otherwise the client spills and the draw repeats without it, then goes on to the
   next-nearest regions.
3. Sites: the primary region's first, then every other allowed region's, each ordered by
   distance (within ``distance_tie_km`` by load). Within a site, edges are taken in
   rendezvous order of the title (``contracts.rendezvous``, as the fill planner does), so a
   title lands on the same edges; an edge between the shedding watermarks is skipped with
   rising probability. Up to ``edges_per_site`` from each of ``max_sites`` (>= 2) sites.
4. Nowhere to go: when the evacuations and weights leave no region willing to take the
   client, or every edge is shed, the client goes to CloudFront (``fallback``, no edges) if
   the fleet has it; otherwise it is ``held`` on the best edges there are (its own region
   first, shedding ignored only if it would leave nothing), so an answer is never empty
   while an edge serves. No serving edge at all -> ``fallback`` (the shell appends
   CloudFront last in every case, and answers 503 when there is none).

Memos make the request path cheap: distances per client location (static), site order per
(location, view generation), rendezvous order per (title, site) (static).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from contracts.fleet import Edge, Fleet, Site
from contracts.rendezvous import rank as hrw_rank
from steering.geo import Location, distance_km
from steering.shedding import keeps

_MEMO_MAX = 100_000


@dataclass(frozen=True, slots=True)
class RankingConfig:
    coverage_km: float = 500.0
    distance_tie_km: float = 100.0
    edges_per_site: int = 2
    max_sites: int = 3
    shed_low: float = 0.80
    shed_high: float = 0.95
    cloudfront: bool = False  # a fallback exists: traffic with nowhere to go goes there


@dataclass(frozen=True, slots=True)
class View:
    """What the probes and the traffic shifter say right now; rebuilt by the shell."""

    gen: int  # bumps when the serving set changes (the serving-edge memo keys on it)
    edge_load: Mapping[str, float]  # serving edges only (up or shedding) -> current load
    weight: Mapping[str, float]  # region -> weight
    keep: Mapping[str, float]  # region -> keep (0 = evacuated)
    site_load: Mapping[str, float] = field(default_factory=dict)  # sites with a serving edge
    order_gen: int = -1  # bumps with gen or a site's load band (the site-order memo keys on it)

    @classmethod
    def all_up(cls, fleet: Fleet, gen: int = 0, weight: Mapping[str, float] | None = None,
               keep: Mapping[str, float] | None = None) -> View:
        regions = [r.name for r in fleet.regions]
        return cls.build(gen, gen, {e.name: 0.0 for e in fleet.edges}, fleet,
                         {r: 100.0 for r in regions} | dict(weight or {}),
                         {r: 1.0 for r in regions} | dict(keep or {}))

    @classmethod
    def build(cls, gen: int, order_gen: int, edge_load: Mapping[str, float], fleet: Fleet,
              weight: Mapping[str, float], keep: Mapping[str, float]) -> View:
        """A view with per-site mean loads derived from the edge loads."""
        site_load = {}
        for s in fleet.sites:
            xs = [edge_load[e.name] for e in s.edges if e.name in edge_load]
            if xs:
                site_load[s.name] = sum(xs) / len(xs)
        return cls(gen, edge_load, weight, keep, site_load, order_gen)


@dataclass(slots=True)
class Pick:
    edge: Edge
    site: Site
    distance_km: float


@dataclass(slots=True)
class Decision:
    picks: list[Pick]
    region: str  # primary region ("" on fallback)
    choice: str  # "nearest" | "weighted" | "spill" | "held" | "fallback"
    spilled: list[str] = field(default_factory=list)

    @property
    def site(self) -> str:
        return self.picks[0].site.name if self.picks else ""


@dataclass(slots=True)
class _Order:
    regions: list[tuple[str, float]]  # serving regions by nearest-site distance
    covering: list[str]
    sites: dict[str, list[tuple[Site, float]]]  # region -> its serving sites, ordered
    all_sites: list[tuple[Site, float]]  # every serving site, ordered
    seq: dict[str, list[tuple[Site, float]]] = field(default_factory=dict)  # per primary


class Ranker:
    def __init__(self, fleet: Fleet, cfg: RankingConfig) -> None:
        self.fleet = fleet
        self.cfg = cfg
        self.sites: list[Site] = [s for s in fleet.sites if s.edges]
        self._dist: dict[tuple[float, float], list[tuple[float, Site]]] = {}
        self._order: dict[tuple[float, float], _Order] = {}
        self._order_gen = -1
        self._serving_gen = -1
        self._hrw: dict[tuple[str, str], tuple[Edge, ...]] = {}
        self._serving: dict[tuple[str, str], tuple[Edge, ...]] = {}  # per view.gen

    # -- memos ---------------------------------------------------------------------------
    def distances(self, loc: Location) -> list[tuple[float, Site]]:
        k = loc.key
        d = self._dist.get(k)
        if d is None:
            d = sorted(((distance_km(loc.lat, loc.lon, s.lat, s.lon), s) for s in self.sites),
                       key=lambda x: x[0])
            if len(self._dist) >= _MEMO_MAX:
                self._dist.clear()
            self._dist[k] = d
        return d

    def edges_for(self, key: str, site: Site) -> tuple[Edge, ...]:
        """Site's edges in rendezvous order for key (over all edges: filtering the down ones
        afterwards gives the same order as hashing over the live ones)."""
        k = (key, site.name)
        r = self._hrw.get(k)
        if r is None:
            by_name = {e.name: e for e in site.edges}
            r = tuple(by_name[n] for n in hrw_rank(key, by_name))
            if len(self._hrw) >= _MEMO_MAX:
                self._hrw.clear()
            self._hrw[k] = r
        return r

    def order(self, loc: Location, view: View) -> _Order:
        og = view.order_gen if view.order_gen >= 0 else view.gen
        if og != self._order_gen:
            self._order.clear()
            self._order_gen = og
        if view.gen != self._serving_gen:
            self._serving.clear()
            self._serving_gen = view.gen
        o = self._order.get(loc.key)
        if o is None:
            o = self._build_order(loc, view)
            if len(self._order) >= _MEMO_MAX:
                self._order.clear()
            self._order[loc.key] = o
        return o

    def _build_order(self, loc: Location, view: View) -> _Order:
        tie = max(self.cfg.distance_tie_km, 1e-9)
        site_load = view.site_load
        if not site_load and view.edge_load:  # a hand-made View without site loads
            site_load = View.build(0, 0, view.edge_load, self.fleet, {}, {}).site_load
        scored = []
        for d, s in self.distances(loc):
            load = site_load.get(s.name)
            if load is not None:
                scored.append((int(d // tie), load, d, s))
        scored.sort(key=lambda x: (x[0], x[1], x[2]))
        all_sites = [(s, d) for _, _, d, s in scored]
        sites: dict[str, list[tuple[Site, float]]] = {}
        nearest: dict[str, float] = {}
        for s, d in all_sites:
            sites.setdefault(s.region, []).append((s, d))
            nearest[s.region] = min(d, nearest.get(s.region, d))
        regions = sorted(nearest.items(), key=lambda x: x[1])
        d0 = regions[0][1] if regions else 0.0
        covering = [r for r, d in regions if d <= d0 + self.cfg.coverage_km]
        return _Order(regions, covering, sites, all_sites)

    # -- the decision --------------------------------------------------------------------
    def rank(self, key: str, loc: Location, view: View, rnd: Callable[[], float]) -> Decision:
        o = self.order(loc, view)
        weight, keep = view.weight, view.keep
        spilled: list[str] = []
        pool = [r for r in o.covering if weight.get(r, 0.0) > 0 and keep.get(r, 0.0) > 0]
        weighted = len(pool) > 1
        evacuated = len(pool) < len(o.covering) and any(
            keep.get(r, 0.0) <= 0 for r in o.covering)
        primary = ""
        while pool:
            r = pool[0] if len(pool) == 1 else _weighted_pick(pool, weight, rnd())
            pool.remove(r)
            k = keep[r]
            if k >= 1.0 or rnd() < k:
                primary = r
                break
            spilled.append(r)
        if not primary:
            for r, _ in o.regions:
                if r in o.covering or weight.get(r, 0.0) <= 0:
                    continue
                k = keep.get(r, 0.0)
                if k <= 0:
                    continue
                if k >= 1.0 or rnd() < k:
                    primary = r
                    break
                spilled.append(r)
        if not primary:
            return self._nowhere(key, o, spilled, view, rnd)
        if spilled or evacuated:
            choice = "spill"
        elif weighted:
            choice = "weighted"
        else:
            choice = "nearest"
        picks = self._pick_edges(key, o, primary, spilled, view, rnd)
        if not picks:
            return self._nowhere(key, o, [*spilled, primary], view, rnd)
        if picks[0].site.region != primary:  # every edge of the primary region was shed
            return Decision(picks, picks[0].site.region, "spill", [*spilled, primary])
        return Decision(picks, primary, choice, spilled)

    def _nowhere(self, key: str, o: _Order, spilled: list[str], view: View,
                 rnd: Callable[[], float]) -> Decision:
        """No region took the client (evacuated, weight 0, or all shed): CloudFront when
        there is one, else hold it on the best edges there are, from the region it was
        pushed out of (the first drawn; the nearest when weights left none to draw)."""
        if self.cfg.cloudfront or not o.regions:
            return Decision([], "", "fallback", spilled)
        home = spilled[0] if spilled else o.regions[0][0]
        picks = (self._pick_edges(key, o, home, [], view, rnd, anywhere=True)
                 or self._pick_edges(key, o, home, [], view, rnd, anywhere=True, shed=False))
        return Decision(picks, picks[0].site.region, "held", spilled)

    def _pick_edges(self, key: str, o: _Order, primary: str, spilled: list[str], view: View,
                    rnd: Callable[[], float], anywhere: bool = False,
                    shed: bool = True) -> list[Pick]:
        """Up to edges_per_site edges from up to max_sites sites, the primary region's sites
        first. ``anywhere``: also regions that are evacuated or spilled; ``shed=False``:
        loaded edges too, least loaded first (the last resort of a held client)."""
        cfg = self.cfg
        per_site, max_sites = cfg.edges_per_site, max(2, cfg.max_sites)
        loads, keep = view.edge_load, view.keep
        low, high = cfg.shed_low, cfg.shed_high
        serving = self._serving
        seq = o.seq.get(primary)
        if seq is None:
            seq = o.seq[primary] = o.sites.get(primary, []) + [
                x for x in o.all_sites if x[0].region != primary]
        picks: list[Pick] = []
        used_sites = 0
        for site, dist in seq:
            r = site.region
            if r != primary and not anywhere and (r in spilled or keep.get(r, 0.0) <= 0):
                continue
            k = (key, site.name)
            edges = serving.get(k)
            if edges is None:  # the site's serving edges in rendezvous order, this view
                if len(serving) >= _MEMO_MAX:
                    serving.clear()
                edges = serving[k] = tuple(e for e in self.edges_for(key, site)
                                           if e.name in loads)
            if not shed:
                edges = tuple(sorted(edges, key=lambda e: loads[e.name]))
            taken = 0
            for e in edges:
                load = loads[e.name]
                if shed and load > low and not keeps(load, low, high, rnd()):
                    continue
                picks.append(Pick(e, site, dist))
                taken += 1
                if taken >= per_site:
                    break
            if taken:
                used_sites += 1
                if used_sites >= max_sites:
                    break
        return picks


def _weighted_pick(pool: list[str], weight: Mapping[str, float], draw: float) -> str:
    total = sum(weight[r] for r in pool)
    x = draw * total
    for r in pool:
        x -= weight[r]
        if x < 0:
            return r
    return pool[-1]
