"""``edgecdn bench players``: simulated players through a fleet, with faults and a report."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bench.faults import load_scenario, parse_spec
from bench.player_checksums import OriginChecksums
from bench.players import RunSettings, bench_table, build_settings, run_players, summary_lines
from bench.playerstats import RunStats
from contracts.config import ConfigError
from contracts.fleet import Fleet, load_fleet


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("players", help="simulated video players through a fleet",
                       description=__doc__)
    p.add_argument("--fleet", required=True, help="fleet TOML (its [bench] table is read)")
    p.add_argument("--players", type=int, help="concurrent players (default 10)")
    p.add_argument("--duration", type=float, help="seconds to run (default 60)")
    p.add_argument("--speed", type=float, help="playback speed: 1 = real time (default 1)")
    p.add_argument("--seed", type=int, help="seed for clients, titles, abandonment (default 0)")
    p.add_argument("--sessions", type=int, help="plays per player (default: until duration)")
    p.add_argument("--procs", type=int,
                   help="harness processes sharing the players (default 1; the live view "
                        "then shows the first one's share)")
    p.add_argument("--scenario", help="scenario TOML: [[faults]] and [bench] overrides")
    p.add_argument("--fault", action="append", default=[], metavar="T:ACTION[:ARG...]",
                   help="e.g. 30:kill:lon-1, 30:evacuate:eu-west, 10:origin:fail:0.5, "
                        "40:weights:eu-west=70,us-east=30 (repeatable)")
    p.add_argument("--steering", help="steering base URL (default from the fleet)")
    p.add_argument("--origin", help="s3://bucket/prefix for checksums and titles")
    p.add_argument("--s3-endpoint", help="S3 endpoint URL (default: AWS chain)")
    p.add_argument("--fault-proxy", help="URL of the bench.faultproxy in front of the origin")
    p.add_argument("--checksums", metavar="FILE",
                   help='precomputed {"/titles/...": [size, "md5"]} instead of listing S3')
    p.add_argument("--save-checksums", metavar="FILE",
                   help="write the checksums read from the origin here (for --checksums)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the origin listing (segments are then unverified)")
    p.add_argument("--json", help="write the JSON report here")
    p.add_argument("--plot", help="write the PNG report here")
    p.add_argument("--no-progress", action="store_true", help="no live terminal view")
    p.set_defaults(func=cmd_players)


def load_checksums(fleet: Fleet, b: dict[str, Any], verify: bool) -> OriginChecksums:
    """The origin's (size, MD5) per path; also how titles are discovered."""
    if not verify:
        return OriginChecksums()
    origin = str(b.get("origin") or fleet.origin.get("url", ""))
    if not origin:
        raise ConfigError("no origin to verify against: set [origin] url, [bench] origin or "
                          "--origin (or pass --no-verify)")
    endpoint = str(b.get("s3_endpoint") or fleet.origin.get("endpoint_url", "")) or None
    return OriginChecksums.from_s3(origin, endpoint)


def settings_from_args(args: argparse.Namespace) -> tuple[RunSettings, OriginChecksums]:
    fleet = load_fleet(args.fleet)
    scenario_bench: dict[str, Any] = {}
    faults = []
    if args.scenario:
        sc = load_scenario(args.scenario)
        faults.extend(sc.faults)
        scenario_bench = sc.bench
    faults.extend(parse_spec(f) for f in args.fault)
    b = bench_table(fleet, scenario_bench, {
        "players": args.players, "duration": args.duration, "speed": args.speed,
        "seed": args.seed, "sessions": args.sessions, "steering_url": args.steering,
        "procs": args.procs,
        "origin": args.origin, "s3_endpoint": args.s3_endpoint, "fault_proxy": args.fault_proxy,
    })
    if args.checksums:
        checks = OriginChecksums.from_json(args.checksums)
    else:
        checks = load_checksums(fleet, b, not args.no_verify)
    if args.save_checksums:
        checks.to_json(args.save_checksums)
    return build_settings(fleet, b, checks.titles(), faults), checks


class LiveView:
    """A rich table refreshed twice a second: where the run stands right now."""

    def __init__(self, s: RunSettings) -> None:
        from rich.console import Console
        from rich.live import Live

        self.s = s
        self.console = Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def tick(self, st: RunStats, now: float) -> None:
        self.live.update(self.render(st, now))

    def render(self, st: RunStats, now: float) -> Any:
        from rich.console import Group
        from rich.table import Table

        share = f"  (process 1 of {self.s.procs})" if self.s.procs > 1 else ""
        t = Table(title=f"edgecdn players  {now:5.1f}/{self.s.duration:g}s{share}",
                  expand=False)
        for col in ("playing", "plays", "failed", "Mbit/s", "byte hit", "failovers",
                    "corrupt", "errors"):
            t.add_column(col, justify="right")
        byte_r, _ = st.hit_ratios()
        failed = sum(1 for r in st.sessions if not r.ok)
        failovers = st.failovers
        t.add_row(str(st.active_players), str(len(st.sessions)), str(failed),
                  f"{st.recent_mbps(now):.1f}",
                  "-" if byte_r is None else f"{byte_r * 100:.1f}%", str(failovers),
                  str(st.segments_corrupt + st.segments_short), str(st.request_errors))
        src = Table(show_header=True, expand=False)
        for col in ("source", "site", "region", "requests", "MB", "hits", "errors"):
            src.add_column(col, justify="right")
        for name, v in sorted(st.sources.items()):
            src.add_row(name, v["site"], v["region"], str(v["requests"]),
                        f"{v['bytes'] / 1e6:.1f}", str(v["hits"]), str(v["errors"]))
        events = [f"[red]{e['t']:.1f}s {e['what']}[/red] ({'ok' if e['ok'] else 'failed'})"
                  for e in st.events]
        return Group(t, src, *events)


def execute(s: RunSettings, checks: OriginChecksums, progress: bool) -> dict[str, Any]:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    if s.procs > 1:
        from bench.players_procs import run_multi

        if progress:
            with LiveView(s) as view:
                return run_multi(s, checks, runner, view.tick)
        return run_multi(s, checks, runner)
    if progress:
        with LiveView(s) as view:
            return runner(run_players(s, checks, view.tick))
    return runner(run_players(s, checks))


def write_outputs(rep: dict[str, Any], json_out: str | None, plot_out: str | None) -> None:
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(rep, indent=1, sort_keys=True))
    if plot_out:
        from bench.report_plot import plot_report

        plot_report(rep, plot_out)


def cmd_players(args: argparse.Namespace) -> int:
    try:
        s, checks = settings_from_args(args)
    except (ConfigError, ValueError, OSError) as e:
        print(f"edgecdn bench players: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # botocore errors while listing the origin
        print(f"edgecdn bench players: cannot list the origin: {e}", file=sys.stderr)
        return 2
    s.progress = not args.no_progress and sys.stderr.isatty()
    rep = execute(s, checks, s.progress)
    write_outputs(rep, args.json, args.plot)
    for line in summary_lines(rep):
        print(line)
    if args.json:
        print(f"JSON report: {args.json}")
    if args.plot:
        print(f"PNG report: {args.plot}")
    bad = rep["plays"]["failed"] or rep["segments"]["corrupt"] or rep["segments"]["short"]
    return 1 if bad else 0
