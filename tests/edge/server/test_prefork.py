"""--workers N: the supervisor forks its workers from code it has loaded once (they run it at
the same addresses), starts no thread of its own, and its workers do not outlive it."""

from __future__ import annotations

import os
import signal
import socket
import time

from tests.conftest import free_port
from tests.edge.server.conftest import EdgeProcess


def _start(origin, tmp_path, edge_procs, prefix: tuple[str, ...] = ()
           ) -> tuple[EdgeProcess, list[int], int]:
    port = free_port()
    e = EdgeProcess(["--origin", origin.url, "--listen", f"127.0.0.1:{port}", "--cache-dir",
                     str(tmp_path / "c"), "--access-log", "", "--workers", "2"], prefix=prefix)
    edge_procs.append(e)
    lines = e.wait_ready(2)
    pids = [int(line.split(" pid ")[1].split()[0]) for line in lines]
    return e, pids, port


def _libpython_base(pid: int) -> str:
    """Where the interpreter's code is mapped in pid (ASLR picks it per exec)."""
    for line in open(f"/proc/{pid}/maps"):
        if "libpython" in line or line.rstrip().endswith("/python3") or "/python3." in line:
            return line.split("-")[0]
    raise AssertionError(f"no interpreter mapping in {pid}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_are_forked_children_running_the_supervisor_s_code(origin, edge_procs,
                                                                   tmp_path):
    e, pids, _ = _start(origin, tmp_path, edge_procs)
    sup = e.proc.pid
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            assert int(f.read().split(") ")[1].split()[1]) == sup  # parent: the supervisor
        assert _libpython_base(pid) == _libpython_base(sup)
    assert len(os.listdir(f"/proc/{sup}/task")) == 1  # no thread: forking stays safe
    assert e.term() == 0
    assert not any(_alive(p) for p in pids)


def test_workers_do_not_outlive_a_killed_supervisor(origin, edge_procs, tmp_path):
    e, pids, port = _start(origin, tmp_path, edge_procs)
    os.kill(e.proc.pid, signal.SIGKILL)  # the supervisor only, not its process group
    e.proc.wait(10)
    end = time.monotonic() + 20
    while any(_alive(p) for p in pids) and time.monotonic() < end:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)
    with socket.socket() as s:  # the port is free again: nobody was left holding it
        s.bind(("127.0.0.1", port))


def test_a_supervisor_that_is_pid_1_keeps_its_workers(origin, edge_procs, tmp_path):
    """A container's entrypoint is pid 1: its workers' parent pid is 1 while it lives, which
    must not read as "the supervisor died"."""
    origin.put("/p1.ts", b"x" * 1000, headers={"Cache-Control": "max-age=60"})
    e, _, port = _start(origin, tmp_path, edge_procs,
                        prefix=("unshare", "--pid", "--fork", "--mount-proc"))
    assert any("edge supervisor pid 1:" in x for x in e.lines), e.lines
    time.sleep(0.5)  # workers that wrongly gave up would be gone by now
    for _ in range(4):  # both workers answer (SO_REUSEPORT spreads the connections)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /p1.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"x" * 1000)
    assert not any("exited" in x for x in e.lines), e.lines
    e.kill9()


def test_workers_gone_without_an_exit_status_are_still_restarted():
    """waitpid says there are no children at all while some are tracked (reaped by someone
    else): they count as exited, so they are forked again rather than silently lost. (In a
    fresh interpreter: this test process has children of its own.)"""
    import subprocess
    import sys

    code = ("import os\n"
            "from edge.workers import Supervisor\n"
            "sup = Supervisor(2, lambda i, parent: os._exit(0), start_failed=3,"
            " prom_dir='/nonexistent')\n"
            "sup.pids = {2**22 + 1: 0, 2**22 + 2: 1}\n"  # no such children
            "sup._reap()\n"
            "print(sup.pids, sorted(sup.due), sup.stopping)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.splitlines()[-1] == "{} [0, 1] False"
