"""``edgecdn bench ...``: each benchmark lives in its own module with ``register(sub)``."""

from __future__ import annotations

import argparse
import importlib

BENCHES = {
    "trace": "bench.trace_cli",      # eviction policies over a CSV trace
    "serve": "bench.serve_cli",      # hit serving vs nginx proxy_cache
    "steer": "bench.steer_cli",      # steering decisions/s
    "players": "bench.players_cli",  # simulated players through a fleet
    "fill": "bench.fill_cli",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks and the load-test harness")
    bsub = p.add_subparsers(dest="bench", metavar="BENCH")
    for name, module in BENCHES.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):
                bsub.add_parser(name, help="(not built yet)")
                continue
            raise
        mod.register(bsub)
