"""Steering test fixtures: a City mmdb built with mmdb-writer, an RSA key pair for CloudFront,
aiohttp stand-in edges whose /healthz tests stop, restart and load, and fleet builders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from contracts.fleet import Fleet, parse_fleet
from tests.conftest import free_port

# Where the test mmdb puts addresses (lat, lon, country)
LONDON = (51.51, -0.13)
NEW_YORK = (40.71, -74.01)
BRUSSELS = (50.85, 4.35)
FRANKFURT = (50.11, 8.68)

CITY_NETS: list[tuple[str, tuple[float, float], str]] = [
    ("81.2.69.0/24", LONDON, "GB"),
    ("2a02:db8:1::/48", LONDON, "GB"),
    ("203.0.113.0/24", NEW_YORK, "US"),
    ("2001:db8:2::/48", NEW_YORK, "US"),
    ("198.51.100.0/24", BRUSSELS, "BE"),
    ("100.64.0.0/16", FRANKFURT, "DE"),
]
COUNTRY_ONLY_NETS = [("192.0.2.0/25", "FR")]


@pytest.fixture(scope="session")
def mmdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City",
                   languages=["en"], description="edgecdn steering tests")
    for net, (lat, lon), cc in CITY_NETS:
        w.insert_network(IPSet([net]), {
            "country": {"iso_code": cc},
            "location": {"latitude": float(lat), "longitude": float(lon)},
        })
    for net, cc in COUNTRY_ONLY_NETS:
        w.insert_network(IPSet([net]), {"country": {"iso_code": cc}})
    p = tmp_path_factory.mktemp("geo") / "test-city.mmdb"
    w.to_db_file(str(p))
    return p


@pytest.fixture(scope="session")
def cf_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, rsa.RSAPublicKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p = tmp_path_factory.mktemp("cf") / "cf.pem"
    p.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()))
    return p, key.public_key()


@dataclass
class StandInEdge:
    """An aiohttp server exposing /healthz like a real edge; stop() makes it vanish."""

    name: str
    host: str = "127.0.0.1"
    port: int = 0
    egress_bps: float = 0.0
    capacity_bps: float = 1e9
    status: str = "ok"
    probes: int = 0
    hang: asyncio.Event | None = None  # set: /healthz never answers (a hung process)
    _runner: web.AppRunner | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _healthz(self, request: web.Request) -> web.Response:
        self.probes += 1
        if self.hang is not None:
            await asyncio.Event().wait()  # never answers; cancelled at shutdown
        return web.json_response({
            "status": self.status, "active_connections": 0, "egress_bps": self.egress_bps,
            "capacity_bps": self.capacity_bps, "hit_ratio": 0.5,
        })

    async def start(self) -> None:
        if not self.port:
            self.port = free_port(self.host)
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


EDGE_LAYOUT: list[tuple[str, str, tuple[float, float], list[str]]] = [
    ("eu-west", "lon", LONDON, ["lon-1", "lon-2"]),
    ("eu-west", "dub", (53.35, -6.26), ["dub-1"]),
    ("eu-central", "fra", FRANKFURT, ["fra-1", "fra-2"]),
    ("us-east", "nyc", NEW_YORK, ["nyc-1", "nyc-2"]),
]


@pytest.fixture
async def edges() -> AsyncIterator[dict[str, StandInEdge]]:
    # distinct loopback hosts, so DNS answers show which edges were chosen; nyc-2 on IPv6
    names = [n for *_, ns in EDGE_LAYOUT for n in ns]
    out = {n: StandInEdge(n, "::1" if n == "nyc-2" else f"127.0.1.{i + 1}")
           for i, n in enumerate(names)}
    await asyncio.gather(*(e.start() for e in out.values()))
    yield out
    await asyncio.gather(*(e.stop() for e in out.values()))


def fleet_doc(edge_urls: dict[str, str], steering: dict[str, Any] | None = None,
              cf_key_path: Path | None = None) -> dict[str, Any]:
    regions: dict[str, list[dict[str, Any]]] = {}
    for region, site, (lat, lon), names in EDGE_LAYOUT:
        regions.setdefault(region, []).append({
            "name": site, "lat": lat, "lon": lon,
            "edges": [{"name": n, "url": edge_urls[n], "capacity_mbps": 8000} for n in names],
        })
    doc: dict[str, Any] = {
        "regions": [{"name": r, "sites": s} for r, s in regions.items()],
        "signing": {"active_kid": "k2", "ttl": 300,
                    "secrets": {"k1": "old-secret", "k2": "current-secret"}},
        "steering": {"default_region": "eu-west", "trusted_proxies": ["127.0.0.2/32"],
                     "trusted_callers": ["127.0.0.1/32", "::1/128"], "admin_token": "tok",
                     **(steering or {})},
    }
    if cf_key_path is not None:
        doc["cloudfront"] = {"domain": "d111111abcdef8.cloudfront.net",
                             "key_pair_id": "KTESTPAIR", "private_key": str(cf_key_path),
                             "url_ttl": 3600}
    return doc


def make_fleet(edge_urls: dict[str, str] | None = None, steering: dict[str, Any] | None = None,
               cf_key_path: Path | None = None) -> Fleet:
    urls = edge_urls or {n: f"http://127.0.0.1:{9000 + i}"
                         for i, n in enumerate(n for *_, ns in EDGE_LAYOUT for n in ns)}
    return parse_fleet(fleet_doc(urls, steering, cf_key_path))


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f'"{k}" = {toml_value(x)}' for k, x in v.items()) + "}"
    raise TypeError(v)


def write_fleet_toml(path: Path, doc: dict[str, Any]) -> Path:
    """A fleet dict as a TOML file (inline tables: enough for tests)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in doc.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


DNS_NAME = "video.edgecdn.test."


@pytest.fixture
async def dns_server(edges: dict[str, StandInEdge], mmdb_path: Path,
                     cf_key: Any) -> AsyncIterator[Any]:
    """A steering server answering DNS for DNS_NAME over the stand-in fleet."""
    from steering.server import SteeringServer
    from steering.settings import SteeringSettings

    fleet = make_fleet({n: e.url for n, e in edges.items()},
                       {"geoip_db": str(mmdb_path), "dns_name": DNS_NAME}, cf_key[0])
    srv = SteeringServer(fleet, SteeringSettings.from_dict(fleet.steering), "127.0.0.1:0",
                         "127.0.0.1:0")
    await srv.start()
    yield srv
    await srv.stop()
