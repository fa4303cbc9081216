"""Generate a loopback fleet: fleet file, per-edge configs, a GeoIP mmdb, a CloudFront key.

Used by the demo (and by end-to-end tests): two regions, two sites each, N edges per site,
every port free at generation time, client prefixes placed near the sites in a City mmdb
built with mmdb-writer, and an RSA key pair standing in for CloudFront's. The same fleet file
drives steering, the fill planner, the edges' identities and the player harness ([bench]).
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

# region -> sites (name, lat, lon)
REGIONS: tuple[tuple[str, tuple[tuple[str, float, float], ...]], ...] = (
    ("eu-west", (("lon", 51.51, -0.13), ("ams", 52.37, 4.90))),
    ("us-east", (("nyc", 40.71, -74.01), ("iad", 38.95, -77.45))),
)
# client prefix, label, lat, lon, country, weight
CLIENTS: tuple[tuple[str, str, float, float, str, float], ...] = (
    ("10.1.0.0/16", "london", 51.50, -0.12, "GB", 3.0),
    ("10.2.0.0/16", "amsterdam", 52.36, 4.89, "NL", 2.0),
    ("10.3.0.0/16", "new-york", 40.73, -73.99, "US", 3.0),
    ("10.4.0.0/16", "washington", 38.90, -77.03, "US", 2.0),
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(slots=True)
class EdgeSpec:
    name: str
    site: str
    region: str
    port: int
    config: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(slots=True)
class FleetLayout:
    root: Path
    fleet: Path
    mmdb: Path
    cloudfront_key: Path
    origin: str  # s3://bucket/prefix
    s3_endpoint: str  # the real S3 endpoint (players verify against it)
    origin_endpoint: str  # what edges use: the fault proxy in front of S3
    steering_port: int
    fault_proxy_port: int
    admin_token: str
    edges: list[EdgeSpec] = field(default_factory=list)
    cloudfront: EdgeSpec | None = None  # an edge without tokens standing in for CloudFront

    @property
    def steering_url(self) -> str:
        return f"http://127.0.0.1:{self.steering_port}"

    @property
    def fault_proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.fault_proxy_port}"


def write_mmdb(path: Path) -> Path:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City",
                   languages=["en"], description="edgecdn demo clients")
    for prefix, label, lat, lon, cc, _ in CLIENTS:
        w.insert_network(IPSet([prefix]), {
            "city": {"names": {"en": label}},
            "country": {"iso_code": cc},
            "location": {"latitude": float(lat), "longitude": float(lon)},
        })
    w.to_db_file(str(path))
    return path


def write_cloudfront_key(path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def _edge_config(e: EdgeSpec, layout: FleetLayout, secret: str | None, memory: str,
                 disk: str, fill: bool = False) -> str:
    bucket_prefix = layout.origin
    lines = [
        "[edge]", f'name = "{e.name}"', f'site = "{e.site}"', f'region = "{e.region}"',
        f'listen = "127.0.0.1:{e.port}"', f'admin_token = "{layout.admin_token}"',
        "workers = 1", "capacity_mbps = 2000", "",
        "[origin]", f'url = "{bucket_prefix}"', f'endpoint_url = "{layout.origin_endpoint}"',
        'region = "us-east-1"', "connect_timeout = 1.0", "first_byte_timeout = 3.0",
        "read_timeout = 3.0", "",
        "[cache]", f'dir = "{layout.root / "cache" / e.name}"', f'memory = "{memory}"',
        f'disk = "{disk}"', 'policy = "popularity"', "fsync = false", "",
        "[log]", 'access = ""', "",
    ]
    if secret is not None:
        lines += ["[tokens]", "required = true", "[tokens.secrets]", f'k1 = "{secret}"', ""]
    if fill:  # fill from the manifests `edgecdn fill plan` writes, at once, peers first
        bucket = layout.origin[5:].split("/", 1)[0]
        lines += ["[fill]", "enabled = true", f'manifests = "s3://{bucket}/manifests/"',
                  f'endpoint_url = "{layout.s3_endpoint}"', 'window = "always"',
                  'rate = "40MiB"', "refresh = 2", "retry = 2", ""]
    return "\n".join(lines)


def generate(root: Path, s3_endpoint: str, bucket: str, prefix: str = "packaged",
             edges_per_site: int = 2, memory: str = "64MiB", disk: str = "512MiB",
             site_disk: str = "256MiB", cloudfront: bool = True,
             fill: bool = False) -> FleetLayout:
    """Write everything under root and return where it is."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "edges").mkdir(exist_ok=True)
    secret = secrets.token_hex(16)
    layout = FleetLayout(
        root=root, fleet=root / "fleet.toml", mmdb=write_mmdb(root / "clients-city.mmdb"),
        cloudfront_key=write_cloudfront_key(root / "cloudfront-private.pem"),
        origin=f"s3://{bucket}/{prefix}", s3_endpoint=s3_endpoint, origin_endpoint="",
        steering_port=free_port(), fault_proxy_port=free_port(),
        admin_token=secrets.token_hex(8),
    )
    layout.origin_endpoint = layout.fault_proxy_url
    for region, sites in REGIONS:
        for site, _, _ in sites:
            for i in range(1, edges_per_site + 1):
                name = f"{site}-{i}"
                layout.edges.append(
                    EdgeSpec(name, site, region, free_port(), root / "edges" / f"{name}.toml"))
    for e in layout.edges:
        e.config.write_text(_edge_config(e, layout, secret, memory, disk, fill))
    if cloudfront:
        cf = EdgeSpec("cloudfront", "cloudfront", "global", free_port(),
                      root / "edges" / "cloudfront.toml")
        cf.config.write_text(_edge_config(cf, layout, None, memory, disk))
        layout.cloudfront = cf

    out = [
        "# generated by bench.fleetgen for the embedded demo", "",
        "[steering]", f'listen = "127.0.0.1:{layout.steering_port}"',
        f'geoip_db = "{layout.mmdb}"', 'default_region = "eu-west"',
        'trusted_callers = ["127.0.0.1/32", "::1/128"]', f'admin_token = "{layout.admin_token}"',
        "response_ttl = 30", "probe_interval = 0.5", "probe_timeout = 0.4", "down_after = 2",
        "up_after = 2", "ramp_seconds = 4", "evacuate_below = 0.25", "restore_above = 0.5", "",
        "[signing]", 'active_kid = "k1"', "ttl = 900", "[signing.secrets]", f'k1 = "{secret}"', "",
    ]
    if layout.cloudfront:
        out += ["[cloudfront]", f'domain = "{layout.cloudfront.url}"',
                'key_pair_id = "KDEMO0000000"', f'private_key = "{layout.cloudfront_key}"',
                "url_ttl = 3600", ""]
    out += [
        "[origin]", f'url = "{layout.origin}"', f'endpoint_url = "{s3_endpoint}"',
        'logs_prefix = "logs/"', 'manifests_prefix = "manifests/"', "",
        "[bench]", f'steering_url = "{layout.steering_url}"',
        f'fault_proxy = "{layout.fault_proxy_url}"', f's3_endpoint = "{s3_endpoint}"',
        "zipf_s = 1.0", "abandon_p = 0.35", "max_buffer = 12.0", "request_timeout = 3.0", "",
    ]
    for prefix_, label, _, _, _, weight in CLIENTS:
        out += ["[[bench.clients]]", f'prefix = "{prefix_}"', f'label = "{label}"',
                f"weight = {weight}", ""]
    by_site: dict[str, list[EdgeSpec]] = {}
    for e in layout.edges:
        by_site.setdefault(e.site, []).append(e)
    for region, sites in REGIONS:
        out += ["[[regions]]", f'name = "{region}"']
        for site, lat, lon in sites:
            out += ["  [[regions.sites]]", f'  name = "{site}"', f"  lat = {lat}",
                    f"  lon = {lon}", f'  disk = "{site_disk}"']
            for e in by_site[site]:
                out += ["    [[regions.sites.edges]]", f'    name = "{e.name}"',
                        f'    url = "{e.url}"', "    capacity_mbps = 2000"]
        out.append("")
    layout.fleet.write_text("\n".join(out) + "\n")
    return layout
