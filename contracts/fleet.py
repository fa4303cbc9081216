"""The fleet file: regions -> sites -> edges, CloudFront fallback, signing secrets, steering.

Steering, the fill planner, the load harness and the demo all read this one file.
Example: configs/fleet.example.toml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.config import ConfigError, load_toml
from contracts.sizes import parse_size


@dataclass(frozen=True, slots=True)
class Edge:
    name: str
    url: str  # base URL, no trailing slash
    site: str
    region: str
    capacity_bytes_per_s: float  # egress capacity (from capacity_mbps)


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    region: str
    lat: float
    lon: float
    disk_bytes: int  # fill budget per edge of this site
    edges: tuple[Edge, ...]


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    sites: tuple[Site, ...]


@dataclass(frozen=True, slots=True)
class CloudFront:
    domain: str
    key_pair_id: str
    private_key_path: str
    url_ttl: int = 3600


@dataclass(frozen=True, slots=True)
class Signing:
    active_kid: str
    secrets: dict[str, bytes]
    ttl: int = 300  # seconds a steering-issued edge URL stays valid
    bind_client_ip: bool = False


@dataclass(slots=True)
class Fleet:
    regions: tuple[Region, ...]
    cloudfront: CloudFront | None
    signing: Signing | None
    steering: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def sites(self) -> list[Site]:
        return [s for r in self.regions for s in r.sites]

    @property
    def edges(self) -> list[Edge]:
        return [e for s in self.sites for e in s.edges]

    def site(self, name: str) -> Site:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)

    def edge(self, name: str) -> Edge:
        for e in self.edges:
            if e.name == name:
                return e
        raise KeyError(name)


def _need(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise ConfigError(f"{where}: missing '{key}'")
    return d[key]


def parse_fleet(doc: dict[str, Any], source: str = "", base_dir: Path | None = None) -> Fleet:
    regions: list[Region] = []
    seen_edges: set[str] = set()
    seen_sites: set[str] = set()
    for ri, r in enumerate(doc.get("regions", [])):
        rname = str(_need(r, "name", f"regions[{ri}]"))
        sites = []
        for si, s in enumerate(r.get("sites", [])):
            where = f"region {rname} sites[{si}]"
            sname = str(_need(s, "name", where))
            if sname in seen_sites:
                raise ConfigError(f"duplicate site name {sname!r}")
            seen_sites.add(sname)
            edges = []
            for ei, e in enumerate(s.get("edges", [])):
                ename = str(_need(e, "name", f"site {sname} edges[{ei}]"))
                if ename in seen_edges:
                    raise ConfigError(f"duplicate edge name {ename!r}")
                seen_edges.add(ename)
                url = str(_need(e, "url", f"edge {ename}")).rstrip("/")
                if not url.startswith(("http://", "https://")):
                    raise ConfigError(f"edge {ename}: url must be http(s)://")
                cap = float(e.get("capacity_mbps", s.get("edge_capacity_mbps", 10_000)))
                edges.append(Edge(ename, url, sname, rname, cap * 1e6 / 8))
            try:
                lat, lon = float(_need(s, "lat", where)), float(_need(s, "lon", where))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: lat/lon must be numbers") from exc
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ConfigError(f"{where}: lat/lon out of range")
            disk = parse_size(s.get("disk", "10GiB"))
            sites.append(Site(sname, rname, lat, lon, disk, tuple(edges)))
        regions.append(Region(rname, tuple(sites)))
    if not regions:
        raise ConfigError("fleet has no regions")

    cf = None
    if "cloudfront" in doc:
        c = doc["cloudfront"]
        key = str(_need(c, "private_key", "cloudfront"))
        if base_dir and not Path(key).is_absolute():
            key = str(base_dir / key)
        cf = CloudFront(
            str(_need(c, "domain", "cloudfront")),
            str(_need(c, "key_pair_id", "cloudfront")),
            key,
            int(c.get("url_ttl", 3600)),
        )
    signing = None
    if "signing" in doc:
        g = doc["signing"]
        secrets = {str(k): str(v).encode() for k, v in dict(_need(g, "secrets", "signing")).items()}
        kid = str(_need(g, "active_kid", "signing"))
        if kid not in secrets:
            raise ConfigError(f"signing: active_kid {kid!r} has no secret")
        signing = Signing(kid, secrets, int(g.get("ttl", 300)), bool(g.get("bind_client_ip", False)))
    return Fleet(
        tuple(regions), cf, signing, dict(doc.get("steering", {})), dict(doc.get("origin", {})),
        source,
    )


def load_fleet(path: str | Path) -> Fleet:
    p = Path(path)
    return parse_fleet(load_toml(p), str(p), p.parent)
