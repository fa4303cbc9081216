"""Edge settings: the TOML file (configs/edge.example.toml) with flag overrides, validated once.

Every bad value raises contracts.config.ConfigError naming the key, so an operator sees
``cache.disk: not a size`` rather than a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.config import ConfigError, load_toml, merge, split_hostport
from contracts.sizes import parse_size
from edge.cores import usable_cores
from edge.sched import DEFAULT_SLICE_MS

POLICIES = ("lru", "popularity", "sieve", "s3fifo")


@dataclass(slots=True)
class NodeConfig:
    name: str = "edge"
    site: str = ""
    region: str = ""
    listen: tuple[str, int] = ("127.0.0.1", 8080)
    admin_listen: tuple[str, int] | None = None
    admin_token: str = ""
    workers: int = 1
    capacity_bps: float = 10_000e6 / 8
    sendfile: bool = True
    worker_slice_ms: float = DEFAULT_SLICE_MS  # --workers N: scheduler slice (edge.sched)


@dataclass(slots=True)
class OriginConfig:
    url: str = ""
    kind: str = "http"  # "http" | "s3"
    bucket: str = ""
    prefix: str = ""  # no leading/trailing slash ("" = bucket root / URL root)
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    connect_timeout: float = 2.0
    first_byte_timeout: float = 5.0
    read_timeout: float = 5.0
    default_ttl: float = 300.0
    stale_if_error: float = 86400.0
    max_connections: int = 256
    hit_for_pass: float = 60.0
    negative_ttl: float = 0.0  # seconds a 404/410 without freshness of its own is reused
    ca_file: str | None = None  # PEM bundle trusted for https origins (None = system store)
    # TLS name sent (SNI) and verified instead of the URL's host, like nginx's proxy_ssl_name;
    # None = the URL's host. Origin data path only (not boto3: [fill] manifests, [logship])
    tls_server_name: str | None = None


@dataclass(slots=True)
class CacheConfig:
    dir: Path = Path("/var/cache/edgecdn")
    memory_bytes: int = 512 * 1024**2
    disk_bytes: int = 20 * 1024**3
    chunk_size: int = 2 * 1024**2
    policy: str = "popularity"
    fsync: bool = True
    scrub_rate: int = 8 * 1024**2  # bytes/s re-read against chunk checksums (0: no scrub)
    scrub_interval: float = 86400.0  # s between the starts of two scrub passes


@dataclass(slots=True)
class HttpLimits:
    max_header_bytes: int = 16384
    max_url_bytes: int = 8192
    max_body_bytes: int = 8 * 1024**2
    keepalive_timeout: float = 15.0
    max_ranges: int = 16


@dataclass(slots=True)
class TokenConfig:
    required: bool = False
    secrets: dict[str, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class LogConfig:
    access: str = "-"
    spool: bool = True
    rotate_seconds: float = 60.0


@dataclass(slots=True)
class EdgeConfig:
    node: NodeConfig = field(default_factory=NodeConfig)
    origin: OriginConfig = field(default_factory=OriginConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    http: HttpLimits = field(default_factory=HttpLimits)
    tokens: TokenConfig = field(default_factory=TokenConfig)
    log: LogConfig = field(default_factory=LogConfig)
    # edge.fill.FillConfig / edge.logship.LogShipConfig (imported lazily: edge.fill imports
    # this module)
    fill: Any = None
    logship: Any = None

    @property
    def run_dir(self) -> Path:
        return self.cache.dir / "run"

    @property
    def spool_dir(self) -> Path:
        return self.cache.dir / "logs"


def _get(d: dict[str, Any], section: str, key: str, default: Any) -> Any:
    sec = d.get(section, {})
    if not isinstance(sec, dict):
        raise ConfigError(f"{section}: must be a table")
    return sec.get(key, default)


def _size(d: dict[str, Any], section: str, key: str, default: int) -> int:
    v = _get(d, section, key, default)
    try:
        n = parse_size(v)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{section}.{key}: {e}") from e
    return n


def _num(d: dict[str, Any], section: str, key: str, default: float, lo: float = 0.0) -> float:
    v = _get(d, section, key, default)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(f"{section}.{key}: must be a number, got {v!r}")
    if v < lo:
        raise ConfigError(f"{section}.{key}: must be >= {lo}, got {v!r}")
    return float(v)


def _bool(d: dict[str, Any], section: str, key: str, default: bool) -> bool:
    v = _get(d, section, key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"{section}.{key}: must be true or false, got {v!r}")
    return v


def _str(d: dict[str, Any], section: str, key: str, default: str) -> str:
    v = _get(d, section, key, default)
    if not isinstance(v, str):
        raise ConfigError(f"{section}.{key}: must be a string, got {v!r}")
    return v


def _workers(d: dict[str, Any]) -> int:
    """A whole number >= 1, or "auto": one worker per usable core (edge.cores; nginx's
    worker_processes auto). More workers than cores only adds switches between them."""
    v = _get(d, "edge", "workers", 1)
    if v == "auto":
        return usable_cores()
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f'edge.workers: must be a whole number >= 1 or "auto", got {v!r}')
    return v


def _addr(value: str, key: str) -> tuple[str, int]:
    try:
        return split_hostport(value)
    except ConfigError as e:
        raise ConfigError(f"{key}: {e}") from e


def parse_origin_url(url: str) -> tuple[str, str, str]:
    """(kind, bucket-or-base-url, prefix) from s3://bucket/prefix or http(s)://host/prefix."""
    if url.startswith("s3://"):
        rest = url[5:]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ConfigError(f"origin.url: no bucket in {url!r}")
        return "s3", bucket, prefix.strip("/")
    if url.startswith(("http://", "https://")):
        scheme, _, rest = url.partition("://")
        host, _, prefix = rest.partition("/")
        if not host:
            raise ConfigError(f"origin.url: no host in {url!r}")
        return "http", f"{scheme}://{host}", prefix.strip("/")
    raise ConfigError(f"origin.url: must be s3://bucket[/prefix] or http(s)://host[/prefix], got {url!r}")


def build_config(doc: dict[str, Any]) -> EdgeConfig:
    """EdgeConfig from a TOML document (already merged with flag overrides)."""
    for sec in doc:
        if sec not in ("edge", "origin", "cache", "http", "tokens", "log", "fill", "logship"):
            raise ConfigError(f"{sec}: unknown section")
    workers = _workers(doc)
    admin = _str(doc, "edge", "admin_listen", "")
    node = NodeConfig(
        name=_str(doc, "edge", "name", "edge"),
        site=_str(doc, "edge", "site", ""),
        region=_str(doc, "edge", "region", ""),
        listen=_addr(_str(doc, "edge", "listen", "127.0.0.1:8080"), "edge.listen"),
        admin_listen=_addr(admin, "edge.admin_listen") if admin else None,
        admin_token=_str(doc, "edge", "admin_token", ""),
        workers=workers,
        capacity_bps=_num(doc, "edge", "capacity_mbps", 10_000) * 1e6 / 8,
        sendfile=_bool(doc, "edge", "sendfile", True),
        worker_slice_ms=_num(doc, "edge", "worker_slice_ms", DEFAULT_SLICE_MS),  # sched clamps
    )
    url = _str(doc, "origin", "url", "")
    if not url:
        raise ConfigError("origin.url: missing (s3://bucket[/prefix] or http(s)://host[/prefix])")
    kind, base, prefix = parse_origin_url(url)
    endpoint_url = _get(doc, "origin", "endpoint_url", None) or None
    origin = OriginConfig(
        url=url, kind=kind, bucket=base, prefix=prefix,
        endpoint_url=endpoint_url,
        region=_get(doc, "origin", "region", None) or None,
        access_key_id=_get(doc, "origin", "access_key_id", None) or None,
        secret_access_key=_get(doc, "origin", "secret_access_key", None) or None,
        connect_timeout=_num(doc, "origin", "connect_timeout", 2.0, lo=0.001),
        first_byte_timeout=_num(doc, "origin", "first_byte_timeout", 5.0, lo=0.001),
        read_timeout=_num(doc, "origin", "read_timeout", 5.0, lo=0.001),
        default_ttl=_num(doc, "origin", "default_ttl", 300.0),
        stale_if_error=_num(doc, "origin", "stale_if_error", 86400.0),
        max_connections=int(_num(doc, "origin", "max_connections", 256, lo=1)),
        hit_for_pass=_num(doc, "origin", "hit_for_pass", 60.0),
        negative_ttl=_num(doc, "origin", "negative_ttl", 0.0),
        ca_file=_ca_file(doc),
        tls_server_name=_tls_server_name(doc, kind, base, endpoint_url),
    )
    policy = _str(doc, "cache", "policy", "popularity")
    if policy not in POLICIES:
        raise ConfigError(f"cache.policy: must be one of {', '.join(POLICIES)}, got {policy!r}")
    chunk = _size(doc, "cache", "chunk_size", 2 * 1024**2)
    if not 4096 <= chunk <= 1024**3:
        raise ConfigError(f"cache.chunk_size: must be between 4KiB and 1GiB, got {chunk}")
    cache_dir = _str(doc, "cache", "dir", "/var/cache/edgecdn")
    if not cache_dir:
        raise ConfigError("cache.dir: missing")
    cache = CacheConfig(
        dir=Path(cache_dir),
        memory_bytes=_size(doc, "cache", "memory", 512 * 1024**2),
        disk_bytes=_size(doc, "cache", "disk", 20 * 1024**3),
        chunk_size=chunk,
        policy=policy,
        fsync=_bool(doc, "cache", "fsync", True),
        scrub_rate=_size(doc, "cache", "scrub_rate", 8 * 1024**2),
        scrub_interval=_num(doc, "cache", "scrub_interval", 86400.0, lo=0.1),
    )
    http = HttpLimits(
        max_header_bytes=int(_num(doc, "http", "max_header_bytes", 16384, lo=1024)),
        max_url_bytes=int(_num(doc, "http", "max_url_bytes", 8192, lo=256)),
        max_body_bytes=_size(doc, "http", "max_body_bytes", 8 * 1024**2),
        keepalive_timeout=_num(doc, "http", "keepalive_timeout", 15.0, lo=0.1),
        max_ranges=int(_num(doc, "http", "max_ranges", 16, lo=1)),
    )
    secrets_raw = _get(doc, "tokens", "secrets", {})
    if not isinstance(secrets_raw, dict):
        raise ConfigError("tokens.secrets: must be a table of kid = secret")
    secrets = {}
    for k, v in secrets_raw.items():
        if not isinstance(v, str) or not v:
            raise ConfigError(f"tokens.secrets.{k}: must be a non-empty string")
        secrets[str(k)] = v.encode()
    tokens = TokenConfig(required=_bool(doc, "tokens", "required", bool(secrets)), secrets=secrets)
    if tokens.required and not secrets:
        raise ConfigError("tokens.required: true but tokens.secrets is empty")
    log = LogConfig(
        access=_str(doc, "log", "access", "-"),
        spool=_bool(doc, "log", "spool", True),
        rotate_seconds=_num(doc, "log", "rotate_seconds", 60.0, lo=0.05),
    )
    from edge.fill.config import FillConfig
    from edge.logship import LogShipConfig

    fill = FillConfig.from_section(_table(doc, "fill"))
    if fill.enabled and fill.endpoint_url is None:
        fill.endpoint_url = origin.endpoint_url
    logship = LogShipConfig.from_section(_table(doc, "logship"))
    if logship.enabled:
        if logship.endpoint_url is None:
            logship.endpoint_url = origin.endpoint_url
        for key, v in (("edge.site", node.site), ("edge.name", node.name)):
            if not v or not all(c.isalnum() or c in "._-" for c in v):
                raise ConfigError(f"{key}: [logship] needs a name usable in an S3 key, got {v!r}")
    return EdgeConfig(node, origin, cache, http, tokens, log, fill, logship)


def _ca_file(doc: dict[str, Any]) -> str | None:
    """origin.ca_file as an absolute path, loaded once here so a bad one stops start-up."""
    if "tls_verify" in doc.get("origin", {}):
        raise ConfigError("origin.tls_verify: origin certificates are always verified; "
                          "trust a private CA or a self-signed origin with origin.ca_file")
    value = _get(doc, "origin", "ca_file", None)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"origin.ca_file: must be a path, got {value!r}")
    from edge.origin_client.tls import check_ca_file

    return check_ca_file(value)


def s3_endpoint(endpoint_url: str | None) -> str | None:
    """The S3-compatible endpoint in use: origin.endpoint_url, else the standard AWS
    environment variables (as boto3 reads them); None = AWS itself."""
    return (endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL") or None)


def _tls_server_name(doc: dict[str, Any], kind: str, base: str,
                     endpoint_url: str | None) -> str | None:
    """origin.tls_server_name, refused where the origin's data path has no TLS to name.

    It reaches only the aiohttp data path (an https origin.url, or the presigned URLs of an
    https S3 endpoint); boto3 calls ([fill] manifests, [logship] uploads) keep the endpoint's
    own host, as botocore takes no separate TLS name.
    """
    value = _get(doc, "origin", "tls_server_name", None)
    if value is None:
        return None
    from edge.origin_client.tls import check_server_name

    name = check_server_name(value)
    if kind == "s3":  # the endpoint S3Origin presigns against; none = AWS, always https
        target = s3_endpoint(endpoint_url) or "https://s3.amazonaws.com"
    else:
        target = base
    if not target.lower().startswith("https://"):
        what = "origin.url" if kind == "http" else "the S3 endpoint"
        raise ConfigError(f"origin.tls_server_name: {what} {target!r} is plain http, so there "
                          "is no TLS to send a server name in; use an https URL or drop it")
    return name


def _table(doc: dict[str, Any], section: str) -> dict[str, Any] | None:
    sec = doc.get(section)
    if sec is not None and not isinstance(sec, dict):
        raise ConfigError(f"{section}: must be a table")
    return sec


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> EdgeConfig:
    """The file (if any) merged with overrides ({section: {key: value}}; None = not given)."""
    doc = load_toml(path) if path else {}
    return build_config(merge(doc, _drop_none(overrides or {})))


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and not k == "secrets":
            v = _drop_none(v)
            if v:
                out[k] = v
        elif v is not None:
            out[k] = v
    return out
