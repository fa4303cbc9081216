"""How many cores the edge may use, for ``--workers auto``: the CPU affinity (taskset, a
cpuset) and, in a container, the cgroup's CPU quota, whichever is smaller. A pod limited to
2 CPUs on a 64-core host that started 64 workers would have them take turns all day (Go's
automaxprocs and the JVM's container support read the same files)."""

from __future__ import annotations

import math
import os
from pathlib import Path


def affinity_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def quota_cores(proc_cgroup: Path = Path("/proc/self/cgroup"),
                root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """ceil(quota / period) of this process's cgroup (v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None when unlimited or unreadable."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        # inside a container without a cgroup namespace the listed path is the host's while
        # the mount is the container's own cgroup: then its root holds the limit
        if controllers == "":  # v2: one unified hierarchy
            for d in (root / rel, root):
                n = _v2(d)
                if n is not None:
                    return n
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's hierarchy
            for d in (root / controllers / rel, root / "cpu" / rel, root / controllers,
                      root / "cpu"):
                n = _v1(d)
                if n is not None:
                    return n
    return None


def _v2(d: Path) -> int | None:
    try:
        quota, period = (d / "cpu.max").read_text().split()
        return None if quota == "max" else _ceil(int(quota), int(period))
    except (OSError, ValueError):
        return None


def _v1(d: Path) -> int | None:
    try:
        return _ceil(int((d / "cpu.cfs_quota_us").read_text()),
                     int((d / "cpu.cfs_period_us").read_text()))
    except (OSError, ValueError):
        return None


def _ceil(quota: int, period: int) -> int | None:
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def usable_cores() -> int:
    """Cores this process may run on: its affinity, capped by its cgroup's CPU quota."""
    n = affinity_cores()
    q = quota_cores()
    return min(n, q) if q is not None else n
