"""/proc stat parsing and process-tree CPU accounting."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from bench import procstat

LINE = ("4242 (my (odd) proc) S 17 4242 4242 0 -1 4194560 100 0 0 0 "
        "31 7 5 2 20 0 1 0 12345 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 "
        "0 0 0 0 0")


def test_parse_stat_handles_parentheses_and_spaces_in_comm() -> None:
    st = procstat.parse_stat(LINE)
    assert (st.pid, st.comm, st.state, st.ppid) == (4242, "my (odd) proc", "S", 17)
    assert (st.utime, st.stime, st.cutime, st.cstime) == (31, 7, 5, 2)
    assert st.ticks == 45


def test_parse_stat_reads_our_own_process() -> None:
    st = procstat.parse_stat(Path(f"/proc/{os.getpid()}/stat").read_text())
    assert st.pid == os.getpid() and st.ppid == os.getppid()


def fake_proc(root: Path, rows: list[tuple[int, int, int]]) -> Path:
    """A /proc-like dir: (pid, ppid, ticks as utime) per process."""
    for pid, ppid, ticks in rows:
        d = root / str(pid)
        d.mkdir()
        (d / "stat").write_text(f"{pid} (p{pid}) S {ppid} 0 0 0 0 0 0 0 0 0 {ticks} 1 2 3 0 0")
    (root / "self").mkdir()
    (root / "cpuinfo").write_text("")
    return root


def test_tree_sums_root_and_all_descendants_only(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, [(1, 0, 1000), (10, 1, 10), (11, 10, 20), (12, 10, 30),
                                (13, 12, 40), (20, 1, 500)])
    assert sorted(procstat.tree_pids(10, proc)) == [10, 11, 12, 13]
    # each process (no schedstat here: its ticks): utime + stime(1) + cutime(2) + cstime(3)
    tick_ns = 1_000_000_000 // procstat.CLK_TCK
    assert procstat.tree_cpu_ns(10, proc) == ((10 + 20 + 30 + 40) + 4 * 6) * tick_ns
    assert procstat.tree_cpu_ns(99, proc) == 0


def test_tree_cpu_counts_a_child_that_burnt_cpu_and_was_reaped() -> None:
    # the parent burns nothing itself; a child spins ~0.3 s of CPU, exits and is reaped
    code = ("import os,sys,time\n"
            "pid=os.fork()\n"
            "if pid==0:\n"
            "    t=time.process_time()\n"
            "    while time.process_time()-t<0.3: pass\n"
            "    os._exit(0)\n"
            "os.waitpid(pid,0)\n"
            "print('reaped',flush=True)\n"
            "sys.stdin.read()\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "reaped"
        assert procstat.tree_cpu_ns(p.pid) / 1e9 >= 0.25
    finally:
        p.communicate("")


def test_parse_cpu_line_counts_everything_but_idle_and_iowait() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    busy, total = procstat.parse_cpu_line("cpu0 100 5 50 1000 20 3 2 1 7 0")
    assert total == 100 + 5 + 50 + 1000 + 20 + 3 + 2 + 1  # guest time is already in user
    assert busy == total - 1000 - 20


def test_cpu_busy_ticks_grows_while_we_spin_on_our_core() -> None:
    import time

    cpu = sorted(os.sched_getaffinity(0))[0]
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        before = procstat.cpu_busy_ticks(cpu)
        t = time.process_time()
        while time.process_time() - t < 0.2:
            pass
        assert procstat.cpu_busy_ticks(cpu) - before >= 0.15 * procstat.CLK_TCK
    finally:
        os.sched_setaffinity(0, old)


@contextlib.contextmanager
def _child(code: str) -> Iterator[tuple[int, float]]:
    """Run ``code`` in a child Python; yield its pid and the number it prints first, while
    it waits on stdin (so it is still alive when measured)."""
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        yield p.pid, float(p.stdout.readline())
    finally:
        p.communicate("")


def test_tree_cpu_ns_counts_every_thread_of_a_process_exactly() -> None:
    """Two threads spin 0.15 s each and stay alive: the tree's CPU is their on-CPU time to
    the millisecond, not 10 ms ticks."""
    code = ("import sys,threading,time\n"
            "done=threading.Barrier(3); hold=threading.Event()\n"
            "def spin():\n"
            "    t=time.thread_time()\n"
            "    while time.thread_time()-t<0.15: pass\n"
            "    done.wait(); hold.wait()\n"
            "ts=[threading.Thread(target=spin) for _ in range(2)]\n"
            "[t.start() for t in ts]; done.wait()\n"
            "print(time.process_time(),flush=True)\n"
            "sys.stdin.read(); hold.set()\n")
    with _child(code) as (pid, own):
        ns = procstat.tree_cpu_ns(pid)
    assert own >= 0.3
    assert abs(ns / 1e9 - own) < 0.005  # the same clock, read a moment later


def test_tree_cpu_ns_sees_a_live_spinning_descendant() -> None:
    code = ("import os,sys,time\n"
            "pid=os.fork()\n"
            "if pid==0:\n"
            "    t=time.process_time()\n"
            "    while time.process_time()-t<0.2: pass\n"
            "    print(time.process_time(),flush=True)\n"
            "    sys.stdin.read(); os._exit(0)\n"
            "os.waitpid(pid,0)\n")
    with _child(code) as (pid, child_cpu):
        ns = procstat.tree_cpu_ns(pid)
    assert child_cpu <= ns / 1e9 < child_cpu + 0.25  # plus the parent's start-up


def test_tree_cpu_ns_falls_back_to_ticks_without_schedstat(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, [(1, 0, 1000), (10, 1, 10), (11, 10, 20)])
    tick_ns = 1_000_000_000 // procstat.CLK_TCK
    # utime + stime(1) live, cutime(2) + cstime(3) reaped, per process
    assert procstat.tree_cpu_ns(10, proc) == ((10 + 1) + (20 + 1) + 2 * 5) * tick_ns


def test_settle_waits_for_a_whole_quiet_window_and_returns_the_cpu_then() -> None:
    ms = 1_000_000
    readings = iter([0, 300 * ms, 325 * ms, 335 * ms, 336 * ms, 999 * ms])
    slept: list[float] = []
    got = procstat.settle(1, window=1.0, quiet=0.02, read=lambda pid: next(readings),
                          sleep=slept.append)
    # 300 ms, 25 ms busy in the first two windows; 10 ms (1%) is quiet
    assert got == 335 * ms and slept == [1.0, 1.0, 1.0]
    # from a reading the caller just took: the same windows, one read fewer
    readings = iter([325 * ms, 335 * ms, 999 * ms])
    slept.clear()
    got = procstat.settle(1, window=1.0, quiet=0.02, since=300 * ms,
                          read=lambda pid: next(readings), sleep=slept.append)
    assert got == 335 * ms and slept == [1.0, 1.0]


def test_settle_gives_up_after_max_s_with_the_last_reading() -> None:
    n = iter(range(0, 10**12, 10**9))  # a full core busy, always
    slept: list[float] = []
    got = procstat.settle(1, window=0.5, max_s=2.0, read=lambda pid: next(n), sleep=slept.append)
    assert slept == [0.5] * 4 and got == 4 * 10**9


def test_settle_counts_the_work_a_real_process_does_after_its_load() -> None:
    """A child that starts 0.3 s of work a moment after we last looked (deferred work, due
    within a window, as a server's next tick is): settle returns only once that work is
    done, and its CPU is in the reading."""
    code = ("import sys,time\n"
            "print(0, flush=True)\n"
            "time.sleep(0.2)\n"
            "t=time.process_time()\n"
            "while time.process_time()-t<0.3: pass\n"
            "sys.stdin.read()\n")
    with _child(code) as (pid, _):
        start = procstat.tree_cpu_ns(pid)
        got = procstat.settle(pid, window=0.5)
        assert (got - start) / 1e9 >= 0.29  # the whole 0.3 s burst, not a slice of it
        assert procstat.tree_cpu_ns(pid) - got < 0.02e9  # and quiet since


def test_tree_usage_sums_ticks_and_every_thread_s_switches(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, [(1, 0, 1000), (10, 1, 10), (11, 10, 20)])
    for pid, tids in ((10, (10, 12)), (11, (11,))):
        for tid in tids:
            d = proc / str(pid) / "task" / str(tid)
            d.mkdir(parents=True)
            (d / "status").write_text(f"Name:\tp\nvoluntary_ctxt_switches:\t{tid}\n"
                                      f"nonvoluntary_ctxt_switches:\t{tid // 10}\n")
    u = procstat.tree_usage(10, proc)
    # utime + cutime(2), stime(1) + cstime(3), per process; switches of threads 10, 12, 11
    assert u == procstat.Usage(10 + 2 + 20 + 2, 2 * (1 + 3), 10 + 12 + 11, 1 + 1 + 1)
    assert u - procstat.Usage(1, 1, 1, 1) == procstat.Usage(33, 7, 32, 2)


def test_tree_usage_counts_a_real_child_s_blocks_and_user_time() -> None:
    """A child that waits on a pipe 50 times blocks at least 50 times; one that spins shows
    its time as user time."""
    code = ("import os,sys,time\n"
            "r,w=os.pipe()\n"
            "pid=os.fork()\n"
            "if pid==0:\n"
            "    for _ in range(50): time.sleep(0.002); os.write(w,b'x')\n"
            "    os._exit(0)\n"
            "for _ in range(50): os.read(r,1)\n"
            "os.waitpid(pid,0)\n"
            "t=time.perf_counter()\n"  # (vDSO: user time; process_time is a syscall)
            "while time.perf_counter()-t<0.3: pass\n"
            "print(0,flush=True)\n"
            "sys.stdin.read()\n")
    with _child(code) as (pid, _):
        u = procstat.tree_usage(pid)
    assert u.voluntary >= 50
    assert u.user_ticks >= 0.15 * procstat.CLK_TCK and u.user_ticks > u.sys_ticks
