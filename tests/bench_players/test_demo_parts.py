"""The demo's parts that can be checked quickly: process cleanup and the generated fleet."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap

import maxminddb

from bench.demo import Processes
from bench.fleetgen import CLIENTS, generate
from contracts.fleet import load_fleet
from tests.conftest import ROOT


def _gone(pid: int, timeout: float = 5.0) -> bool:
    """True once pid has exited (pidfd becomes readable: an event, not a sleep loop)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


SPAWNER = [sys.executable, "-c", textwrap.dedent("""
    import subprocess, sys, time
    kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print(kid.pid, flush=True)
    time.sleep(60)
""")]


def test_stop_all_kills_whole_groups_even_paused_ones(tmp_path):
    procs = Processes(tmp_path)
    a = procs.start("a", SPAWNER)
    b = procs.start("b", [sys.executable, "-c", "import time; time.sleep(60)"])
    os.kill(b.pid, signal.SIGSTOP)
    # the grandchild's pid is in a's log once a has started it
    log = tmp_path / "a.log"
    while not log.read_text().strip():
        assert a.poll() is None
        os.sched_yield()
    grandchild = int(log.read_text().split()[0])
    procs.stop_all(grace=1.0)
    assert a.poll() is not None and b.poll() is not None
    assert _gone(grandchild)


def test_ctrl_c_and_sigterm_clean_up_every_child(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from bench.demo import Processes, install_signal_handlers
        install_signal_handlers()
        procs = Processes(Path({str(tmp_path)!r}))
        try:
            kids = [procs.start(f"k{{i}}", [sys.executable, "-c", "import time; time.sleep(60)"])
                    for i in range(3)]
            print(" ".join(str(k.pid) for k in kids), flush=True)
            time.sleep(60)
        finally:
            procs.stop_all(grace=1.0)
    """)
    for sig in (signal.SIGINT, signal.SIGTERM):
        p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             stderr=subprocess.DEVNULL)
        kids = [int(x) for x in p.stdout.readline().split()]
        assert len(kids) == 3
        p.send_signal(sig)
        p.wait(10)
        assert all(_gone(k) for k in kids), sig


def test_generated_fleet_is_valid_and_its_geo_places_clients_near_their_sites(tmp_path):
    from edge.config import load_config
    from steering.settings import SteeringSettings
    from steering.signing import load_private_key

    lay = generate(tmp_path, "http://127.0.0.1:9", "bkt")
    fleet = load_fleet(lay.fleet)
    assert [r.name for r in fleet.regions] == ["eu-west", "us-east"]
    assert [len(s.edges) for s in fleet.sites] == [2, 2, 2, 2]
    assert len({e.url for e in fleet.edges} | {lay.steering_url, lay.fault_proxy_url}) == 10
    SteeringSettings.from_dict(fleet.steering)
    load_private_key(fleet.cloudfront.private_key_path)
    for e in lay.edges:
        cfg = load_config(e.config)
        assert cfg.node.name == e.name and cfg.tokens.required
        assert cfg.origin.endpoint_url == lay.fault_proxy_url
    with maxminddb.open_database(str(lay.mmdb)) as db:
        for prefix, _label, lat, lon, cc, _w in CLIENTS:
            rec = db.get(prefix.split("/")[0].rsplit(".", 1)[0] + ".77")
            assert rec["location"] == {"latitude": lat, "longitude": lon}
            assert rec["country"]["iso_code"] == cc
