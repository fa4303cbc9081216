"""``edgecdn steer --config FLEET [--listen HOST:PORT] [--dns HOST:PORT] [--geoip MMDB]``.

SIGHUP re-reads the fleet file: a file that validates replaces the running fleet (health
and region traffic state carried over by name); one that does not is logged and ignored.
"""

from __future__ import annotations

import argparse
import logging
import sys

from contracts.config import ConfigError, split_hostport
from contracts.fleet import load_fleet


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("steer", help="steering service: ranked signed edge URLs, DNS mode")
    p.add_argument("--config", required=True, help="fleet file (TOML), e.g. configs/fleet.example.toml")
    p.add_argument("--listen", help="HTTP HOST:PORT (overrides steering.listen)")
    p.add_argument("--dns", help="DNS HOST:PORT, UDP and TCP (overrides steering.dns_listen)")
    p.add_argument("--geoip", help="MaxMind City mmdb (overrides steering.geoip_db)")
    p.add_argument("--admin-token", help="bearer token for /v1/admin (overrides the file)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from steering.server import SteeringServer, run
    from steering.settings import load_settings

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        fleet = load_fleet(args.config)
        overrides = {"geoip_db": args.geoip, "admin_token": args.admin_token}
        settings = load_settings(fleet.steering, fleet.source, **overrides)
        listen = args.listen or settings.listen
        dns = args.dns if args.dns is not None else settings.dns_listen
        split_hostport(listen)
        if dns:
            split_hostport(dns)
        server = SteeringServer(fleet, settings, listen, dns, overrides=overrides)
    except (ConfigError, OSError) as e:
        print(f"edgecdn steer: {e}", file=sys.stderr)
        return 2
    return run(server)
