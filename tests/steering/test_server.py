"""The HTTP front end against real sockets: stand-in edges, a real steering server."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from contracts.steer import SteerResponse
from contracts.tokens import TOKEN_PARAM, TokenResult, verify
from steering.server import SteeringServer
from steering.settings import SteeringSettings
from tests.steering.conftest import StandInEdge, make_fleet
from tests.steering.test_signing import verify_cloudfront

LONDON_IP, NYC_IP, BRUSSELS_IP = "81.2.69.160", "203.0.113.5", "198.51.100.7"
SECRETS = {"k1": b"old-secret", "k2": b"current-secret"}
TITLE = "/titles/big-buck/master.m3u8"


@asynccontextmanager
async def steering(edges: dict[str, StandInEdge], mmdb: Path, cf_key: Path | None = None,
                   **overrides: Any) -> AsyncIterator[SteeringServer]:
    fleet = make_fleet({n: e.url for n, e in edges.items()},
                       {"geoip_db": str(mmdb), **overrides}, cf_key)
    srv = SteeringServer(fleet, SteeringSettings.from_dict(fleet.steering), "127.0.0.1:0")
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


class Client:
    def __init__(self, port: int, local: str = "127.0.0.1") -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(local, 0)))

    async def get(self, path: str, **kw: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.get(self.base + path, allow_redirects=False, **kw) as r:
            body = await r.read()
            ctype = r.headers.get("Content-Type", "")
            import json
            return r.status, (json.loads(body) if "json" in ctype else body), r

    async def steer(self, client_ip: str = LONDON_IP, path: str = TITLE) -> SteerResponse:
        status, doc, _ = await self.get("/v1/steer", params={"path": path,
                                                             "client_ip": client_ip})
        assert status == 200, doc
        return SteerResponse.from_dict(doc)

    async def post(self, path: str, doc: Any, token: str | None = "tok") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.post(self.base + path, json=doc, headers=headers) as r:
            return r.status, await r.json()

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def client_factory() -> AsyncIterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(port: int, local: str = "127.0.0.1") -> Client:
        c = Client(port, local)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


async def wait_until(pred: Callable[[], Awaitable[bool]], timeout: float,
                     step: float = 0.05) -> float:
    """Seconds until pred() held (polling the service as a player would); fails on timeout."""
    t0 = time.monotonic()
    while not await pred():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(step)
    return time.monotonic() - t0


async def test_steer_answer_is_ranked_signed_and_cloudfront_last(
        edges: dict[str, StandInEdge], mmdb_path: Path, cf_key: tuple, client_factory) -> None:
    key_path, public = cf_key
    async with steering(edges, mmdb_path, key_path) as srv:
        c = client_factory(srv.http_port)
        resp = await c.steer(LONDON_IP)
        kinds = [t.kind for t in resp.targets]
        assert kinds[-1] == "cloudfront" and kinds.count("cloudfront") == 1
        edge_targets = [t for t in resp.targets if t.kind == "edge"]
        assert edge_targets[0].site == "lon"
        assert len({t.site for t in edge_targets}) >= 2
        assert resp.reason["client"]["geo"] == "city" and resp.reason["choice"] == "nearest"
        assert resp.ttl == 30 and resp.urls == [t.url for t in resp.targets]
        now = time.time()
        for t in edge_targets:
            u = urlsplit(t.url)
            assert t.url.startswith(edges[t.edge].url + TITLE)
            tok = parse_qs(u.query)[TOKEN_PARAM][0]
            assert verify(tok, u.path, now, SECRETS) is TokenResult.OK
            assert verify(tok, "/titles/other/master.m3u8", now, SECRETS) is \
                TokenResult.WRONG_PATH
            assert verify(tok, u.path, now + 400, SECRETS) is TokenResult.EXPIRED
        assert verify_cloudfront(resp.urls[-1], public) >= now + 3600
        # IPv6 client, New York
        resp6 = await c.steer("2001:db8:2::77")
        assert resp6.targets[0].site == "nyc"


async def test_failover_within_3s_and_return_with_default_settings(
        edges: dict[str, StandInEdge], mmdb_path: Path, client_factory) -> None:
    async with steering(edges, mmdb_path) as srv:  # default probe 1 s, down after 2, up after 2
        c = client_factory(srv.http_port)
        first = (await c.steer()).targets[0].edge
        victim = edges[first]

        async def gone() -> bool:
            return first not in [t.edge for t in (await c.steer()).targets]

        async def back() -> bool:
            return (await c.steer()).targets[0].edge == first

        await victim.stop()
        t_out = await wait_until(gone, timeout=3.0)
        await victim.start()
        t_back = await wait_until(back, timeout=5.0)
        print(f"failover: edge unlisted after {t_out:.2f}s, back after {t_back:.2f}s")
        assert t_out < 3.0 and t_back < 5.0


async def test_redirect_mode_302_to_best_url(edges, mmdb_path: Path, client_factory) -> None:
    async with steering(edges, mmdb_path) as srv:
        c = client_factory(srv.http_port)
        best = (await c.steer(NYC_IP)).urls[0]
        status, _, r = await c.get("/v1/redirect" + TITLE, params={"client_ip": NYC_IP})
        assert status == 302 and r.headers["Location"] == best


async def test_bad_input_is_4xx_with_a_reason(edges, mmdb_path: Path, client_factory) -> None:
    async with steering(edges, mmdb_path) as srv:
        c = client_factory(srv.http_port)
        cases = [
            ("/v1/steer", {}, 400),
            ("/v1/steer", {"path": "titles/x"}, 400),
            ("/v1/steer", {"path": "/titles/../etc/passwd"}, 400),
            ("/v1/steer", {"path": "/a\x00b"}, 400),
            ("/v1/steer", {"path": TITLE, "client_ip": "300.1.1.1"}, 400),
            ("/v1/steer?path=%ff%fe", None, 400),
            ("/v1/nope", {}, 404),
            ("/v1/admin/regions", {}, 401),
        ]
        for path, params, want in cases:
            status, doc, _ = await c.get(path, params=params)
            assert status == want, (path, params, doc)
            assert doc["error"]
        async with c.session.post(c.base + "/v1/steer") as r:
            assert r.status == 405
        # raw garbage and oversized request targets over a plain socket
        for raw, want in [(b"NOT HTTP\r\n\r\n", b"400"),
                          (b"GET /v1/redirect/titles/../x HTTP/1.1\r\n\r\n", b"400"),
                          (b"GET /v1/redirect/titles/%2e%2e/x HTTP/1.1\r\n\r\n", b"400"),
                          (b"GET /v1/steer?path=/" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", b"414")]:
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.http_port)
            writer.write(raw)
            line = await asyncio.wait_for(reader.readline(), 5)
            assert line.split()[1] == want
            writer.close()


async def test_client_ip_only_from_trusted_callers_xff_only_from_trusted_proxies(
        edges, mmdb_path: Path, client_factory) -> None:
    async with steering(edges, mmdb_path) as srv:  # proxies: 127.0.0.2, callers: 127.0.0.1
        direct = client_factory(srv.http_port, "127.0.0.1")
        proxy = client_factory(srv.http_port, "127.0.0.2")
        xff = {"X-Forwarded-For": f"{LONDON_IP}, {NYC_IP}"}
        status, doc, _ = await proxy.get("/v1/steer", params={"path": TITLE}, headers=xff)
        assert status == 200 and doc["reason"]["client"] == {
            **doc["reason"]["client"], "ip": NYC_IP, "via": "xff"}
        assert doc["targets"][0]["site"] == "nyc"
        status, doc, _ = await direct.get("/v1/steer", params={"path": TITLE}, headers=xff)
        assert doc["reason"]["client"]["via"] == "peer"
        assert doc["reason"]["client"]["geo"] == "default"  # 127.0.0.1 is nowhere: eu-west
        status, doc, _ = await proxy.get("/v1/steer",
                                         params={"path": TITLE, "client_ip": NYC_IP})
        assert status == 403 and "trusted" in doc["error"]


async def test_admin_weights_70_30_over_http(edges, mmdb_path: Path, client_factory) -> None:
    async with steering(edges, mmdb_path) as srv:
        c = client_factory(srv.http_port)
        assert (await c.post("/v1/admin/weights", {"weights": {"eu-west": 70}}, token=None)
                )[0] == 401
        assert (await c.post("/v1/admin/weights", {"weights": {"eu-west": 70}}, token="bad")
                )[0] == 401
        assert (await c.post("/v1/admin/weights", {"weights": {"mars": 1}}))[0] == 404
        assert (await c.post("/v1/admin/weights", {"weights": {"eu-west": -1}}))[0] == 400
        assert (await c.post("/v1/admin/weights", [1]))[0] == 400
        status, doc = await c.post("/v1/admin/weights", {
            "weights": {"eu-west": 70, "eu-central": 30}, "ramp_seconds": 0})
        assert status == 200 and doc["eu-west"]["weight"] == 70
        n = 1000
        regions = Counter()
        for _ in range(n):
            regions[(await c.steer(BRUSSELS_IP)).reason["region"]] += 1
        assert regions["eu-west"] / n == pytest.approx(0.7, abs=0.05)


async def test_evacuation_ramps_then_restores(edges, mmdb_path: Path, client_factory) -> None:
    async with steering(edges, mmdb_path) as srv:
        c = client_factory(srv.http_port)
        status, doc = await c.post("/v1/admin/evacuate", {"region": "eu-west",
                                                           "ramp_seconds": 5})
        assert status == 200 and doc["eu-west"]["keep_target"] == 0
        early = Counter([(await c.steer()).reason["region"] for _ in range(40)])
        assert early["eu-west"] > 20  # the ramp has just begun

        async def keep_zero() -> bool:
            return (await c.get("/v1/admin/regions",
                                headers={"Authorization": "Bearer tok"}))[1]["eu-west"][
                "keep"] == 0

        await wait_until(keep_zero, timeout=8)
        late = [await c.steer() for _ in range(50)]
        assert all(t.region != "eu-west" for r in late for t in r.targets if t.kind == "edge")
        assert all(r.reason["choice"] == "spill" for r in late)
        await c.post("/v1/admin/restore", {"region": "eu-west", "ramp_seconds": 0})
        assert (await c.steer()).targets[0].site == "lon"


async def test_automatic_evacuation_and_return(edges, mmdb_path: Path, client_factory) -> None:
    async with steering(edges, mmdb_path, probe_interval=0.2, evacuate_below=0.5,
                        restore_above=0.9, ramp_seconds=0) as srv:
        c = client_factory(srv.http_port)

        async def region_of_first() -> str:
            return (await c.steer()).targets[0].region

        assert await region_of_first() == "eu-west"
        await asyncio.gather(edges["lon-1"].stop(), edges["lon-2"].stop())  # 1/3 left

        async def auto_flag() -> bool:
            return (await c.get("/v1/fleet"))[1]["regions"]["eu-west"]["auto_evacuated"]

        await wait_until(auto_flag, timeout=5)  # dub-1 alone is 1/3 of eu-west: below 0.5
        late = [await c.steer() for _ in range(30)]
        assert all(t.region != "eu-west" for r in late for t in r.targets if t.kind == "edge")
        await asyncio.gather(edges["lon-1"].start(), edges["lon-2"].start())

        async def returned() -> bool:
            return await region_of_first() == "eu-west"

        await wait_until(returned, timeout=5)


async def test_all_edges_down_is_cloudfront_only(edges, mmdb_path: Path, cf_key,
                                                 client_factory) -> None:
    async with steering(edges, mmdb_path, cf_key[0], probe_interval=0.2) as srv:
        c = client_factory(srv.http_port)
        await asyncio.gather(*(e.stop() for e in edges.values()))

        async def only_cf() -> bool:
            return [t.kind for t in (await c.steer()).targets] == ["cloudfront"]

        await wait_until(only_cf, timeout=5)
        r = await c.steer()
        assert r.reason["fallback"] is True and r.reason["site"] == "cloudfront"
        text = (await c.get("/metrics"))[1].decode()
        assert "edgecdn_steer_fallbacks_total" in text
        assert 'edgecdn_steer_edge_state{edge="lon-1",state="down"} 1.0' in text


async def test_loaded_edge_is_shed(edges, mmdb_path: Path, client_factory) -> None:
    async with steering(edges, mmdb_path, probe_interval=0.2) as srv:
        c = client_factory(srv.http_port)
        for n in ("lon-1", "lon-2"):
            edges[n].egress_bps = 0.99 * edges[n].capacity_bps

        async def shed() -> bool:
            return (await c.steer()).targets[0].site != "lon"

        await wait_until(shed, timeout=5)
        doc = (await c.get("/v1/fleet"))[1]
        states = {e["name"]: e["state"] for e in doc["edges"]}
        assert states["lon-1"] == states["lon-2"] == "shedding"


async def test_healthz_metrics_and_fleet(edges, mmdb_path: Path, client_factory) -> None:
    async with steering(edges, mmdb_path) as srv:
        c = client_factory(srv.http_port)
        await c.steer()
        status, doc, _ = await c.get("/healthz")
        assert status == 200 and doc["serving_edges"] == len(edges)
        status, text, _ = await c.get("/metrics")
        text = text.decode()
        assert 'edgecdn_steer_decisions_total{reason="nearest",site="lon"} 1.0' in text
        assert "edgecdn_steer_probe_seconds_bucket" in text
        status, doc, _ = await c.get("/v1/fleet")
        e = next(x for x in doc["edges"] if x["name"] == "lon-1")
        assert e["state"] == "up" and e["last_probe"] and e["load"] == 0


async def test_hung_edge_is_unlisted_within_3s(edges, mmdb_path: Path, client_factory) -> None:
    async with steering(edges, mmdb_path) as srv:  # default settings: probe timeout 0.4 s
        c = client_factory(srv.http_port)
        first = (await c.steer()).targets[0].edge
        edges[first].hang = asyncio.Event()  # accepts connections, never answers

        async def gone() -> bool:
            return first not in [t.edge for t in (await c.steer()).targets]

        t_out = await wait_until(gone, timeout=3.0)
        print(f"hung edge unlisted after {t_out:.2f}s")
        doc = (await c.get("/v1/fleet"))[1]
        e = next(x for x in doc["edges"] if x["name"] == first)
        assert e["state"] == "down" and "Timeout" in e["last_error"]
        edges[first].hang = None


async def test_pipelined_keepalive_requests_get_answers_in_order(edges, mmdb_path: Path) -> None:
    async with steering(edges, mmdb_path) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.http_port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /v1/steer?path=/titles/a/master.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n")
        statuses = []
        for _ in range(3):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            statuses.append(head.split()[1])
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
        assert statuses == [b"200", b"404", b"200"]
        writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")  # HTTP/1.0: answered, then closed
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200")
        writer.close()


async def test_ipv6_listener_and_ipv6_peer(edges, mmdb_path: Path) -> None:
    fleet = make_fleet({n: e.url for n, e in edges.items()}, {"geoip_db": str(mmdb_path)})
    srv = SteeringServer(fleet, SteeringSettings.from_dict(fleet.steering), "[::1]:0")
    await srv.start()
    try:
        async with aiohttp.ClientSession() as s, s.get(
                f"http://[::1]:{srv.http_port}/v1/steer",
                params={"path": TITLE, "client_ip": NYC_IP}) as r:  # ::1 is a trusted caller
            doc = await r.json()
        assert r.status == 200 and doc["targets"][0]["site"] == "nyc"
    finally:
        await srv.stop()


async def test_admin_state_survives_a_restart(edges, mmdb_path: Path, tmp_path: Path,
                                              client_factory) -> None:
    state = tmp_path / "state.json"
    async with steering(edges, mmdb_path, state_file=str(state)) as srv:
        c = client_factory(srv.http_port)
        assert (await c.post("/v1/admin/evacuate", {"region": "eu-west",
                                                     "ramp_seconds": 0}))[0] == 200
        assert (await c.post("/v1/admin/weights", {"weights": {"us-east": 5}}))[0] == 200
    async with steering(edges, mmdb_path, state_file=str(state)) as srv:
        c = client_factory(srv.http_port)
        regions = (await c.get("/v1/admin/regions", headers={"Authorization": "Bearer tok"}))[1]
        assert regions["eu-west"]["keep"] == 0 and regions["eu-west"]["evacuated"]
        assert regions["us-east"]["weight"] == 5
        assert (await c.steer()).targets[0].region != "eu-west"
