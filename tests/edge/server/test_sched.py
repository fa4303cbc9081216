"""--workers N: workers run SCHED_BATCH with a long scheduler slice (edge.sched), in their own
processes only, and the slice can be set back to the kernel's default."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import free_port
from tests.edge.server.conftest import EdgeProcess

PROBE = """
import os, sys
from edge.sched import set_batch
print(set_batch(float(sys.argv[1])))
print(os.sched_getscheduler(0))
sched = open(f"/proc/self/sched").read()
print(next((l.split(":")[1].strip() for l in sched.splitlines() if l.startswith("se.slice")), ""))
"""


def _probe(slice_ms: float) -> tuple[str, int, str]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(slice_ms)], capture_output=True,
                         text=True, check=True, timeout=30).stdout.splitlines()
    return out[0], int(out[1]), out[2]


def _default_slice() -> str:
    out = subprocess.run([sys.executable, "-c", PROBE.replace("print(set_batch(float(sys.argv[1])))",
                                                              "print('none')"), "0"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return out.splitlines()[2]


def test_set_batch_applies_the_slice_the_kernel_reports():
    said, policy, kernel_slice = _probe(20)
    assert policy == os.SCHED_BATCH
    if said == "batch, slice 20 ms":  # Linux 6.12+: the kernel reports what it took
        assert kernel_slice == "20000000"
    else:
        assert said == "batch" and kernel_slice == _default_slice()
    said, policy, kernel_slice = _probe(1000)  # beyond the kernel's bound: clamped, not refused
    assert policy == os.SCHED_BATCH
    if said.startswith("batch, slice"):
        assert said == "batch, slice 100 ms" and kernel_slice == "100000000"


def test_slice_zero_keeps_the_kernels_default():
    said, policy, kernel_slice = _probe(0)
    assert (said, policy) == ("batch", os.SCHED_BATCH)
    assert kernel_slice == _default_slice()


def test_workers_run_batch_with_the_configured_slice(origin, edge_procs, tmp_path):
    port = free_port()
    e = EdgeProcess(["--origin", origin.url, "--listen", f"127.0.0.1:{port}", "--cache-dir",
                     str(tmp_path / "c"), "--access-log", "", "--workers", "2",
                     "--worker-slice-ms", "12.5"])
    edge_procs.append(e)
    lines = e.wait_ready(2)
    for line in lines:
        assert " scheduling batch" in line, line
        pid = int(line.split(" pid ")[1].split()[0])
        assert os.sched_getscheduler(pid) == os.SCHED_BATCH
        if "slice 12.5 ms" in line:
            sched = open(f"/proc/{pid}/sched").read()
            assert "12500000" in next(x for x in sched.splitlines() if x.startswith("se.slice"))
    assert os.sched_getscheduler(e.proc.pid) == os.SCHED_OTHER  # the supervisor is left alone
    assert e.term() == 0


def test_one_worker_is_left_to_the_kernel(origin, edge_procs, tmp_path):
    port = free_port()
    e = EdgeProcess(["--origin", origin.url, "--listen", f"127.0.0.1:{port}", "--cache-dir",
                     str(tmp_path / "c"), "--access-log", ""])
    edge_procs.append(e)
    line, = e.wait_ready(1)
    assert "scheduling" not in line
    assert os.sched_getscheduler(e.proc.pid) == os.SCHED_OTHER
    assert e.term() == 0
