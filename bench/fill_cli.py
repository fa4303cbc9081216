"""``edgecdn bench fill [--json]``: the proactive-fill measure over real HTTP (see
bench/fill_measure.py): a filled edge beside a cold one on the same player workload."""

from __future__ import annotations

import argparse
import asyncio
import sys

from contracts.sizes import parse_size


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fill", help="fill plan + one fill window: warm vs cold edge hit ratio")
    p.add_argument("--titles", type=int, default=16)
    p.add_argument("--segments", type=int, default=10, help="segments per rendition")
    p.add_argument("--segment-size", default="32KiB-96KiB",
                   help="240p segment size range MIN-MAX (480p is twice; default 32KiB-96KiB)")
    p.add_argument("--sessions", type=int, default=800,
                   help="player sessions replayed through each edge (default 800)")
    p.add_argument("--log-sessions", type=int, default=20_000,
                   help="sessions in yesterday's logs the plan reads (default 20000)")
    p.add_argument("--share", type=float, default=0.9,
                   help="disk budget = the objects making up this share of the workload's "
                        "bytes (default 0.9)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight per edge")
    p.add_argument("--policy", choices=["lru", "popularity"], default="popularity")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bench.fill_measure import Params, format_table, result_json, run

    try:
        lo, _, hi = args.segment_size.partition("-")
        seg_min, seg_max = parse_size(lo), parse_size(hi or lo)
    except (TypeError, ValueError) as e:
        print(f"edgecdn bench fill: --segment-size: {e}", file=sys.stderr)
        return 2
    if (min(args.titles, args.segments, args.sessions, args.log_sessions, args.concurrency) < 1
            or not 0 < args.share <= 1 or not 0 < seg_min <= seg_max):
        print("edgecdn bench fill: counts must be >= 1, --share in (0, 1], "
              "--segment-size MIN <= MAX and > 0", file=sys.stderr)
        return 2
    p = Params(titles=args.titles, segments=args.segments, seg_min=seg_min,
               seg_max=seg_max + 1, past_sessions=args.log_sessions, sessions=args.sessions,
               share=args.share, seed=args.seed, concurrency=args.concurrency,
               policy=args.policy)
    from rich.console import Console

    err = Console(stderr=True)
    try:
        r = asyncio.run(run(p, None if args.json else lambda m: err.print(f"[dim]{m}[/dim]")))
    except RuntimeError as e:
        print(f"edgecdn bench fill: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(result_json(r))
    else:
        Console().print(format_table(r))
    return 0 if r["warm"]["errors"] == 0 and r["cold"]["errors"] == 0 else 1
