"""``--workers N``: a supervisor runs N edge processes on one port (SO_REUSEPORT) sharing one
disk cache, restarts any that dies, and stops them all on SIGTERM/SIGINT.

The supervisor loads the edge's code once and forks the workers from it (nginx's master and
gunicorn --preload do the same): every worker then runs the same code at the same addresses
and shares the pages nobody has written since (two workers and the supervisor: 82 MiB PSS,
against 121 MiB as separately started interpreters; NOTES.md). So that forking stays safe,
the supervisor starts no thread and no event loop: it waits on its children and on signals
only. Each worker runs its own uvloop loop and has its own GIL.
The supervisor sets PROMETHEUS_MULTIPROC_DIR before the code is loaded, so any worker's
/metrics covers all, and marks dead workers' gauges dead.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import NoReturn

from edge.config import EdgeConfig
from edge.cores import usable_cores

RESTART_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)
STOP_GRACE = 15.0  # s: workers finishing their responses after SIGTERM, then SIGKILL
PR_SET_PDEATHSIG = 1


def cores_note(workers: int, cores: int) -> str:
    """The start-up line's word on cores: workers beyond them take turns on a core, and
    each turn costs (measured in NOTES.md: about 10% more CPU per 2 MiB hit, two on one)."""
    if workers <= cores:
        return f" on {cores} usable core{'s' * (cores != 1)}"
    return (f"; they share {cores} usable core{'s' * (cores != 1)}, so they take turns and "
            f"each turn costs CPU (--workers auto: one per core)")


def supervise(cfg: EdgeConfig) -> int:
    """Run cfg.node.workers forked workers until SIGTERM/SIGINT; 1 if one could not start."""
    n = cfg.node.workers
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    prom = cfg.run_dir / "prometheus"
    shutil.rmtree(prom, ignore_errors=True)
    prom.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom)  # before prometheus_client is imported
    from edge.node import START_FAILED, run_node  # the preload: workers share this code

    sup = Supervisor(n, lambda i, parent: _worker(cfg, i, n, run_node, parent), START_FAILED,
                     str(prom))
    print(f"edge supervisor pid {os.getpid()}: {n} workers{cores_note(n, usable_cores())}",
          file=sys.stderr, flush=True)
    return sup.run()


def _worker(cfg: EdgeConfig, index: int, workers: int, run_node: Callable, parent: int
            ) -> NoReturn:
    """A forked worker's whole life; it ends with os._exit (never returns into the parent's
    stack). It also ends if the supervisor dies, instead of holding the port alone."""
    import uvloop

    rc = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)  # run_node installs the loop's own handlers
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died before the line above (it may be
            # pid 1 itself, as a container's entrypoint: compare with its pid, not with 1)
            os._exit(1)
        rc = uvloop.run(run_node(cfg, index, workers))
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc if isinstance(rc, int) else 1)


class Supervisor:
    """Fork, reap, restart with backoff, stop. No thread and no event loop (forking from
    either is unsafe): it sleeps in select() on a self-pipe that the signal handlers wake
    (SIGCHLD: a worker exited; SIGTERM/SIGINT: stop)."""

    def __init__(self, workers: int, body: Callable[[int, int], NoReturn], start_failed: int,
                 prom_dir: str) -> None:
        self.n = workers
        self.body = body
        self.start_failed = start_failed
        self.prom_dir = prom_dir
        self.pids: dict[int, int] = {}  # pid -> worker index
        self.started: dict[int, float] = {}  # worker index -> when it was last forked
        self.failures: dict[int, int] = {}  # worker index -> quick exits in a row
        self.due: dict[int, float] = {}  # worker index -> when to fork it again
        self.stopping = False
        self.failed = False
        self._wake = (-1, -1)

    def run(self) -> int:
        r, w = self._wake = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # (a handler, so it wakes the pipe)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            for i in range(self.n):
                self._fork(i)
            while not self.stopping:
                self._reap()
                now = time.monotonic()
                for i, at in sorted(self.due.items()):
                    if now >= at and not self.stopping:
                        del self.due[i]
                        self._fork(i)
                if not self.stopping:
                    self._sleep(max(0.0, min(self.due.values()) - now) if self.due else None)
            self._stop()
        finally:
            signal.set_wakeup_fd(-1)
            os.close(r)
            os.close(w)
        return 1 if self.failed else 0

    def _sleep(self, timeout: float | None) -> None:
        """Until a signal arrives (or timeout): the wakeup fd gets a byte per signal."""
        r = self._wake[0]
        select.select([r], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(r, 512):
                pass

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True
        for pid in list(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _fork(self, i: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            for fd in self._wake:
                os.close(fd)
            self.body(i, parent)  # exits the process
        self.pids[pid] = i
        self.started[i] = time.monotonic()

    def _reap(self) -> None:
        """Collect every exited worker; schedule restarts (or stop, if one cannot start)."""
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # none left to wait for: the ones we track are gone
                for pid, i in list(self.pids.items()):
                    del self.pids[pid]
                    self._exited(pid, i, -1)
                return
            if pid == 0:
                return
            i = self.pids.pop(pid, None)
            if i is not None:
                self._exited(pid, i, os.waitstatus_to_exitcode(status))

    def _exited(self, pid: int, i: int, rc: int) -> None:
        with contextlib.suppress(Exception):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self.prom_dir)
        if self.stopping:
            return
        if rc == self.start_failed:  # port taken, cache dir unusable...: retrying will not help
            print(f"edge supervisor: worker {i} could not start; stopping", file=sys.stderr,
                  flush=True)
            self.failed = True
            self._on_signal(signal.SIGTERM, None)
            return
        quick = time.monotonic() - self.started.get(i, 0.0) <= 30
        self.failures[i] = self.failures.get(i, 0) + 1 if quick else 0
        delay = RESTART_BACKOFF[min(self.failures[i], len(RESTART_BACKOFF) - 1)]
        print(f"edge supervisor: worker {i} exited ({rc}); restarting in {delay}s",
              file=sys.stderr, flush=True)
        self.due[i] = time.monotonic() + delay

    def _stop(self) -> None:
        """SIGTERM went to every worker; wait for them, SIGKILL what lingers."""
        deadline = time.monotonic() + STOP_GRACE
        self._reap()
        while self.pids and time.monotonic() < deadline:
            self._sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            self._reap()
        for pid in list(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while self.pids:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self.pids.pop(pid, None)
