"""Audit: hostile and malformed input to the steering service, through real sockets."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest
from aiohttp import web

from steering.server import SteeringServer
from tests.steering.conftest import DNS_NAME, EDGE_LAYOUT, StandInEdge
from tests.steering.test_server import LONDON_IP, NYC_IP, TITLE, Client, steering, wait_until

NAME = DNS_NAME
AUTH = {"Authorization": "Bearer tok"}


class RawEdge(StandInEdge):
    """A stand-in edge whose /healthz body can be replaced by arbitrary bytes."""

    raw: bytes | None = None
    raw_status: int = 200

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.raw is None:
            return await super()._healthz(request)
        self.probes += 1
        return web.Response(body=self.raw, status=self.raw_status,
                            content_type="application/json")


@pytest.fixture
async def raw_edges() -> AsyncIterator[dict[str, RawEdge]]:
    names = [n for *_, ns in EDGE_LAYOUT for n in ns]
    out = {n: RawEdge(n, f"127.0.1.{i + 1}") for i, n in enumerate(names)}
    await asyncio.gather(*(e.start() for e in out.values()))
    yield out
    await asyncio.gather(*(e.stop() for e in out.values()))


@asynccontextmanager
async def serving(edges: dict[str, Any], mmdb: Path, cf_key: Path | None = None,
                  local: str = "127.0.0.1", **overrides: Any
                  ) -> AsyncIterator[tuple[SteeringServer, Client]]:
    async with steering(edges, mmdb, cf_key, **overrides) as srv:
        c = Client(srv.http_port, local)
        try:
            yield srv, c
        finally:
            await c.close()


async def raw_http(port: int, data: bytes, local: str = "127.0.0.1") -> tuple[int, bytes]:
    """Send raw bytes, return (status, body) of the first response."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0)), 5)
    try:
        writer.write(data)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await asyncio.wait_for(reader.readexactly(length), 5)
        return status, body
    finally:
        writer.close()


def strict_json(body: bytes) -> Any:
    """json.loads that refuses NaN/Infinity (not JSON)."""
    def bad(c: str) -> Any:
        raise ValueError(f"non-JSON constant {c}")
    return json.loads(body, parse_constant=bad)


# -- HTTP: paths and query parameters ---------------------------------------------------


async def test_steer_path_with_undecodable_percent_escape_is_400(edges, mmdb_path: Path) -> None:
    """'%25ff' decodes to the URL path '/titles/%ff/...': not UTF-8, so 400, not a rewrite."""
    async with serving(edges, mmdb_path) as (_, c):
        status, doc, _ = await c.get("/v1/steer?path=/titles/a%25ff/master.m3u8")
        assert status == 400, doc
        assert doc["error"]


async def test_redirect_path_with_undecodable_percent_escape_is_400(edges, mmdb_path: Path
                                                                    ) -> None:
    """/v1/redirect/titles/%ff%fe/...: not UTF-8, so 400 (as /v1/steer does), never a 302
    to a different, U+FFFD-mangled path."""
    async with serving(edges, mmdb_path) as (srv, _):
        status, body = await raw_http(
            srv.http_port, b"GET /v1/redirect/titles/%ff%fe/master.m3u8 HTTP/1.1\r\n"
                           b"Host: x\r\n\r\n")
        assert status == 400, body
        assert json.loads(body)["error"]


async def test_duplicate_and_odd_query_parameters(edges, mmdb_path: Path) -> None:
    """Repeated parameters: the first counts; empty keys, bare keys, '+' and escapes in keys
    are parsed, never a 500."""
    async with serving(edges, mmdb_path) as (_, c):
        status, doc, _ = await c.get(
            f"/v1/steer?path={TITLE}&path=/titles/other/x.m3u8&client_ip={NYC_IP}"
            f"&client_ip={LONDON_IP}")
        assert status == 200 and doc["path"] == TITLE
        assert doc["reason"]["client"]["ip"] == NYC_IP
        status, doc, _ = await c.get(f"/v1/steer?&&=&pa%74h={TITLE}&x")
        assert status == 200 and doc["path"] == TITLE
        status, doc, _ = await c.get("/v1/steer?path=/titles/a+b/master.m3u8")
        assert status == 200 and doc["path"] == "/titles/a b/master.m3u8"
        assert "/titles/a%20b/master.m3u8?" in doc["urls"][0]
        for q in ("path=", "path", "path=%", "path=%zz", "client_ip=1.2.3.4&path=%ff"):
            status, doc, _ = await c.get("/v1/steer?" + q)
            assert 400 <= status < 500, (q, doc)
            assert doc["error"]


async def test_long_param_and_many_params_are_4xx_not_500(edges, mmdb_path: Path) -> None:
    """A 5000-char path parameter is 414; 1500 junk parameters still answer."""
    async with serving(edges, mmdb_path) as (_, c):
        status, doc, _ = await c.get("/v1/steer?path=/" + "a" * 5000)
        assert status == 414 and doc["error"]
        junk = "&".join(f"k{i}=v" for i in range(700))
        status, doc, _ = await c.get(f"/v1/steer?{junk}&path={TITLE}")
        assert status == 200 and doc["path"] == TITLE


async def test_path_with_quotes_and_unicode_stays_valid_json_and_encoded(edges, mmdb_path: Path
                                                                          ) -> None:
    """Quotes, '<', '?', '#' and non-ASCII in a title: JSON stays valid, URLs percent-encode."""
    async with serving(edges, mmdb_path) as (_, c):
        title = '/titles/"é<\u2028>%3F%23/master.m3u8'
        status, doc, _ = await c.get("/v1/steer", params={"path": title})
        assert status == 200
        assert doc["path"] == '/titles/"é<\u2028>?#/master.m3u8'
        for u in doc["urls"]:
            assert u.isascii() and '"' not in u and "#" not in u.split("?")[0]


async def test_non_utf8_raw_bytes_in_request_target_are_4xx(edges, mmdb_path: Path) -> None:
    """Raw non-ASCII / non-UTF-8 bytes in the request line: a 4xx, and the server lives on."""
    async with serving(edges, mmdb_path) as (srv, c):
        for target in (b"/v1/steer?path=/titles/\xff/master.m3u8",
                       b"/v1/redirect/titles/\xc3\x28/master.m3u8"):
            status, _ = await raw_http(srv.http_port,
                                       b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert 400 <= status < 500, target
        assert (await c.get("/v1/steer", params={"path": TITLE}))[0] == 200


async def test_keepalive_connection_survives_a_4xx(edges, mmdb_path: Path) -> None:
    """An API-level 400 keeps the connection: the next pipelined request is answered."""
    async with serving(edges, mmdb_path) as (srv, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.http_port)
        writer.write(b"GET /v1/steer?path=nope HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /v1/steer?path=" + TITLE.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        statuses = []
        for _ in range(2):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            statuses.append(int(head.split(b" ", 2)[1]))
            n = int(next(ln for ln in head.split(b"\r\n")
                         if ln.lower().startswith(b"content-length")).split(b":")[1])
            await reader.readexactly(n)
        writer.close()
        assert statuses == [400, 200]


async def test_oversized_headers_and_body_are_rejected(edges, mmdb_path: Path) -> None:
    """Headers over 32 KiB: 431; admin body over 64 KiB: 413."""
    async with serving(edges, mmdb_path) as (srv, _):
        big = b"X-Junk: " + b"a" * 40000 + b"\r\n"
        status, _ = await raw_http(srv.http_port, b"GET /healthz HTTP/1.1\r\n" + big + b"\r\n")
        assert status == 431
        body = b'{"weights": {"eu-west": 1}, "pad": "' + b"x" * 70000 + b'"}'
        status, _ = await raw_http(
            srv.http_port, b"POST /v1/admin/weights HTTP/1.1\r\nAuthorization: Bearer tok\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert status == 413


# -- client address ---------------------------------------------------------------------


@pytest.mark.parametrize("ip,site", [
    ("[2001:db8:2::77]", "nyc"), ("::ffff:203.0.113.5", "nyc"), ("2001:db8:2::77%eth0", "nyc"),
    (" 81.2.69.160 ", "lon"), ("::", "dub"), ("0.0.0.0", "dub"),
])
async def test_client_ip_forms(edges, mmdb_path: Path, ip: str, site: str) -> None:
    """Bracketed, v4-mapped, zoned and unspecified addresses from a trusted caller
    (unspecified: the default region's centroid, nearest to dub)."""
    async with serving(edges, mmdb_path) as (_, c):
        status, doc, _ = await c.get("/v1/steer", params={"path": TITLE, "client_ip": ip})
        assert status == 200, doc
        assert doc["targets"][0]["site"] == site
        assert "%" not in doc["reason"]["client"]["ip"]


@pytest.mark.parametrize("ip", ["", "1.2.3", "1.2.3.4/24", "1.2.3.4:80", "::g", "a" * 300,
                                "1.2.3.4\x00", "' OR 1=1"])
async def test_garbage_client_ip_is_400(edges, mmdb_path: Path, ip: str) -> None:
    async with serving(edges, mmdb_path) as (_, c):
        status, doc, _ = await c.get("/v1/steer", params={"path": TITLE, "client_ip": ip})
        assert status == 400 and doc["error"], doc


async def test_xff_spoofing_rules(edges, mmdb_path: Path) -> None:
    """Untrusted peer: XFF ignored even if garbage. Trusted proxy: right-most untrusted hop,
    garbage hop is 400, a proxy-only chain answers (never 500)."""
    async with serving(edges, mmdb_path, local="127.0.0.3") as (srv, untrusted):
        status, doc, _ = await untrusted.get("/v1/steer", params={"path": TITLE},
                                             headers={"X-Forwarded-For": "garbage, ::g"})
        assert status == 200 and doc["reason"]["client"] == {
            **doc["reason"]["client"], "ip": "127.0.0.3", "via": "peer"}
        status, doc, _ = await untrusted.get("/v1/steer",
                                             params={"path": TITLE, "client_ip": NYC_IP})
        assert status == 403
        proxy = Client(srv.http_port, "127.0.0.2")
        try:
            hdr = {"X-Forwarded-For": f"{LONDON_IP}, {NYC_IP}, 127.0.0.2"}
            status, doc, _ = await proxy.get("/v1/steer", params={"path": TITLE}, headers=hdr)
            assert status == 200 and doc["reason"]["client"]["ip"] == NYC_IP
            for bad in (f"{NYC_IP}, nonsense", f"{NYC_IP},", f"{NYC_IP}:443"):
                status, doc, _ = await proxy.get("/v1/steer", params={"path": TITLE},
                                                 headers={"X-Forwarded-For": bad})
                assert status == 400 and doc["error"], bad
            status, doc, _ = await proxy.get("/v1/steer", params={"path": TITLE},
                                             headers={"X-Forwarded-For": "127.0.0.2"})
            assert status == 200 and doc["reason"]["client"]["via"] == "xff"
        finally:
            await proxy.close()


# -- edge health reports ----------------------------------------------------------------


async def test_nan_egress_report_does_not_make_an_edge_look_idle(edges, mmdb_path: Path
                                                                 ) -> None:
    """lon-1 and lon-2 report egress NaN: not a valid load; they must not be ranked as idle
    edges (first choice for a London client), and /v1/fleet stays strict JSON."""
    for n in ("lon-1", "lon-2"):
        edges[n].egress_bps = math.nan
    async with serving(edges, mmdb_path) as (srv, c):
        firsts = set()
        for _ in range(20):
            status, doc, _ = await c.get("/v1/steer", params={"path": TITLE,
                                                               "client_ip": LONDON_IP})
            assert status == 200
            firsts.add(doc["targets"][0]["edge"])
        assert not firsts & {"lon-1", "lon-2"}, firsts


async def test_fleet_doc_after_nan_report_is_strict_and_consistent(edges, mmdb_path: Path) -> None:
    """After a NaN report /v1/fleet is strict JSON and does not call an edge both 'up' and
    'draining' (the ranking serves it as idle); /metrics still answers."""
    edges["lon-1"].egress_bps = math.nan
    async with serving(edges, mmdb_path) as (srv, c):
        status, body = await raw_http(srv.http_port, b"GET /v1/fleet HTTP/1.1\r\n\r\n")
        assert status == 200
        doc = strict_json(body)
        lon1 = next(e for e in doc["edges"] if e["name"] == "lon-1")
        # NaN is reported as "draining" (load >= 1e9 test): at least the doc must agree with
        # the ranking, which must not treat the edge as idle
        assert lon1["state"] != "up" or lon1["load"] != "draining", lon1
        assert (await c.get("/metrics"))[0] == 200


@pytest.mark.parametrize("raw,status", [
    (b"not json", 200), (b"[1, 2]", 200), (b'{"status": "down", "active_connections": 0,'
                                           b' "egress_bps": 0}', 200),
    (b'{"status": "ok", "active_connections": "many", "egress_bps": 0}', 200),
    (b'{"status": "ok", "active_connections": 0, "egress_bps": -5}', 200),
    (b'{"status": "ok", "active_connections": -1, "egress_bps": 0}', 200),
    (b'{"status": "starting", "active_connections": 0, "egress_bps": 0}', 200),
    (b'{"status": "ok", "active_connections": 0, "egress_bps": 0}', 503),
    (b'{"status": "ok", "active_connections": 0, "egress_bps": 0}', 500),
    (b'{"status": "ok", "active_connections": 0, "egress_bps": 0, "tiers": 5}', 200),
    (b"\xff\xfe garbage", 200), (b"", 200),
])
async def test_bad_reports_keep_the_edge_out(raw_edges: dict[str, RawEdge], mmdb_path: Path,
                                             raw: bytes, status: int) -> None:
    """lon-1 answering an invalid/down report (or non-200) is never steered to."""
    raw_edges["lon-1"].raw, raw_edges["lon-1"].raw_status = raw, status
    async with serving(raw_edges, mmdb_path) as (_, c):
        for _ in range(10):
            st, doc, _ = await c.get("/v1/steer", params={"path": TITLE,
                                                           "client_ip": LONDON_IP})
            assert st == 200
            assert "lon-1" not in {t["edge"] for t in doc["targets"]}, doc
        fleet = (await c.get("/v1/fleet"))[1]
        lon1 = next(e for e in fleet["edges"] if e["name"] == "lon-1")
        assert lon1["state"] == "down" and lon1["last_error"]


async def test_edge_that_goes_bad_is_dropped_and_huge_load_sheds(
        raw_edges: dict[str, RawEdge], mmdb_path: Path) -> None:
    """An edge that turns to reporting 'draining' / infinite egress leaves the answers."""
    async with serving(raw_edges, mmdb_path, probe_interval=0.2) as (_, c):
        raw_edges["lon-1"].raw = (b'{"status": "draining", "active_connections": 0,'
                                  b' "egress_bps": 0}')
        raw_edges["lon-2"].raw = (b'{"status": "ok", "active_connections": 0,'
                                  b' "egress_bps": 1e400, "capacity_bps": 1}')

        async def gone() -> bool:
            doc = (await c.get("/v1/steer", params={"path": TITLE, "client_ip": LONDON_IP}))[1]
            return not {"lon-1", "lon-2"} & {t["edge"] for t in doc["targets"]}

        await wait_until(gone, timeout=5)
        for _ in range(20):
            assert await gone()


# -- admin ------------------------------------------------------------------------------


async def test_admin_deeply_nested_json_body_is_400(edges, mmdb_path: Path) -> None:
    """An authenticated but pathological body ('[' * 60000) is bad input: 400, not 500."""
    async with serving(edges, mmdb_path) as (srv, _):
        body = b"[" * 60000
        status, resp = await raw_http(
            srv.http_port, b"POST /v1/admin/weights HTTP/1.1\r\nAuthorization: Bearer tok\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert status == 400, (status, resp)


@pytest.mark.parametrize("body", [
    b'{"weights": {"eu-west": NaN}}', b'{"weights": {"eu-west": Infinity}}',
    b'{"weights": {"eu-west": -0.5}}', b'{"weights": {"eu-west": 1e7}}',
    b'{"weights": {"eu-west": "50"}}', b'{"weights": {"eu-west": true}}',
    b'{"weights": {"eu-west": 50, "mars": 50}}', b'{"weights": {"eu-west": null}}',
    b'{"weights": {}}', b'{"weights": [70, 30]}', b'{"weights": {"eu-west": 5}, '
    b'"ramp_seconds": NaN}', b'{"weights": {"eu-west": 5}, "ramp_seconds": -1}',
    b'{"weights": {"eu-west": 5}, "ramp_seconds": "10"}', b"\xff\xfe", b"null", b'"x"',
    b'{"weights": {"eu-west": 1e999999}}',
])
async def test_bad_admin_weights_are_4xx_and_change_nothing(edges, mmdb_path: Path,
                                                            body: bytes) -> None:
    async with serving(edges, mmdb_path) as (srv, c):
        status, resp = await raw_http(
            srv.http_port, b"POST /v1/admin/weights HTTP/1.1\r\nAuthorization: Bearer tok\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert 400 <= status < 500, (status, resp)
        assert json.loads(resp)["error"]
        regions = (await c.get("/v1/admin/regions", headers=AUTH))[1]
        assert {r: d["weight_target"] for r, d in regions.items()} == {
            "eu-west": 100.0, "eu-central": 100.0, "us-east": 100.0}


@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer ", "Bearer tokx", "Basic dG9r",
                                  "bearer TOK", "Bearer tok\x00", "Token tok"])
async def test_admin_needs_exact_token(edges, mmdb_path: Path, auth: str | None) -> None:
    """Evacuate without the exact token (a token in the query does not count): refused and
    nothing evacuated."""
    async with serving(edges, mmdb_path) as (srv, c):
        hdr = b"" if auth is None else b"Authorization: " + auth.encode() + b"\r\n"
        body = b'{"region": "eu-west", "ramp_seconds": 0}'
        status, _ = await raw_http(
            srv.http_port, b"POST /v1/admin/evacuate?token=tok HTTP/1.1\r\n" + hdr
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert status in (400, 401)  # NUL in a header: the parser's 400
        regions = (await c.get("/v1/admin/regions", headers=AUTH))[1]
        assert regions["eu-west"]["evacuated"] is False


async def test_admin_evacuate_unknown_or_bad_region_is_4xx(edges, mmdb_path: Path) -> None:
    async with serving(edges, mmdb_path) as (_, c):
        for doc in ({"region": "mars"}, {"region": ""}, {"region": 5}, {"region": None}, {},
                    {"region": "eu-west", "ramp_seconds": 1e9}):
            for ep in ("/v1/admin/evacuate", "/v1/admin/restore"):
                status, resp = await c.post(ep, doc)
                assert 400 <= status < 500 and resp["error"], (ep, doc)


async def test_evacuating_every_region_goes_to_cloudfront(edges, mmdb_path: Path, cf_key
                                                          ) -> None:
    async with serving(edges, mmdb_path, cf_key[0]) as (_, c):
        for r in ("eu-west", "eu-central", "us-east"):
            assert (await c.post("/v1/admin/evacuate", {"region": r, "ramp_seconds": 0})
                    )[0] == 200
        for ip in (LONDON_IP, NYC_IP, "2001:db8:2::1"):
            status, doc, _ = await c.get("/v1/steer", params={"path": TITLE, "client_ip": ip})
            assert status == 200 and [t["kind"] for t in doc["targets"]] == ["cloudfront"]
        status, _, resp = await c.get("/v1/redirect" + TITLE)
        assert status == 302 and "cloudfront.net" in resp.headers["Location"]


async def test_all_weights_zero_and_all_evacuated_without_cloudfront_still_serve(
        edges, mmdb_path: Path) -> None:
    """No CloudFront: zero weights everywhere, then every region evacuated: held, never 5xx."""
    async with serving(edges, mmdb_path) as (_, c):
        status, _ = await c.post("/v1/admin/weights", {
            "weights": {"eu-west": 0, "eu-central": 0, "us-east": 0}, "ramp_seconds": 0})
        assert status == 200
        for ip in (LONDON_IP, NYC_IP):
            status, doc, _ = await c.get("/v1/steer", params={"path": TITLE, "client_ip": ip})
            assert status == 200 and doc["targets"][0]["kind"] == "edge", doc
        for r in ("eu-west", "eu-central", "us-east"):
            await c.post("/v1/admin/evacuate", {"region": r, "ramp_seconds": 0})
        status, doc, _ = await c.get("/v1/steer", params={"path": TITLE, "client_ip": NYC_IP})
        assert status == 200 and doc["reason"]["choice"] == "held"
        assert doc["targets"][0]["site"] == "nyc"


async def test_request_flood_with_garbage_keeps_serving(edges, mmdb_path: Path) -> None:
    """300 concurrent requests, a third garbage: no 5xx, and good ones all 200."""
    async with serving(edges, mmdb_path) as (srv, c):
        async def one(i: int) -> int:
            if i % 3 == 0:
                return (await c.get("/v1/steer?path=%ff"))[0]
            if i % 3 == 1:
                return (await raw_http(srv.http_port, b"\x00\x01garbage\r\n\r\n"))[0]
            return (await c.get("/v1/steer", params={"path": f"/titles/t{i}/master.m3u8"}))[0]

        got = await asyncio.gather(*(one(i) for i in range(300)))
        assert all(s < 500 for s in got)
        assert all(s == 200 for i, s in enumerate(got) if i % 3 == 2)


# -- DNS --------------------------------------------------------------------------------


async def udp_raw(port: int, data: bytes, timeout: float = 2.0) -> bytes | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    try:
        s.sendto(data, ("127.0.0.1", port))
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.sock_recv(s, 65535), timeout)
        except TimeoutError:
            return None
    finally:
        s.close()


async def test_dns_odd_qtypes_classes_and_names(dns_server: SteeringServer) -> None:
    """Odd types at the name: NOERROR without A records; CH class and names outside the zone:
    REFUSED; below the zone: NXDOMAIN; a NOTIFY: NOTIMP."""
    port = dns_server.dns_port
    for t in ("ANY", "TXT", "MX", "CNAME", "NS", "TYPE65535", "HTTPS", "AXFR"):
        r = await dns.asyncquery.udp(dns.message.make_query(NAME, t), "127.0.0.1", port=port,
                                     timeout=3)
        assert r.rcode() == dns.rcode.NOERROR, t
        assert not any(rr.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for rr in r.answer)
    r = await dns.asyncquery.udp(dns.message.make_query(NAME, "A", rdclass="CH"), "127.0.0.1",
                                 port=port, timeout=3)
    assert r.rcode() == dns.rcode.REFUSED
    r = await dns.asyncquery.udp(dns.message.make_query("example.com.", "A"), "127.0.0.1",
                                 port=port, timeout=3)
    assert r.rcode() == dns.rcode.REFUSED
    r = await dns.asyncquery.udp(dns.message.make_query("x.y." + NAME, "A"), "127.0.0.1",
                                 port=port, timeout=3)
    assert r.rcode() == dns.rcode.NXDOMAIN
    q = dns.message.make_query(NAME, "SOA")
    q.set_opcode(dns.opcode.NOTIFY)
    r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=3)
    assert r.rcode() == dns.rcode.NOTIMP
    r = await dns.asyncquery.udp(dns.message.make_query(NAME.upper(), "A"), "127.0.0.1",
                                 port=port, timeout=3)
    assert r.rcode() == dns.rcode.NOERROR and r.answer


async def test_dns_truncated_and_garbage_packets(dns_server: SteeringServer) -> None:
    """Header claiming a question that is missing, a cut-off name, two questions: FORMERR
    echoing the id; <12 bytes: ignored; the server still answers afterwards."""
    port = dns_server.dns_port
    good = dns.message.make_query(NAME, "A")
    good.id = 0x4242
    wire = good.to_wire()
    for bad in (wire[:12], wire[:17], wire[:-3],
                b"\x42\x42\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00" + wire[12:] + wire[12:],
                b"\x42\x42\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c\x00\x01\x00\x01"):
        out = await udp_raw(port, bad)
        assert out is not None, bad
        assert out[:2] == b"\x42\x42" and out[3] & 0x0F == dns.rcode.FORMERR, (bad, out)
    assert await udp_raw(port, b"\x00" * 5, timeout=0.5) is None
    r = await dns.asyncquery.udp(dns.message.make_query(NAME, "A"), "127.0.0.1", port=port,
                                 timeout=3)
    assert r.rcode() == dns.rcode.NOERROR and r.answer


async def test_dns_huge_udp_query_and_ecs_abuse(dns_server: SteeringServer) -> None:
    """A ~60 KB datagram (padding), bad ECS prefixes: an answer (not silence), and the
    response fits the advertised payload."""
    port = dns_server.dns_port
    q = dns.message.make_query(NAME, "A", use_edns=0, payload=4096)
    wire = bytearray(q.to_wire())
    pad = struct.pack("!HH", 12, 60000) + b"\x00" * 60000
    wire[-2:] = struct.pack("!H", len(pad))
    out = await udp_raw(port, bytes(wire) + pad)
    assert out is not None and len(out) <= 4096
    r = dns.message.from_wire(out)
    assert r.rcode() in (dns.rcode.NOERROR, dns.rcode.FORMERR)
    # ECS with source prefix 33 for IPv4: FORMERR
    q = dns.message.make_query(NAME, "A", use_edns=0)
    base = bytearray(q.to_wire())
    opt = struct.pack("!HH", 8, 9) + struct.pack("!HBB", 1, 33, 0) + b"\x51\x02\x45\xa0\x00"
    base[-2:] = struct.pack("!H", len(opt))
    out = await udp_raw(port, bytes(base) + opt)
    assert out is not None and out[3] & 0x0F == dns.rcode.FORMERR


async def test_dns_tcp_garbage_then_good(dns_server: SteeringServer) -> None:
    """TCP: a garbage frame gets FORMERR on the same connection, then a good query works;
    a zero-length frame or a short frame closes without killing the listener."""
    port = dns_server.dns_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        junk = b"\x77\x77" + b"\xff" * 30
        good = dns.message.make_query(NAME, "AAAA").to_wire()
        writer.write(struct.pack("!H", len(junk)) + junk + struct.pack("!H", len(good)) + good)
        for want in (dns.rcode.FORMERR, dns.rcode.NOERROR):
            (n,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 3))
            msg = await asyncio.wait_for(reader.readexactly(n), 3)
            assert msg[3] & 0x0F == want
    finally:
        writer.close()
    for frame in (b"\x00\x00", b"\x00\x40abc"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()
    r = await dns.asyncquery.tcp(dns.message.make_query(NAME, "A"), "127.0.0.1", port=port,
                                 timeout=3)
    assert r.rcode() == dns.rcode.NOERROR and r.answer


async def test_dns_response_flagged_message_gets_no_reply_and_server_lives(
        dns_server: SteeringServer) -> None:
    """A datagram with QR set (a response) is not answered (no reflection loops)."""
    q = dns.message.make_query(NAME, "A")
    q.flags |= dns.flags.QR
    assert await udp_raw(dns_server.dns_port, q.to_wire(), timeout=0.5) is None
    r = await dns.asyncquery.udp(dns.message.make_query(NAME, "A"), "127.0.0.1",
                                 port=dns_server.dns_port, timeout=3)
    assert r.rcode() == dns.rcode.NOERROR
