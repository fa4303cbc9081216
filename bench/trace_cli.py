"""``edgecdn bench trace``: replay a request trace through the edge's eviction policies."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.trace import Result, Trace, TraceError, read_trace, resolve_capacity, run
from bench.workloads import VodConfig, vod_trace, write_vod_csv
from edge.policy import POLICIES

EPILOG = """\
examples:
  edgecdn bench trace ../shared/traces/cache2k_web07.csv --policy all --capacity 1% --capacity 10%
  edgecdn bench trace trace.csv --policy popularity --capacity 512MiB --json
  edgecdn bench trace --vod --seed 1 --policy all --capacity 1%,5%,10% --plot vod.png
  edgecdn bench trace --vod --seed 7 --requests 100000 --save-trace vod7.csv   (just write it)

The trace is CSV without a header: time,key,size.  A key seen with several sizes is one object
per (key, size).  --vod replays the synthetic video workload of bench/workloads.py instead of a
file (Zipf titles, an ABR ladder of renditions, sessions from segment 0 that abandon early);
--save-trace writes the replayed trace as CSV.  Capacities are absolute sizes or a percentage
of the trace's unique bytes; --policy and --capacity repeat, or take comma lists.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace",
        help="eviction policies over a CSV trace (or the synthetic VOD workload)",
        description="Replay a time,key,size trace through the edge's eviction policies and "
        "print object and byte miss ratios.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", help="CSV trace (time,key,size); omit with --vod")
    p.add_argument("--policy", action="append", metavar="NAME",
                   help=f"one of {', '.join(POLICIES)} or all; repeatable (default: all)")
    p.add_argument("--capacity", action="append", metavar="SIZE|PCT%",
                   help="cache size, e.g. 512MiB or 5%% of unique bytes; repeatable (required "
                   "unless only writing a trace)")
    p.add_argument("--json", action="store_true",
                   help="JSON: one object per run (a list when there are several)")
    p.add_argument("--plot", metavar="OUT.png", help="plot byte miss ratio vs capacity")
    vod = p.add_argument_group("synthetic VOD workload")
    vod.add_argument("--vod", action="store_true", help="replay the synthetic VOD workload")
    vod.add_argument("--seed", type=int, default=1, help="VOD seed (default 1)")
    vod.add_argument("--requests", type=int, default=VodConfig.requests,
                     help=f"VOD requests (default {VodConfig.requests})")
    vod.add_argument("--titles", type=int, default=VodConfig.titles,
                     help=f"VOD catalogue size (default {VodConfig.titles})")
    vod.add_argument("--save-trace", metavar="OUT.csv", help="write the VOD trace as CSV")
    p.set_defaults(func=main)


def _fail(msg: str) -> int:
    print(f"edgecdn bench trace: {msg}", file=sys.stderr)
    return 2


def _split(values: Sequence[str] | None) -> list[str]:
    return [v.strip() for item in values or () for v in item.split(",") if v.strip()]


def _policies(values: Sequence[str] | None) -> list[str]:
    names = _split(values) or ["all"]
    out: list[str] = []
    for n in names:
        for m in POLICIES if n == "all" else [n]:
            if m not in POLICIES:
                raise ValueError(f"unknown policy {m!r} (choose from {', '.join(POLICIES)}, all)")
            if m not in out:
                out.append(m)
    return out


def _progress(total: int, label: str) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """A rich progress bar on stderr for long runs (only on a terminal)."""
    if total < 200_000 or not sys.stderr.isatty():
        return None, lambda: None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)
    task = prog.add_task(label, total=total)
    prog.start()
    return (lambda n: prog.advance(task, n)), prog.stop


def _load(args: argparse.Namespace) -> Trace:
    if args.vod or args.file == "vod":
        if args.requests <= 0 or args.titles <= 0:
            raise ValueError("--requests and --titles must be positive")
        cfg = VodConfig(seed=args.seed, requests=args.requests, titles=args.titles)
        if args.save_trace:
            write_vod_csv(args.save_trace, cfg)
        return vod_trace(cfg)
    if not args.file:
        raise ValueError("give a trace FILE or --vod")
    if args.save_trace:
        raise ValueError("--save-trace only applies to --vod")
    return read_trace(args.file)


def _plot(path: str, trace: Trace, results: list[Result]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r.policy for r in results):
        pts = sorted((r.capacity_bytes / trace.unique_bytes * 100, r.byte_miss_ratio)
                     for r in results if r.policy == name)
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=name)
    ax.set_xlabel("cache size (% of unique bytes)")
    ax.set_ylabel("byte miss ratio")
    ax.set_title(f"{trace.name}: {len(trace):,} requests, {trace.unique_objects:,} objects")
    xs = sorted({r.capacity_bytes / trace.unique_bytes * 100 for r in results})
    if len(xs) > 2:
        ax.set_xscale("log")
    ax.set_xticks(xs, [f"{x:g}%" for x in xs])
    ax.minorticks_off()
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    try:
        names = _policies(args.policy)
        trace = _load(args)
        specs = _split(args.capacity)
        if not specs:
            if args.save_trace:
                print(f"wrote {len(trace)} requests to {args.save_trace}", file=sys.stderr)
                return 0
            raise ValueError("--capacity is required (e.g. 5% or 512MiB)")
        if not len(trace):
            raise ValueError("the trace has no requests")
        caps = [resolve_capacity(s, trace.unique_bytes) for s in specs]
    except (OSError, TraceError, ValueError) as e:
        return _fail(str(e))

    advance, stop = _progress(len(trace), f"{trace.name}: {len(names) * len(caps)} caches")
    try:
        results = run(trace, names, caps, advance)
    finally:
        stop()

    if args.plot:
        try:
            _plot(args.plot, trace, results)
        except OSError as e:
            return _fail(f"cannot write plot: {e}")
    if args.json:
        docs = [r.to_json() for r in results]
        print(json.dumps(docs[0] if len(docs) == 1 else docs))
        return 0
    print(f"{trace.name}: {len(trace):,} requests, {trace.unique_objects:,} objects, "
          f"{trace.unique_bytes:,} unique bytes")
    print(f"{'policy':<11} {'capacity':>15} {'%unique':>8} {'object miss':>12} {'byte miss':>10}")
    for r in results:
        pct = 100 * r.capacity_bytes / trace.unique_bytes if trace.unique_bytes else 0.0
        print(f"{r.policy:<11} {r.capacity_bytes:>15,} {pct:>7.2f}% "
              f"{r.object_miss_ratio:>12.4f} {r.byte_miss_ratio:>10.4f}")
    if args.plot:
        print(f"plot: {Path(args.plot).resolve()}")
    return 0
