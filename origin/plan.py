"""Fill planning: decayed popularity + origin listing + fleet -> one manifest per site/edge.

For each site the candidates are ranked by the site's own decayed popularity, then (to fill
what the site's own logs do not cover, e.g. a new site) by its region's, then the fleet's.
Walking that order, each object goes to the site edges that steering sends its title to:
``contracts.placement.edges_for(path, site edge names)[:replicas]`` (rendezvous hashing of
the title's folder) — the very call steering makes, so an edge is filled with exactly what it will be asked for. An object is taken when
every one of its edges still has budget (``Site.disk_bytes`` per edge); otherwise it is
skipped and smaller, less popular objects may still fit (greedy by rank, which for whole
segment reads is greedy by byte-hit value per byte).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from contracts.fleet import Fleet, Site
from contracts.keys import BadPath, normalize_path
from contracts.manifest import Manifest, ManifestEntry
from contracts.placement import edges_for
from origin.popularity import Popularity

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | float) -> float:
    """``"6h"``, ``"90m"``, ``"1d"``, ``3600`` -> seconds (> 0)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        secs = float(value)
    else:
        m = _DUR.match(str(value))
        if not m:
            raise ValueError(f"not a duration: {value!r} (try 6h, 90m, 1d)")
        secs = float(m.group(1)) * _UNIT[m.group(2)]
    if secs <= 0:
        raise ValueError(f"duration must be positive: {value!r}")
    return secs


@dataclass(frozen=True, slots=True)
class OriginObject:
    size: int
    etag: str | None


def origin_objects(listing: Iterable[dict], prefix: str) -> dict[str, OriginObject]:
    """S3 listing rows under ``<prefix>titles/`` -> request path -> size/ETag."""
    out: dict[str, OriginObject] = {}
    for o in listing:
        key = str(o["Key"])
        if not key.startswith(prefix):
            continue
        path = "/" + key[len(prefix):]
        try:
            if normalize_path(path) != path:
                continue
        except BadPath:
            continue
        etag = str(o.get("ETag", "")).strip('"') or None
        out[path] = OriginObject(int(o["Size"]), etag)
    return out


def candidates(pop: Popularity, site: Site, now: float) -> list[tuple[str, float]]:
    """(path, decayed hits) best first: the site's scope, then its region's, then the fleet's."""
    seen: set[str] = set()
    out: list[tuple[str, float]] = []
    scopes = [pop.sites.get(site.name), pop.regions.get(site.region), pop.fleet]
    for table in scopes:
        if table is None:
            continue
        for item in table.top(now):
            if item.key not in seen:
                seen.add(item.key)
                out.append((item.key, item.hits))
    return out


def plan_site(site: Site, ranked: list[tuple[str, float]], objects: dict[str, OriginObject],
              now: float, replicas: int = 1, budget: int | None = None,
              half_life: float = 0.0) -> Manifest:
    """The site's manifest: ranked entries within each edge's budget."""
    names = [e.name for e in site.edges]
    budget = site.disk_bytes if budget is None else budget
    used = dict.fromkeys(names, 0)
    entries: list[ManifestEntry] = []
    if not names:
        return Manifest(site.name, budget, [], now, site.region, half_life=half_life)
    k = max(1, min(replicas, len(names)))
    for path, score in ranked:
        obj = objects.get(path)
        if obj is None:  # requested but not at the origin (404s, deleted titles)
            continue
        edges = edges_for(path, names)[:k]
        if any(used[e] + obj.size > budget for e in edges):
            continue
        for e in edges:
            used[e] += obj.size
        entries.append(ManifestEntry(path, obj.size, len(entries) + 1, tuple(edges), obj.etag,
                                     score))
    m = Manifest(site.name, budget, entries, now, site.region, half_life=half_life)
    m.validate()
    return m


def plan_fleet(fleet: Fleet, pop: Popularity, objects: dict[str, OriginObject], now: float,
               replicas: int = 1, budget_fraction: float = 1.0) -> dict[str, Manifest]:
    """site name -> site manifest."""
    out = {}
    for site in fleet.sites:
        budget = int(site.disk_bytes * budget_fraction)
        out[site.name] = plan_site(site, candidates(pop, site, now), objects, now, replicas,
                                   budget, pop.half_life)
    return out


def edge_manifests(fleet: Fleet, site_manifest: Manifest) -> dict[str, Manifest]:
    """edge name -> that edge's share, with its site peers' URLs for peer-first fill."""
    site = fleet.site(site_manifest.site)
    urls = {e.name: e.url for e in site.edges}
    return {
        name: site_manifest.for_edge(name, {n: u for n, u in urls.items() if n != name})
        for name in urls
    }
