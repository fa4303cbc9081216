"""``--workers N``: a supervisor runs N edge processes on one port (SO_REUSEPORT) sharing one
disk cache, restarts any that dies, and stops them all on SIGTERM/SIGINT.

Workers are separate interpreters (``edgecdn edge ... --worker-index i``), so each has its
own uvloop loop and GIL. The supervisor sets PROMETHEUS_MULTIPROC_DIR for them so any
worker's /metrics covers all, and marks dead workers' gauges dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time

from edge.config import EdgeConfig
from edge.cores import usable_cores
from edge.node import START_FAILED

RESTART_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)


def cores_note(workers: int, cores: int) -> str:
    """The start-up line's word on cores: workers beyond them take turns on a core, and
    each turn costs (measured in NOTES.md: about 10% more CPU per 2 MiB hit, two on one)."""
    if workers <= cores:
        return f" on {cores} usable core{'s' * (cores != 1)}"
    return (f"; they share {cores} usable core{'s' * (cores != 1)}, so they take turns and "
            f"each turn costs CPU (--workers auto: one per core)")


def supervise(cfg: EdgeConfig, argv: list[str]) -> int:
    import uvloop

    return uvloop.run(_supervise(cfg, argv))


async def _supervise(cfg: EdgeConfig, argv: list[str]) -> int:
    n = cfg.node.workers
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    prom = cfg.run_dir / "prometheus"
    shutil.rmtree(prom, ignore_errors=True)
    prom.mkdir(parents=True)
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(prom))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    procs: dict[int, asyncio.subprocess.Process] = {}
    failed: list[int] = []
    base = [a for a in argv if not a.startswith("--worker-index")]

    async def start(i: int) -> None:
        cmd = [sys.executable, "-m", "edgecdn.cli", *base, "--worker-index", str(i)]
        procs[i] = await asyncio.create_subprocess_exec(*cmd, env=env)

    async def keep(i: int) -> None:
        failures = 0
        while not stopping.is_set():
            t0 = time.monotonic()
            await start(i)
            rc = await procs[i].wait()
            with contextlib.suppress(Exception):
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(procs[i].pid, str(prom))
            if stopping.is_set():
                return
            if rc == START_FAILED:  # port taken, cache dir unusable...: retrying will not help
                print(f"edge supervisor: worker {i} could not start; stopping",
                      file=sys.stderr, flush=True)
                failed.append(i)
                stopping.set()
                return
            failures = 0 if time.monotonic() - t0 > 30 else failures + 1
            delay = RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF) - 1)]
            print(f"edge supervisor: worker {i} exited ({rc}); restarting in {delay}s",
                  file=sys.stderr, flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)

    keepers = [asyncio.create_task(keep(i)) for i in range(n)]
    print(f"edge supervisor pid {os.getpid()}: {n} workers{cores_note(n, usable_cores())}",
          file=sys.stderr, flush=True)
    await stopping.wait()
    for p in procs.values():
        if p.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs.values())), 15)
    for p in procs.values():
        if p.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
    for k in keepers:
        k.cancel()
    return 1 if failed else 0
