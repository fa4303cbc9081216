"""Players split over several harness processes, for more load than one core can verify.

Every process runs ``run_shard`` for the players p with p % N == k; shard 0 runs in the
calling process (with the live view and the fault schedule). The children are spawned (not
forked: the caller may already have threads), report "ready", start together at a unix time
the parent sends, and return their RunStats through a pipe; the parent merges them.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from bench.player_checksums import OriginChecksums
from bench.players import RunSettings, run_info, run_shard
from bench.playerstats import RunStats


def _child(conn: Connection, s: RunSettings, checks: OriginChecksums, shard: int,
           nshards: int) -> None:
    try:
        import uvloop

        conn.send("ready")
        start_at = conn.recv()
        stats, _ = uvloop.run(run_shard(s, checks, shard, nshards, None, start_at))
        conn.send(stats)
    except BaseException as e:  # the parent must hear about it rather than wait forever
        conn.send(RuntimeError(f"harness shard {shard}: {type(e).__name__}: {e}"))
    finally:
        conn.close()


def run_multi(s: RunSettings, checks: OriginChecksums,
              runner: Callable[[Any], Any],
              on_tick: Callable[[RunStats, float], None] | None = None) -> dict[str, Any]:
    """Run s.procs shards; ``runner`` runs a coroutine to completion (uvloop.run)."""
    ctx = mp.get_context("spawn")
    kids = []
    for k in range(1, s.procs):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_child, args=(child, s, checks, k, s.procs), daemon=True)
        p.start()
        child.close()
        kids.append((p, parent))
    try:
        for _, conn in kids:
            if conn.recv() != "ready":
                raise RuntimeError("a harness process did not start")
        start_at = time.time() + 0.2
        for _, conn in kids:
            conn.send(start_at)
        stats, wall = runner(run_shard(s, checks, 0, s.procs, on_tick, start_at))
        for _, conn in kids:
            got = conn.recv()
            if isinstance(got, BaseException):
                raise got
            stats.merge(got)
    finally:
        for p, conn in kids:
            conn.close()
            p.join(5)
            if p.is_alive():
                p.kill()
    return stats.report(run_info(s, checks, wall, start_at, s.procs))
