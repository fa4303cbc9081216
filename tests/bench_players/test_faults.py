"""Fault scenarios: parsed, validated, and applied to a running (stand-in) fleet."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import aiohttp
import pytest
from aiohttp import web

from bench.faultproxy import FaultProxy
from bench.faults import (
    FaultAction,
    find_edge_pid,
    load_scenario,
    parse_spec,
    validate_targets,
)
from contracts.config import ConfigError
from contracts.fleet import load_fleet
from tests.bench_players.conftest import write_fleet
from tests.bench_players.standins import StandinEdge, StandinSteering, library
from tests.bench_players.test_players import run_harness
from tests.conftest import ROOT, free_port

SCENARIO = """
[bench]
players = 7

[[faults]]
at = 30
action = "kill"
edge = "e1"

[[faults]]
at = 5
action = "origin"
mode = "slow"
rate = 0.5
delay = 0.25

[[faults]]
at = 40
action = "weights"
weights = { r1 = 70, r2 = 30 }

[[faults]]
at = 35
action = "evacuate"
region = "r1"
"""


def test_scenario_file_parses_every_action_in_time_order(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(SCENARIO)
    sc = load_scenario(p)
    assert sc.bench == {"players": 7}
    assert [(a.at, a.action, a.target) for a in sc.faults] == [
        (5, "origin", "slow"), (30, "kill", "e1"), (35, "evacuate", "r1"), (40, "weights", "")]
    assert sc.faults[0].rate == 0.5 and sc.faults[0].delay == 0.25
    assert sc.faults[3].weights == (("r1", 70.0), ("r2", 30.0))


@pytest.mark.parametrize("spec,want", [
    ("30:kill:lon-1", FaultAction(30, "kill", "lon-1")),
    ("1.5:pause:e2", FaultAction(1.5, "pause", "e2")),
    ("10:origin:fail:0.5", FaultAction(10, "origin", "fail", rate=0.5)),
    ("12:origin:slow:1:0.3", FaultAction(12, "origin", "slow", rate=1.0, delay=0.3)),
    ("40:weights:eu-west=70,us-east=30",
     FaultAction(40, "weights", weights=(("eu-west", 70.0), ("us-east", 30.0)))),
    ("30:evacuate:eu-west", FaultAction(30, "evacuate", "eu-west")),
])
def test_cli_fault_specs(spec, want):
    assert parse_spec(spec) == want


@pytest.mark.parametrize("spec", [
    "kill:e1", "x:kill:e1", "3:explode:e1", "3:kill", "3:origin:melt", "3:origin:fail:2",
    "3:weights:eu-west", "-1:kill:e1",
])
def test_bad_fault_specs_are_refused_with_a_reason(spec):
    with pytest.raises(ConfigError):
        parse_spec(spec)


def test_bad_scenario_tables_are_refused(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[[faults]]\naction = "kill"\nedge = "e1"\n')
    with pytest.raises(ConfigError, match="at"):
        load_scenario(p)
    p.write_text("[[faults]\n")
    with pytest.raises(ConfigError):
        load_scenario(p)


def test_scenario_names_must_exist_in_the_fleet(tmp_path):
    fleet = load_fleet(write_fleet(tmp_path / "f.toml", {
        "e1": ("http://127.0.0.1:1", "s1", "r1")}, "http://127.0.0.1:2"))
    validate_targets([FaultAction(1, "kill", "e1"), FaultAction(1, "evacuate", "r1")], fleet)
    with pytest.raises(ConfigError, match="no edge 'nope'"):
        validate_targets([FaultAction(1, "kill", "nope")], fleet)
    with pytest.raises(ConfigError, match="no region"):
        validate_targets([FaultAction(1, "weights", weights=(("r9", 1.0),))], fleet)


@pytest.fixture
def edge_process():
    """A stand-in edge in its own process (and process group), like a real one."""
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "tests.bench_players.standins", "edge",
                          "--name", "e1", "--listen", f"127.0.0.1:{port}"], cwd=ROOT,
                         start_new_session=True)
    deadline = time.monotonic() + 20
    import urllib.request

    while True:  # wait for the child to answer: it has no other way to tell us
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            break
        except OSError:
            if time.monotonic() > deadline or p.poll() is not None:
                p.kill()
                raise RuntimeError("stand-in edge did not start") from None
            time.sleep(0.05)
    yield p, f"http://127.0.0.1:{port}"
    if p.poll() is None:
        p.kill()
    p.wait(5)


def test_faults_are_applied_during_a_run(servers, tmp_path, edge_process):
    proc, e1_url = edge_process
    content = library()
    e2 = StandinEdge("e2", content)
    e3 = StandinEdge("e3", content)
    urls = {"e1": (e1_url, "s1", "r1"), "e2": (servers.serve(e2.app()), "s1", "r1"),
            "e3": (servers.serve(e3.app()), "s2", "r2")}
    steering = StandinSteering(urls, ["e1", "e2", "e3"])
    steer_url = servers.serve(steering.app())
    upstream = StandinEdge("origin", content)
    proxy = FaultProxy(servers.serve(upstream.app()))
    proxy_url = servers.serve(proxy.app())
    fleet = write_fleet(tmp_path / "fleet.toml", urls, steer_url,
                        f'fault_proxy = "{proxy_url}"\nrequest_timeout = 1.0')
    assert find_edge_pid("e1") == proc.pid  # found by its command line, as the CLI does
    faults = [FaultAction(0.6, "kill", "e1"), FaultAction(0.7, "evacuate", "r1"),
              FaultAction(0.8, "weights", weights=(("r1", 70.0), ("r2", 30.0))),
              FaultAction(0.9, "origin", "fail", rate=1.0, status=503)]
    rep = run_harness(fleet, content, faults, players=3, duration=2.5, speed=40, seed=3)
    assert [(e["what"], e["ok"]) for e in rep["faults"]] == [
        ("kill e1", True), ("evacuate r1", True), ("weights r1=70,r2=30", True),
        ("origin fail rate=1", True)]
    assert proc.wait(5) == -9  # SIGKILLed
    assert [(w, body) for w, body, _ in steering.admin] == [
        ("evacuate", {"region": "r1"}), ("weights", {"weights": {"r1": 70.0, "r2": 30.0}})]
    assert all(auth == "Bearer tok" for _, _, auth in steering.admin)
    assert proxy.state.mode == "fail" and proxy.state.status == 503
    # players noticed the kill and went on with the next URL; nobody failed
    assert rep["plays"]["failed"] == 0
    assert rep["sources"]["e1"]["errors"] >= 1 and rep["sources"]["e2"]["bytes"] > 0
    kill_t = rep["faults"][0]["t"]
    late = [b for b in rep["timeline"] if b["t"] >= kill_t + 1]
    assert late and all("e1" not in b["by_source"] for b in late)


def test_pause_and_resume_an_edge_process(edge_process, tmp_path):
    proc, url = edge_process
    fleet = load_fleet(write_fleet(tmp_path / "f.toml", {"e1": (url, "s1", "r1")},
                                   "http://127.0.0.1:1"))
    from bench.faults import FaultController

    async def go() -> list[tuple[bool, str]]:
        async with aiohttp.ClientSession() as http:
            ctl = FaultController(fleet, http, "http://127.0.0.1:1")
            out = [await ctl.apply(FaultAction(0, "pause", "e1"))]
            with pytest.raises(asyncio.TimeoutError):
                async with http.get(f"{url}/healthz",
                                    timeout=aiohttp.ClientTimeout(total=0.5)) as r:
                    await r.read()
            out.append(await ctl.apply(FaultAction(0, "resume", "e1")))
            async with http.get(f"{url}/healthz") as r:
                assert r.status == 200
            out.append(await ctl.apply(FaultAction(0, "kill", "nope")))
            return out

    res = asyncio.run(go())
    assert res[0][0] and res[1][0]
    assert res[2][0] is False  # unknown edge: reported, not raised


async def test_fault_proxy_modes(port):
    body = bytes(range(256)) * 2000
    upstream = web.Application()

    async def obj(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"ETag": '"abc"'})

    upstream.router.add_get("/bucket/key", obj)
    up_runner = web.AppRunner(upstream)
    await up_runner.setup()
    up_site = web.TCPSite(up_runner, "127.0.0.1", 0)
    await up_site.start()
    up_port = up_site._server.sockets[0].getsockname()[1]
    proxy = FaultProxy(f"http://127.0.0.1:{up_port}")
    runner = web.AppRunner(proxy.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def get() -> tuple[int, bytes]:
                async with http.get(f"{base}/bucket/key") as r:
                    return r.status, await r.read()

            assert await get() == (200, body)
            for mode, extra in (("fail", {"status": 502}), ("slow", {"delay": 0.3}),
                                ("reset", {})):
                async with http.post(f"{base}/_fault", json={"mode": mode, **extra}) as r:
                    assert r.status == 200
                t0 = time.monotonic()
                if mode == "fail":
                    assert (await get())[0] == 502
                elif mode == "slow":
                    assert await get() == (200, body)
                    assert time.monotonic() - t0 >= 0.3
                else:
                    with pytest.raises(aiohttp.ClientError):
                        await get()
            async with http.post(f"{base}/_fault", json={"mode": "melt"}) as r:
                assert r.status == 400
            async with http.post(f"{base}/_fault", data=b"{not json") as r:
                assert r.status == 400
            async with http.post(f"{base}/_fault", json={"mode": "ok"}) as r:
                assert r.status == 200
            assert await get() == (200, body)
            async with http.get(f"{base}/_fault") as r:
                st = await r.json()
            assert st["faulted"] == 3 and st["requests"] == 5
    finally:
        await runner.cleanup()
        await up_runner.cleanup()


def test_shipped_example_scenario_is_valid_for_the_example_fleet():
    sc = load_scenario(ROOT / "bench" / "players_scenario.example.toml")
    assert len(sc.faults) == 7 and sc.bench["players"] == 200
    validate_targets(sc.faults, load_fleet(ROOT / "configs" / "fleet.example.toml"))


def test_edge_process_found_by_the_name_inside_its_config_file(tmp_path):
    cfg = tmp_path / "edge.toml"
    cfg.write_text('[edge]\nname = "cfg-named-edge"\nlisten = "127.0.0.1:1"\n')
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "edge",
                          "--config", str(cfg)], stdin=subprocess.PIPE)
    try:
        # the child's /proc entry can lag its start on a busy machine: look until it shows
        deadline = time.monotonic() + 5
        while (found := find_edge_pid("cfg-named-edge")) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert found == p.pid
        assert find_edge_pid("other-edge") is None
    finally:
        p.stdin.close()
        p.wait(5)
