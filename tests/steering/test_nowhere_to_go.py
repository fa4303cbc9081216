"""Start-up and traffic with nowhere to go, against real sockets: a fresh steering process
whose edges are still starting, the only region evacuated (with and without CloudFront),
and every edge down without CloudFront (503, not an empty list)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from contracts.fleet import parse_fleet
from contracts.steer import SteerResponse
from steering.server import SteeringServer
from steering.settings import SteeringSettings
from tests.steering.conftest import StandInEdge, fleet_doc, write_fleet_toml
from tests.steering.test_cli import start_steer
from tests.steering.test_server import LONDON_IP, TITLE, Client, wait_until

WEST = {"lon-1", "lon-2", "dub-1"}


def west_only(edges: dict[str, StandInEdge], steering: dict[str, Any],
              cf_key: Path | None = None) -> dict[str, Any]:
    """The test fleet cut down to its one region eu-west (nowhere to spill to)."""
    doc = fleet_doc({n: e.url for n, e in edges.items()}, steering, cf_key)
    doc["regions"] = [r for r in doc["regions"] if r["name"] == "eu-west"]
    return doc


@asynccontextmanager
async def west_steering(edges: dict[str, StandInEdge], mmdb: Path, cf_key: Path | None = None,
                        **overrides: Any) -> AsyncIterator[tuple[SteeringServer, Client]]:
    fleet = parse_fleet(west_only(edges, {"geoip_db": str(mmdb), **overrides}, cf_key))
    srv = SteeringServer(fleet, SteeringSettings.from_dict(fleet.steering), "127.0.0.1:0")
    await srv.start()
    c = Client(srv.http_port)
    try:
        yield srv, c
    finally:
        await c.close()
        await srv.stop()


async def test_fresh_process_answers_with_edges_as_soon_as_its_edges_are_up(
        edges: dict[str, StandInEdge], mmdb_path: Path, tmp_path: Path) -> None:
    """Steering started before its edges are ready (one region, no CloudFront, a 30 s ramp):
    while nothing is up it says 503 with a reason; the very first answers once the probes see
    the edges up list them, at full share (no automatic evacuation, no ramp from 0)."""
    for n in WEST:
        edges[n].status = "starting"
    doc = west_only(edges, {"geoip_db": str(mmdb_path), "probe_interval": 0.2,
                            "ramp_seconds": 30})
    proc, ready = await start_steer(write_fleet_toml(tmp_path / "fleet.toml", doc))
    base = f"http://127.0.0.1:{ready['http_port']}"
    try:
        async with aiohttp.ClientSession() as s:
            async def steer() -> tuple[int, Any]:
                async with s.get(base + "/v1/steer",
                                 params={"path": TITLE, "client_ip": LONDON_IP}) as r:
                    return r.status, await r.json()

            status, body = await steer()
            assert status == 503 and "no edge is up" in body["error"]
            for n in WEST:
                edges[n].status = "ok"
            answers: list[tuple[int, Any]] = []

            async def served() -> bool:
                answers.append(await steer())
                return answers[-1][0] == 200

            await wait_until(served, timeout=5, step=0.02)
            for _ in range(20):
                answers.append(await steer())
            first_ok = next(i for i, (st, _) in enumerate(answers) if st == 200)
            for st, body in answers[first_ok:]:
                assert st == 200
                resp = SteerResponse.from_dict(body)
                assert resp.targets and resp.targets[0].site == "lon"
                assert resp.reason["choice"] == "nearest" and not resp.reason["fallback"]
            async with s.get(base + "/v1/fleet") as r:
                west = (await r.json())["regions"]["eu-west"]
            assert west["keep"] == 1 and not west["auto_evacuated"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_evacuating_the_only_region_without_cloudfront_keeps_serving_from_it(
        edges: dict[str, StandInEdge], mmdb_path: Path) -> None:
    async with west_steering(edges, mmdb_path) as (_, c):
        status, doc = await c.post("/v1/admin/evacuate", {"region": "eu-west",
                                                           "ramp_seconds": 0})
        assert status == 200 and doc["eu-west"]["keep"] == 0
        for _ in range(20):
            r = await c.steer(LONDON_IP)
            assert r.reason["choice"] == "held" and r.reason["region"] == "eu-west"
            assert [t.kind for t in r.targets] == ["edge"] * len(r.targets)
            assert r.targets[0].site == "lon" and {t.edge for t in r.targets} <= WEST
        status, _, resp = await c.get("/v1/redirect" + TITLE, params={"client_ip": LONDON_IP})
        loc = resp.headers["Location"]
        assert status == 302 and any(loc.startswith(edges[n].url + TITLE) for n in WEST)


async def test_evacuating_the_only_region_with_cloudfront_goes_to_cloudfront(
        edges: dict[str, StandInEdge], mmdb_path: Path, cf_key) -> None:
    async with west_steering(edges, mmdb_path, cf_key[0]) as (_, c):
        assert (await c.steer(LONDON_IP)).targets[0].site == "lon"
        assert (await c.post("/v1/admin/evacuate", {"region": "eu-west",
                                                     "ramp_seconds": 0}))[0] == 200
        for _ in range(20):
            r = await c.steer(LONDON_IP)
            assert [t.kind for t in r.targets] == ["cloudfront"]
            assert r.reason["fallback"] is True and r.reason["site"] == "cloudfront"
        status, _, resp = await c.get("/v1/redirect" + TITLE, params={"client_ip": LONDON_IP})
        assert status == 302 and "cloudfront.net" in resp.headers["Location"]


async def test_all_edges_down_without_cloudfront_is_503_with_a_reason(
        edges: dict[str, StandInEdge], mmdb_path: Path) -> None:
    async with west_steering(edges, mmdb_path, probe_interval=0.2) as (_, c):
        assert (await c.steer(LONDON_IP)).targets
        await asyncio.gather(*(edges[n].stop() for n in WEST))

        async def unavailable() -> bool:
            return (await c.get("/v1/steer", params={"path": TITLE,
                                                     "client_ip": LONDON_IP}))[0] == 503

        await wait_until(unavailable, timeout=5)
        status, doc, resp = await c.get("/v1/steer", params={"path": TITLE,
                                                             "client_ip": LONDON_IP})
        assert status == 503 and "no edge is up" in doc["error"]
        assert "CloudFront" in doc["error"] and resp.headers["Retry-After"] == "1"
        assert resp.headers["Cache-Control"] == "no-store"
        status, doc, _ = await c.get("/v1/redirect" + TITLE, params={"client_ip": LONDON_IP})
        assert status == 503 and "no edge is up" in doc["error"]
        status, health, _ = await c.get("/healthz")
        assert status == 200 and health["status"] == "degraded"
        assert health["serving_edges"] == 0
