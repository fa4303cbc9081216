"""``edgecdn bench steer [--json]``: steering decisions/s and latency (see bench/steer.py)."""

from __future__ import annotations

import argparse
import asyncio


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("steer", help="steering decisions/s, p50/p99, 200 edges, signed URLs")
    p.add_argument("--edges", type=int, default=200)
    p.add_argument("--regions", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    p.add_argument("--repeat", type=int, default=3,
                   help="saturated runs; the median by throughput is reported")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    p.add_argument("--titles", type=int, default=1000)
    p.add_argument("--tool", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--server-cores", default="auto",
                   help="taskset list for the servers ('' = unpinned; auto = idlest core)")
    p.add_argument("--client-cores", default="auto",
                   help="taskset list for the load tool (auto = the other core)")
    p.add_argument("--rate", type=float, default=10_000.0,
                   help="then latency at this fixed rate, open loop (wrk2-style: from each "
                        "request's scheduled time; 0 = skip)")
    p.add_argument("--no-decision-log", action="store_true",
                   help="turn the JSON decision log off (on by default, to a temp file)")
    p.add_argument("--no-naive", action="store_true",
                   help="skip the naive aiohttp reference server run beside each measured run")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bench.steer import bench, format_result, result_json

    if args.edges < 1 or args.connections < 1 or args.duration <= 0 or args.titles < 1:
        print("edgecdn bench steer: --edges, --connections, --duration, --titles must be > 0")
        return 2
    try:
        r = asyncio.run(bench(args.edges, args.regions, args.connections, args.duration,
                              args.warmup, args.titles, args.tool, args.server_cores or None,
                              args.client_cores or None, not args.no_decision_log,
                              args.rate, args.repeat, not args.no_naive))
    except (RuntimeError, ValueError) as e:
        print(f"edgecdn bench steer: {e}")
        return 1
    print(result_json(r) if args.json else format_result(r))
    return 0 if r.errors == 0 else 1
