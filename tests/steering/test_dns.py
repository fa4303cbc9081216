"""DNS mode over real UDP and TCP sockets, queried with dnspython, with and without ECS."""

from __future__ import annotations

from pathlib import Path

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from steering.geo import Location
from steering.geoip import GeoLocator
from steering.server import SteeringServer
from tests.steering.conftest import DNS_NAME, StandInEdge

NAME = DNS_NAME


def query(name: str = NAME, rdtype: str = "A", ecs: tuple[str, int] | None = None
          ) -> dns.message.Message:
    opts = [dns.edns.ECSOption(ecs[0], ecs[1])] if ecs else []
    return dns.message.make_query(name, rdtype, use_edns=0 if ecs else None, options=opts)


async def ask(srv: SteeringServer, q: dns.message.Message, tcp: bool = False
              ) -> dns.message.Message:
    f = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    return await f(q, "127.0.0.1", port=srv.dns_port, timeout=3)


def addrs(r: dns.message.Message) -> list[str]:
    return [rd.address for rrset in r.answer for rd in rrset]


def ecs_of(r: dns.message.Message) -> dns.edns.ECSOption:
    return next(o for o in r.options if isinstance(o, dns.edns.ECSOption))


def ips_of(edges: dict[str, StandInEdge], *names: str) -> set[str]:
    return {edges[n].host for n in names}


@pytest.mark.parametrize("tcp", [False, True])
async def test_without_ecs_the_resolver_address_decides(dns_server, edges, tcp: bool) -> None:
    r = await ask(dns_server, query(), tcp)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    got = addrs(r)
    # 127.0.0.1 is not in the mmdb: the default region eu-west's centre (between London and
    # Dublin), ranked best first as the HTTP API would: dub-1, then London's edges
    assert got[0] == edges["dub-1"].host
    assert set(got[1:3]) == ips_of(edges, "lon-1", "lon-2")
    assert not any(isinstance(o, dns.edns.ECSOption) for o in r.options)
    assert r.answer[0].ttl == 30


@pytest.mark.parametrize("tcp", [False, True])
async def test_ecs_client_subnet_decides_and_scope_is_the_mmdb_network(
        dns_server, edges, tcp: bool) -> None:
    r = await ask(dns_server, query(ecs=("203.0.113.0", 24)), tcp)
    assert addrs(r)[0] == edges["nyc-1"].host
    o = ecs_of(r)
    assert (o.address, o.srclen, o.scopelen) == ("203.0.113.0", 24, 24)
    # a /16 network in the mmdb: the answer holds for the whole /16
    r = await ask(dns_server, query(ecs=("100.64.5.0", 24)), tcp)
    assert set(addrs(r)[:2]) == ips_of(edges, "fra-1", "fra-2")
    assert ecs_of(r).scopelen == 16


async def test_ecs_unknown_network_uses_default_with_its_covering_scope(
        dns_server, edges, mmdb_path: Path) -> None:
    r = await ask(dns_server, query(ecs=("10.9.0.0", 16)))
    want = GeoLocator(str(mmdb_path), Location(0, 0, "default")).locate("10.9.0.0").prefix_len
    assert ecs_of(r).scopelen == want <= 16
    assert addrs(r)[0] == edges["dub-1"].host


async def test_ecs_source_prefix_zero_means_scope_zero(dns_server) -> None:
    r = await ask(dns_server, query(ecs=("0.0.0.0", 0)))
    assert ecs_of(r).scopelen == 0 and addrs(r)


@pytest.mark.parametrize("tcp", [False, True])
async def test_aaaa_with_ipv6_ecs(dns_server, edges, tcp: bool) -> None:
    r = await ask(dns_server, query(rdtype="AAAA", ecs=("2001:db8:2::", 56)), tcp)
    assert addrs(r) == ["::1"]  # nyc-2, the only IPv6 edge, in New York
    o = ecs_of(r)
    assert (o.srclen, o.scopelen) == (56, 48)


async def test_other_names_and_types(dns_server) -> None:
    r = await ask(dns_server, query("www.example.com."))
    assert r.rcode() == dns.rcode.REFUSED
    r = await ask(dns_server, query("x." + NAME))
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority
    r = await ask(dns_server, query(rdtype="TXT"))
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority


async def test_all_edges_down_answers_cname_to_cloudfront(dns_server, edges) -> None:
    for n in list(dns_server.steering.edges):
        for _ in range(2):
            dns_server.steering.on_probe(n, ok=False, load=0, now=0)
    r = await ask(dns_server, query())
    assert r.answer[0].rdtype == dns.rdatatype.CNAME
    assert r.answer[0][0].target.to_text() == "d111111abcdef8.cloudfront.net."


async def test_garbage_datagram_does_not_kill_the_server(dns_server) -> None:
    import asyncio
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"\x12\x34" + b"\xff" * 20, ("127.0.0.1", dns_server.dns_port))
    s.setblocking(False)
    loop = asyncio.get_running_loop()
    data = await asyncio.wait_for(loop.sock_recv(s, 512), 3)
    assert data[:2] == b"\x12\x34" and data[3] & 0x0F == dns.rcode.FORMERR
    s.close()
    assert (await ask(dns_server, query())).rcode() == dns.rcode.NOERROR
