"""Fleet reload (SIGHUP): validated before it replaces anything; state carried over."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import aiohttp

from contracts.fleet import load_fleet
from steering.server import SteeringServer
from steering.settings import load_settings
from tests.steering.conftest import StandInEdge, fleet_doc, write_fleet_toml
from tests.steering.test_cli import start_steer
from tests.steering.test_server import Client, wait_until


def with_paris(doc: dict, url: str) -> dict:
    doc["regions"][0]["sites"].append({"name": "par", "lat": 48.86, "lon": 2.35, "edges": [
        {"name": "par-1", "url": url}]})
    return doc


async def test_reload_adds_edges_keeps_health_and_region_state(
        edges: dict[str, StandInEdge], mmdb_path: Path, tmp_path: Path) -> None:
    urls = {n: e.url for n, e in edges.items()}
    cfg = write_fleet_toml(tmp_path / "fleet.toml",
                           fleet_doc(urls, {"geoip_db": str(mmdb_path), "probe_interval": 0.2}))
    fleet = load_fleet(cfg)
    srv = SteeringServer(fleet, load_settings(fleet.steering, fleet.source), "127.0.0.1:0")
    await srv.start()
    paris = StandInEdge("par-1")
    await paris.start()
    c = Client(srv.http_port)
    try:
        await edges["lon-1"].stop()

        async def lon1_down() -> bool:
            doc = (await c.get("/v1/fleet"))[1]
            return next(e for e in doc["edges"] if e["name"] == "lon-1")["state"] == "down"

        await wait_until(lon1_down, timeout=5)
        assert (await c.post("/v1/admin/evacuate", {"region": "us-east", "ramp_seconds": 0})
                )[0] == 200
        write_fleet_toml(cfg, with_paris(fleet_doc(urls, {
            "geoip_db": str(mmdb_path), "probe_interval": 0.2, "response_ttl": 7}), paris.url))
        assert await srv.reload() == ""
        doc = (await c.get("/v1/fleet"))[1]
        states = {e["name"]: e["state"] for e in doc["edges"]}
        assert states["par-1"] == "up" and states["lon-1"] == "down"
        assert doc["regions"]["us-east"]["evacuated"] is True
        assert (await c.steer()).ttl == 7
        # a file that does not validate changes nothing
        cfg.write_text("[steering]\nshed_low = 5\n")
        assert "no regions" in await srv.reload()
        write_fleet_toml(cfg, fleet_doc(urls, {"shed_low": 5}))
        assert "shed_low" in await srv.reload()
        r = await c.steer()
        assert r.ttl == 7 and "lon-1" not in [t.edge for t in r.targets]
    finally:
        await c.close()
        await paris.stop()
        await srv.stop()


async def test_sighup_reloads_a_running_process(edges: dict[str, StandInEdge],
                                                tmp_path: Path) -> None:
    urls = {n: e.url for n, e in edges.items()}
    cfg = write_fleet_toml(tmp_path / "fleet.toml", fleet_doc(urls))
    proc, ready = await start_steer(cfg)
    url = f"http://127.0.0.1:{ready['http_port']}/v1/steer?path=/titles/a/master.m3u8"
    try:
        async with aiohttp.ClientSession() as s:
            async def ttl() -> int:
                async with s.get(url) as r:
                    return json.loads(await r.read())["ttl"]

            assert await ttl() == 30
            write_fleet_toml(cfg, fleet_doc(urls, {"response_ttl": 9}))
            proc.send_signal(signal.SIGHUP)
            t0 = time.monotonic()
            while await ttl() != 9:
                assert time.monotonic() - t0 < 10, "reload not applied"
                await asyncio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
