"""``edgecdn fill plan``: edge logs in S3 -> per-site and per-edge fill manifests in S3.

Locations: the origin (``--origin`` or the fleet's ``[origin] url``) holds the titles; the
fleet's ``[origin] logs_prefix`` / ``manifests_prefix`` (default ``logs/`` and
``manifests/``) are keys in the origin's bucket, or full ``s3://`` URLs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contracts.config import ConfigError
from contracts.fleet import Fleet, load_fleet
from contracts.manifest import (
    Manifest,
    edge_manifest_key,
    parse_s3_url,
    resolve_prefix,
    site_manifest_key,
)
from contracts.sizes import format_size
from origin.plan import edge_manifests, origin_objects, parse_duration, plan_fleet
from origin.popularity import Popularity, read_logs
from origin.s3 import list_objects, s3_client


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fill", help="proactive fill: plan manifests from edge logs")
    fsub = p.add_subparsers(dest="fill_command", metavar="ACTION")
    p.set_defaults(func=lambda _args: _usage(p))
    pl = fsub.add_parser("plan", help="write one fill manifest per site and edge to S3")
    pl.add_argument("--fleet", required=True, help="fleet TOML file")
    pl.add_argument("--origin", help="s3://bucket[/prefix] (default: fleet [origin] url)")
    pl.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS chain)")
    pl.add_argument("--region", default=None)
    pl.add_argument("--logs-prefix", help="default: fleet [origin] logs_prefix or logs/")
    pl.add_argument("--manifests-prefix", help="default: fleet [origin] manifests_prefix")
    pl.add_argument("--half-life", default="6h", help="popularity half-life (default 6h)")
    pl.add_argument("--max-age", default=None,
                    help="ignore log files older than this (default 10 half-lives)")
    pl.add_argument("--capacity", type=int, default=200_000,
                    help="counters kept per site/region (memory bound; default 200000)")
    pl.add_argument("--replicas", type=int, default=1,
                    help="edges of a site that hold each title (default 1)")
    pl.add_argument("--budget-fraction", type=float, default=1.0,
                    help="share of each edge's disk budget the manifest may use")
    pl.add_argument("--dry-run", action="store_true", help="plan and print, write nothing")
    pl.add_argument("--json", action="store_true", help="print the summary as JSON")
    pl.set_defaults(func=cmd_plan)

    sh = fsub.add_parser("show", help="print a site's (or one edge's) manifest from S3")
    sh.add_argument("--fleet", required=True, help="fleet TOML file")
    sh.add_argument("--site", required=True)
    sh.add_argument("--edge", help="that edge's share instead of the whole site")
    sh.add_argument("--origin", help="s3://bucket[/prefix] (default: fleet [origin] url)")
    sh.add_argument("--manifests-prefix", help="default: fleet [origin] manifests_prefix")
    sh.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS chain)")
    sh.add_argument("--region", default=None)
    sh.add_argument("--top", type=int, default=10, help="entries to list (default 10)")
    sh.add_argument("--json", action="store_true", help="the whole manifest as JSON")
    sh.set_defaults(func=cmd_show)


def _locations(fleet: Fleet, origin: str | None, logs_prefix: str | None,
               manifests_prefix: str | None) -> dict[str, tuple[str, str]]:
    origin = origin or fleet.origin.get("url")
    if not origin:
        raise ValueError("no origin: give --origin s3://bucket/prefix or [origin] url in fleet")
    bucket, prefix = parse_s3_url(str(origin))
    logs = logs_prefix or str(fleet.origin.get("logs_prefix", "logs/"))
    mans = manifests_prefix or str(fleet.origin.get("manifests_prefix", "manifests/"))
    return {"origin": (bucket, prefix), "logs": resolve_prefix(logs, bucket),
            "manifests": resolve_prefix(mans, bucket)}


def _put_json(client: Any, bucket: str, key: str, m: Manifest) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=m.to_json().encode(),
                      ContentType="application/json", CacheControl="no-cache")


def run_plan(args: argparse.Namespace, now: float | None = None) -> dict[str, Any]:
    return plan(args.fleet, origin=args.origin, endpoint_url=args.endpoint_url,
                region=args.region, logs_prefix=args.logs_prefix,
                manifests_prefix=args.manifests_prefix, half_life=args.half_life,
                max_age=args.max_age, capacity=args.capacity, replicas=args.replicas,
                budget_fraction=args.budget_fraction, dry_run=args.dry_run, now=now)


def plan(fleet_file: str | Path, *, origin: str | None = None, endpoint_url: str | None = None,
         region: str | None = None, logs_prefix: str | None = None,
         manifests_prefix: str | None = None, half_life: str | float = "6h",
         max_age: str | float | None = None, capacity: int = 200_000, replicas: int = 1,
         budget_fraction: float = 1.0, dry_run: bool = False,
         now: float | None = None) -> dict[str, Any]:
    """Read logs, plan, write manifests (unless dry_run); returns the summary (the demo's
    and scripts' entry point; the CLI is a thin wrapper)."""
    fleet = load_fleet(fleet_file)
    hl = parse_duration(half_life)
    max_age_s = parse_duration(max_age) if max_age else 10 * hl
    if capacity < 1 or replicas < 1 or not (0 < budget_fraction <= 1):
        raise ValueError("--capacity and --replicas must be >= 1, --budget-fraction in (0, 1]")
    loc = _locations(fleet, origin, logs_prefix, manifests_prefix)
    now = time.time() if now is None else now
    client = s3_client(endpoint_url, region)
    pop = Popularity(hl, capacity, {s.name: s.region for s in fleet.sites})
    t0 = time.monotonic()
    files = read_logs(client, *loc["logs"], pop, now=now, max_age=max_age_s)
    ob, op = loc["origin"]
    objects = origin_objects(list_objects(client, ob, op + "titles/"), op)
    manifests = plan_fleet(fleet, pop, objects, now, replicas, budget_fraction)
    mb, mp = loc["manifests"]
    summary: dict[str, Any] = {"logs": {**files, **pop.summary()},
                               "origin_objects": len(objects), "sites": {}}
    for name, m in manifests.items():
        per_edge = edge_manifests(fleet, m)
        if not dry_run:
            _put_json(client, mb, site_manifest_key(mp, name), m)
            for edge, em in per_edge.items():
                _put_json(client, mb, edge_manifest_key(mp, name, edge), em)
        summary["sites"][name] = {
            "entries": len(m.entries), "budget_per_edge": m.budget,
            "edges": {e: {"entries": len(em.entries), "bytes": em.bytes_for(e)}
                      for e, em in per_edge.items()},
            "manifest": f"s3://{mb}/{site_manifest_key(mp, name)}",
        }
    summary["seconds"] = round(time.monotonic() - t0, 3)
    return summary


def cmd_plan(args: argparse.Namespace) -> int:
    try:
        summary = run_plan(args)
    except (ConfigError, ValueError) as e:
        print(f"edgecdn fill plan: {e}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as e:
        print(f"edgecdn fill plan: S3 error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    lg = summary["logs"]
    print(f"read {lg['files']} log files, {lg['lines']} lines ({lg['bad_lines']} bad), "
          f"{summary['origin_objects']} origin objects, {summary['seconds']} s")
    for site, s in summary["sites"].items():
        edges = ", ".join(f"{e} {v['entries']} obj {format_size(v['bytes'])}"
                          for e, v in s["edges"].items())
        print(f"  {site}: {s['entries']} objects, budget {format_size(s['budget_per_edge'])}"
              f"/edge [{edges}] -> {s['manifest']}")
    return 0


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def cmd_show(args: argparse.Namespace) -> int:
    try:
        fleet = load_fleet(args.fleet)
        fleet.site(args.site)
        mb, mp = _locations(fleet, args.origin, None, args.manifests_prefix)["manifests"]
        key = (edge_manifest_key(mp, args.site, args.edge) if args.edge
               else site_manifest_key(mp, args.site))
        body = s3_client(args.endpoint_url, args.region).get_object(Bucket=mb, Key=key)
        m = Manifest.from_json(body["Body"].read())
    except KeyError:
        print(f"edgecdn fill show: no site {args.site!r} in the fleet", file=sys.stderr)
        return 2
    except (ConfigError, ValueError) as e:
        print(f"edgecdn fill show: {e}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as e:
        print(f"edgecdn fill show: S3 error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(m.to_dict(), indent=2))
        return 0
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.generated_at))
    edges = sorted({e for x in m.entries for e in x.edges})
    print(f"s3://{mb}/{key}: site {m.site}{' edge ' + m.edge if m.edge else ''}, "
          f"generated {when}, {len(m.entries)} objects, budget {format_size(m.budget)}/edge")
    for e in edges:
        print(f"  {e}: {format_size(m.bytes_for(e))}")
    for x in m.entries[: max(0, args.top)]:
        print(f"  #{x.rank:<5} {format_size(x.size):>9}  {x.path}  -> {', '.join(x.edges)}")
    return 0
