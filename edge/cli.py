"""``edgecdn edge``: run an edge cache node (file settings, flags override them)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from contracts.config import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser("edge", help="run an edge cache node",
                       description="Run an edge cache node in front of an S3 or HTTP origin.")
    p.add_argument("--config", metavar="FILE", help="TOML config (configs/edge.example.toml)")
    p.add_argument("--listen", metavar="HOST:PORT")
    p.add_argument("--admin-listen", metavar="HOST:PORT", help="/admin/* only on this address")
    p.add_argument("--admin-token", metavar="TOKEN", help="bearer token for /admin/purge")
    p.add_argument("--origin", metavar="URL", help="s3://bucket[/prefix] or http(s)://host[/prefix]")
    p.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint")
    p.add_argument("--origin-ca-file", metavar="PATH",
                   help="PEM CA bundle trusted for an https origin or S3 endpoint "
                        "(default: the system store)")
    p.add_argument("--origin-tls-server-name", metavar="NAME",
                   help="TLS name sent (SNI) and verified for an https origin reached by an "
                        "address or another name (default: the URL's host)")
    p.add_argument("--cache-dir", metavar="DIR")
    p.add_argument("--memory-cache", metavar="SIZE", help="memory tier, e.g. 512MiB")
    p.add_argument("--disk-cache", metavar="SIZE", help="disk tier, e.g. 20GiB")
    p.add_argument("--chunk-size", metavar="SIZE", help="storage chunk, default 2MiB")
    p.add_argument("--policy", choices=("lru", "popularity", "sieve", "s3fifo"))
    p.add_argument("--scrub-rate", metavar="SIZE",
                   help="per second: stored chunks re-read against their checksums, 0 = off")
    p.add_argument("--scrub-interval", type=float, metavar="S",
                   help="seconds from the start of one scrub pass to the next")
    p.add_argument("--workers", type=_workers_arg, metavar="N|auto",
                   help="worker processes on one port; auto: one per usable core")
    p.add_argument("--worker-slice-ms", type=float, metavar="MS",
                   help="--workers N: scheduler slice per worker, 0 = the kernel's default")
    p.add_argument("--name")
    p.add_argument("--site")
    p.add_argument("--region")
    p.add_argument("--default-ttl", type=float, metavar="S",
                   help="freshness when the origin gives none")
    p.add_argument("--negative-ttl", type=float, metavar="S",
                   help="reuse a 404/410 without freshness of its own this long (0 = off)")
    p.add_argument("--token-secret", action="append", metavar="KID=SECRET",
                   help="URL token secret (repeat for rotation); makes tokens required")
    p.add_argument("--access-log", metavar="PATH", help='"-" stdout, "" off, or a file')
    p.add_argument("--no-fsync", action="store_true", help="do not fsync chunks (tests)")
    p.add_argument("--no-sendfile", action="store_true", help="pread + write instead of sendfile")
    p.set_defaults(func=main)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    secrets = None
    if args.token_secret:
        secrets = {}
        for item in args.token_secret:
            kid, eq, secret = item.partition("=")
            if not eq or not kid or not secret:
                raise ConfigError(f"--token-secret: expected KID=SECRET, got {item!r}")
            secrets[kid] = secret
    return {
        "edge": {"listen": args.listen, "admin_listen": args.admin_listen,
                 "admin_token": args.admin_token, "workers": args.workers, "name": args.name,
                 "worker_slice_ms": args.worker_slice_ms,
                 "site": args.site, "region": args.region,
                 "sendfile": False if args.no_sendfile else None},
        "origin": {"url": args.origin, "endpoint_url": args.endpoint_url,
                   "default_ttl": args.default_ttl, "negative_ttl": args.negative_ttl,
                   "ca_file": args.origin_ca_file,
                   "tls_server_name": args.origin_tls_server_name},
        "cache": {"dir": args.cache_dir, "memory": args.memory_cache, "disk": args.disk_cache,
                  "chunk_size": args.chunk_size, "policy": args.policy,
                  "fsync": False if args.no_fsync else None, "scrub_rate": args.scrub_rate,
                  "scrub_interval": args.scrub_interval},
        "tokens": {"secrets": secrets, "required": True if secrets else None},
        "log": {"access": args.access_log},
    }


def _workers_arg(value: str) -> int | str:
    """A number as int; anything else goes to the config check, which names the key."""
    return int(value) if value.strip().isdigit() else value


def main(args: argparse.Namespace) -> int:
    from edge.config import load_config

    try:
        cfg = load_config(args.config, overrides(args))
    except ConfigError as e:
        print(f"edgecdn edge: config error: {e}", file=sys.stderr)
        return 2
    if cfg.node.workers > 1:
        from edge.workers import supervise

        return supervise(cfg)
    import uvloop

    from edge.node import run_node

    return uvloop.run(run_node(cfg))
