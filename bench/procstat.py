"""CPU time of a server's whole process tree, read from /proc (no psutil).

A server is measured as the root process we started plus every live descendant (nginx's
worker, edgecdn's extra workers). Each process counts utime+stime+cutime+cstime: when a
child exits and is reaped, its time moves into its parent's cutime/cstime, so the tree total
stays monotonic and a before/after difference is the CPU the server burnt in between.

``tree_cpu_ns`` reads the same in nanoseconds: each live thread's on-CPU time from
/proc/<pid>/task/<tid>/schedstat (the scheduler's exact sum, where stat's utime+stime round
it to 10 ms ticks: +-1 tick per process per read is +-2-6% of a 4 s round of a server that
is 15% busy), plus reaped children's ticks as above.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat that the bench uses (times in clock ticks)."""

    pid: int
    comm: str
    state: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def ticks(self) -> int:
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> ProcStat:
    """Parse one /proc/<pid>/stat line; comm may hold spaces and parentheses."""
    lpar, rpar = text.index("("), text.rindex(")")
    pid = int(text[:lpar])
    comm = text[lpar + 1 : rpar]
    rest = text[rpar + 2 :].split()
    # rest[0] is field 3 (state); utime is field 14 -> rest[11]
    return ProcStat(
        pid=pid,
        comm=comm,
        state=rest[0],
        ppid=int(rest[1]),
        utime=int(rest[11]),
        stime=int(rest[12]),
        cutime=int(rest[13]),
        cstime=int(rest[14]),
    )


def read_all(proc: Path = Path("/proc")) -> dict[int, ProcStat]:
    """Every process's stat; processes that vanish while we read are skipped."""
    out: dict[int, ProcStat] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            out[int(entry.name)] = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
    return out


def tree(stats: dict[int, ProcStat], root: int) -> list[ProcStat]:
    """The root and all its live descendants (zombies included: their time is not yet reaped)."""
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    out: list[ProcStat] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        st = stats.get(pid)
        if st is None:
            continue
        out.append(st)
        todo.extend(children.get(pid, ()))
    return out


def thread_files(pid: int, name: str, proc: Path = Path("/proc")) -> list[str] | None:
    """The text of /proc/<pid>/task/<tid>/<name> for each live thread (threads that exit
    meanwhile are skipped); None if the process cannot be read."""
    out = []
    try:
        for task in (proc / str(pid) / "task").iterdir():
            try:
                out.append((task / name).read_text())
            except FileNotFoundError:  # a thread that just exited
                continue
    except OSError:
        return None
    return out


def process_ns(pid: int, proc: Path = Path("/proc")) -> int | None:
    """On-CPU nanoseconds of a process's live threads (schedstat), None if unreadable."""
    texts = thread_files(pid, "schedstat", proc)
    try:
        return None if texts is None else sum(int(t.split()[0]) for t in texts)
    except (ValueError, IndexError):
        return None


def tree_cpu_ns(root: int, proc: Path = Path("/proc")) -> int:
    """Total CPU nanoseconds of the tree under root: schedstat for live threads (ticks when
    a process has none readable), reaped children's ticks."""
    tick_ns = 1_000_000_000 // CLK_TCK
    total = 0
    for st in tree(read_all(proc), root):
        ns = process_ns(st.pid, proc)
        if ns is None:
            ns = (st.utime + st.stime) * tick_ns
        total += ns + (st.cutime + st.cstime) * tick_ns
    return total


@dataclass(frozen=True)
class Usage:
    """Where a tree's CPU went and how its threads left the core: user and system time in
    clock ticks (the kernel's tick-sampled split of utime/stime, reaped children included),
    voluntary switches (a thread blocked: each is a wakeup later) and involuntary ones (it
    was preempted). Live threads only for the switches."""

    user_ticks: int = 0
    sys_ticks: int = 0
    voluntary: int = 0
    involuntary: int = 0

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.user_ticks - other.user_ticks, self.sys_ticks - other.sys_ticks,
                     self.voluntary - other.voluntary, self.involuntary - other.involuntary)


def thread_switches(pid: int, proc: Path = Path("/proc")) -> tuple[int, int]:
    """(voluntary, involuntary) context switches summed over a process's live threads."""
    vol = invol = 0
    for text in thread_files(pid, "status", proc) or ():
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                vol += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                invol += int(line.split()[1])
    return vol, invol


def tree_usage(root: int, proc: Path = Path("/proc")) -> Usage:
    user = sys_ = vol = invol = 0
    for st in tree(read_all(proc), root):
        user += st.utime + st.cutime
        sys_ += st.stime + st.cstime
        v, i = thread_switches(st.pid, proc)
        vol += v
        invol += i
    return Usage(user, sys_, vol, invol)


SETTLE_WINDOW = 1.2  # s: longer than a server's housekeeping period (edgecdn ticks each 1 s)
SETTLE_QUIET = 0.02  # of one core: what counts as quiet (an idle edge worker uses ~0.1%)
SETTLE_MAX = 10.0  # s: give up waiting (a server that never goes quiet is measured anyway)


def settle(root: int, *, window: float = SETTLE_WINDOW, quiet: float = SETTLE_QUIET,
           max_s: float = SETTLE_MAX, since: int | None = None,
           read: Callable[[int], int] | None = None,
           sleep: Callable[[float], None] = time.sleep) -> int:
    """Wait until the tree under root has spent at most ``quiet`` of a core over a whole
    window, and return its CPU ns then. Work a load leaves behind (access lines formatted at
    the next tick, policy updates, metrics) is done by then, so a run measured from one
    settle to the next counts what its requests cost and nothing from the run before.
    ``since``: a reading just taken (the first window starts from it)."""
    read = read or tree_cpu_ns
    last = read(root) if since is None else since
    waited = 0.0
    while waited < max_s:
        sleep(window)
        waited += window
        now = read(root)
        if now - last <= quiet * window * 1e9:
            return now
        last = now
    return last


def tree_pids(root: int, proc: Path = Path("/proc")) -> list[int]:
    return [st.pid for st in tree(read_all(proc), root)]


def ticks_to_seconds(ticks: int, clk_tck: int = CLK_TCK) -> float:
    return ticks / clk_tck


def parse_cpu_line(line: str) -> tuple[int, int]:
    """(busy, total) ticks from one ``cpuN ...`` line of /proc/stat (idle and iowait = not busy)."""
    fields = [int(x) for x in line.split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest* are inside user
    total = sum(fields[:8])
    return total - fields[3] - (fields[4] if len(fields) > 4 else 0), total


def cpu_busy_ticks(cpu: int, stat: Path = Path("/proc/stat")) -> int:
    """Ticks core ``cpu`` has spent busy (anything but idle/iowait) since boot."""
    prefix = f"cpu{cpu} "
    for line in stat.read_text().splitlines():
        if line.startswith(prefix):
            return parse_cpu_line(line)[0]
    raise ValueError(f"no cpu{cpu} in {stat}")
