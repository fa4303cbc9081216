"""``edgecdn demo``: a whole fleet on loopback, players through it, faults half way."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.demo import DemoOptions, install_signal_handlers, run_demo


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="embedded fleet + players + faults on loopback",
                       description=__doc__)
    p.add_argument("--players", type=int, default=300)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of players")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed (1 = real time)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--titles", type=int, default=3)
    p.add_argument("--title-seconds", type=int, default=32)
    p.add_argument("--kill", default="nyc-1", help="edge to kill half way")
    p.add_argument("--evacuate", default="eu-west", help="region to evacuate half way")
    p.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="do not delete the temp dir")
    p.add_argument("--out", type=Path, default=Path("demo-report"),
                   help="folder for players.json and players.png (default ./demo-report)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.players < 1 or args.duration <= 0 or args.speed <= 0 or args.titles < 1:
        print("edgecdn demo: players >= 1, duration > 0, speed > 0, titles >= 1",
              file=sys.stderr)
        return 2
    install_signal_handlers()
    o = DemoOptions(players=args.players, duration=args.duration, speed=args.speed,
                    seed=args.seed, titles=args.titles, title_seconds=args.title_seconds,
                    kill_edge=args.kill, evacuate=args.evacuate, workdir=args.workdir,
                    keep=args.keep, out=args.out, progress=not args.no_progress)
    try:
        rep = run_demo(o)
    except (KeyboardInterrupt, SystemExit) as e:
        print("\nedgecdn demo: interrupted; every process it started has been stopped",
              file=sys.stderr)
        return e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 130
    except RuntimeError as e:
        print(f"edgecdn demo: {e}", file=sys.stderr)
        return 1
    bad = rep["plays"]["failed"] + rep["segments"]["corrupt"] + rep["segments"]["short"]
    print(f"demo finished in {rep['demo']['seconds']}s: "
          f"{'OK: no failed plays, no corrupt segments' if not bad else 'PROBLEMS (see above)'}")
    return 0 if not bad else 1
