"""``edgecdn steer --config FLEET [--listen HOST:PORT] [--dns HOST:PORT] [--geoip MMDB]``."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace

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
    from steering.settings import SteeringSettings

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        fleet = load_fleet(args.config)
        settings = SteeringSettings.from_dict(fleet.steering)
        geoip = args.geoip if args.geoip is not None else settings.geoip_db
        if geoip and fleet.source and not geoip.startswith("/"):
            from pathlib import Path

            cand = Path(fleet.source).parent / geoip
            geoip = str(cand) if cand.exists() else geoip
        settings = replace(settings, geoip_db=geoip)
        if args.admin_token is not None:
            settings = replace(settings, admin_token=args.admin_token)
        listen = args.listen or settings.listen
        dns = args.dns if args.dns is not None else settings.dns_listen
        split_hostport(listen)
        if dns:
            split_hostport(dns)
        server = SteeringServer(fleet, settings, listen, dns)
    except (ConfigError, OSError) as e:
        print(f"edgecdn steer: {e}", file=sys.stderr)
        return 2
    return run(server)
