"""--workers N|auto: auto is one worker per core the edge may run on (its affinity, capped by
a cgroup CPU quota; not the machine's), and the supervisor says so when workers outnumber
those cores."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from contracts.config import ConfigError
from edge.config import build_config
from edge.cores import quota_cores, usable_cores
from edge.workers import cores_note
from tests.conftest import free_port
from tests.edge.server.conftest import EdgeProcess

ORIGIN = {"origin": {"url": "http://127.0.0.1:1"}}


def _workers(value) -> int:
    return build_config({**ORIGIN, "edge": {"workers": value}}).node.workers


def test_auto_is_the_cores_this_process_may_use():
    assert _workers("auto") == usable_cores() <= len(os.sched_getaffinity(0))
    assert _workers(3) == 3


@pytest.mark.parametrize("bad", [0, -1, 2.5, "two", "", True])
def test_anything_else_names_the_key(bad):
    with pytest.raises(ConfigError, match=r"edge\.workers"):
        _workers(bad)


def test_cli_takes_auto_and_reports_bad_counts_with_exit_2(capsys):
    from edgecdn.cli import main

    assert main(["edge", "--origin", "http://127.0.0.1:1", "--workers", "lots"]) == 2
    assert "edge.workers" in capsys.readouterr().err


def test_the_note_says_when_workers_take_turns():
    assert cores_note(2, 2) == " on 2 usable cores"
    assert cores_note(1, 1) == " on 1 usable core"
    assert "share 1 usable core" in cores_note(2, 1)
    assert "--workers auto" in cores_note(3, 2)


@contextlib.contextmanager
def _pinned_to_one_core() -> Iterator[None]:
    """Children started inside inherit an affinity of one core (as under taskset -c)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _start(origin, tmp_path, workers: str) -> EdgeProcess:
    with _pinned_to_one_core():
        return EdgeProcess(["--origin", origin.url, "--listen", f"127.0.0.1:{free_port()}",
                            "--cache-dir", str(tmp_path / workers), "--access-log", "",
                            "--workers", workers])


def test_a_pinned_edge_runs_one_worker_on_auto(origin, edge_procs, tmp_path):
    e = _start(origin, tmp_path, "auto")
    edge_procs.append(e)
    line, = e.wait_ready(1)
    assert "scheduling" not in line  # one worker: no supervisor, no batch scheduling
    assert not any("supervisor" in x for x in e.lines)
    assert e.term() == 0


def test_the_supervisor_says_when_workers_share_a_core(origin, edge_procs, tmp_path):
    e = _start(origin, tmp_path, "2")
    edge_procs.append(e)
    e.wait_ready(2)
    sup = [x for x in e.lines if "edge supervisor pid" in x]
    assert sup and "2 workers; they share 1 usable core" in sup[0], e.lines
    assert e.term() == 0


def _cgroup(tmp_path, listing: str, files: dict[str, str]):
    proc = tmp_path / "cgroup"
    proc.write_text(listing)
    root = tmp_path / "fs"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return quota_cores(proc, root)


@pytest.mark.parametrize("listing,files,want", [
    ("0::/kubepods/pod1\n", {"kubepods/pod1/cpu.max": "200000 100000\n"}, 2),
    ("0::/kubepods/pod1\n", {"kubepods/pod1/cpu.max": "150000 100000\n"}, 2),  # 1.5 -> 2
    ("0::/kubepods/pod1\n", {"kubepods/pod1/cpu.max": "50000 100000\n"}, 1),
    ("0::/kubepods/pod1\n", {"kubepods/pod1/cpu.max": "max 100000\n"}, None),
    ("0::/docker/abc\n", {"cpu.max": "300000 100000\n"}, 3),  # the container's own mount
    ("4:cpu,cpuacct:/docker/abc\n", {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "400000",
                                     "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000"}, 4),
    ("4:cpu,cpuacct:/docker/abc\n", {"cpu/cpu.cfs_quota_us": "100000",
                                     "cpu/cpu.cfs_period_us": "100000"}, 1),
    ("4:cpu,cpuacct:/\n", {"cpu,cpuacct/cpu.cfs_quota_us": "-1",
                           "cpu,cpuacct/cpu.cfs_period_us": "100000"}, None),
    ("4:memory:/x\n", {"memory/x/cpu.max": "100000 100000"}, None),  # not the cpu controller
    ("0::/gone\n", {}, None),
    ("garbage\n", {}, None),
])
def test_a_cgroup_quota_caps_the_cores(tmp_path, listing, files, want):
    assert _cgroup(tmp_path, listing, files) == want


def test_usable_cores_is_the_affinity_capped_by_the_quota(monkeypatch):
    from edge import cores

    monkeypatch.setattr(cores, "affinity_cores", lambda: 8)
    monkeypatch.setattr(cores, "quota_cores", lambda: 2)
    assert cores.usable_cores() == 2
    monkeypatch.setattr(cores, "quota_cores", lambda: None)
    assert cores.usable_cores() == 8
    monkeypatch.setattr(cores, "quota_cores", lambda: 16)
    assert cores.usable_cores() == 8
