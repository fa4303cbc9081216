"""Authoritative DNS for the steering name: A/AAAA answers from the same ranking as HTTP.

- The client is the EDNS Client Subnet (RFC 7871) address when the query carries one (with
  SOURCE PREFIX-LENGTH > 0), else the resolver's address. The response echoes ECS with
  SCOPE PREFIX-LENGTH = length of the mmdb network that decided the location: the answer
  holds for every client in that network (scope may exceed source: more bits would matter).
- Answers are the IPs of the chosen edges' hosts, best first; when no edge can serve, a
  CNAME to the CloudFront domain. Other types at the name: NODATA with SOA; names under the
  zone: NXDOMAIN; names outside it: REFUSED.
- UDP (truncated with TC when over the requester's payload size) and TCP (length-prefixed).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from urllib.parse import urlsplit

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from steering.clientaddr import canonical_ip
from steering.service import Steering

_MAX_ANSWERS = 8


def _host_ips(url: str) -> tuple[list[str], list[str]]:
    host = urlsplit(url).hostname or ""
    try:
        a = ipaddress.ip_address(host)
        return ([str(a)], []) if a.version == 4 else ([], [str(a)])
    except ValueError:
        pass
    v4, v6 = [], []
    with contextlib.suppress(OSError):
        for fam, *_rest, sa in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP):
            (v4 if fam == socket.AF_INET else v6).append(sa[0])
    return sorted(set(v4)), sorted(set(v6))


class DnsResponder:
    def __init__(self, steering: Steering) -> None:
        self.use(steering)

    def use(self, steering: Steering) -> None:
        """Answer from this Steering from now on (fleet reload)."""
        self.steering = steering
        self.zone = dns.name.from_text(steering.settings.dns_name)
        ttl = self.ttl = steering.settings.response_ttl
        self.ips = {e.name: _host_ips(e.url) for e in steering.fleet.edges}
        cf = steering.fleet.cloudfront
        self.cname = None
        if cf:  # a domain, or a URL in test fleets: keep the host part
            host = urlsplit(cf.domain if "//" in cf.domain else f"//{cf.domain}").hostname
            with contextlib.suppress(ValueError, dns.exception.DNSException):
                self.cname = dns.name.from_text(host) if host else None
        self.soa = dns.rrset.from_text(
            self.zone, ttl, "IN", "SOA",
            f"ns1.{self.zone} hostmaster.{self.zone} 1 3600 600 86400 {ttl}")

    def respond(self, wire: bytes, peer: str, max_size: int | None, transport: str) -> bytes | None:
        """Wire query -> wire response (None: not even a header to answer to)."""
        try:
            q = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            if len(wire) < 12:
                return None
            # FORMERR echoing the id, no question
            return wire[:2] + b"\x81\x01" + b"\x00" * 8
        r = dns.message.make_response(q)
        rcode = self._fill(q, r, peer)
        r.set_rcode(rcode)
        self.steering.metrics.dns.labels(dns.rcode.to_text(rcode), transport).inc()
        limit = 65535 if max_size is None else max_size
        if max_size is not None and q.edns >= 0:
            limit = max(512, min(q.payload, 65535))
        elif max_size is not None:
            limit = 512
        try:
            return r.to_wire(max_size=limit, want_shuffle=False)
        except dns.exception.TooBig:
            r.answer.clear()
            r.authority.clear()
            r.flags |= dns.flags.TC
            return r.to_wire(max_size=limit, want_shuffle=False)

    def _fill(self, q: dns.message.Message, r: dns.message.Message, peer: str) -> int:
        if q.opcode() != dns.opcode.QUERY:
            return dns.rcode.NOTIMP
        if len(q.question) != 1:
            return dns.rcode.FORMERR
        qrr = q.question[0]
        qname, rdtype = qrr.name, qrr.rdtype
        if qrr.rdclass != dns.rdataclass.IN or not qname.is_subdomain(self.zone):
            return dns.rcode.REFUSED
        r.flags |= dns.flags.AA
        if qname != self.zone:
            r.authority.append(self.soa)
            return dns.rcode.NXDOMAIN
        if rdtype == dns.rdatatype.SOA:
            r.answer.append(self.soa)
            return dns.rcode.NOERROR
        if rdtype not in (dns.rdatatype.A, dns.rdatatype.AAAA):
            r.authority.append(self.soa)
            return dns.rcode.NOERROR
        ecs = next((o for o in q.options if isinstance(o, dns.edns.ECSOption)), None)
        client, scope_from_db = peer, False
        if ecs is not None:
            if ecs.srclen > (32 if ecs.family == 1 else 128):
                return dns.rcode.FORMERR
            if ecs.srclen > 0:
                client, scope_from_db = canonical_ip(ecs.address), True
        loc = self.steering.locator.locate(client)
        if ecs is not None:
            scope = loc.prefix_len if scope_from_db else 0
            r.use_edns(0, 0, max(q.payload, 512),
                       options=[dns.edns.ECSOption(ecs.address, ecs.srclen, scope)])
        d = self.steering.decide_for_location(str(self.zone), loc)
        fam = 0 if rdtype == dns.rdatatype.A else 1
        addrs: list[str] = []
        for p in d.picks:
            for ip in self.ips[p.edge.name][fam]:
                if ip not in addrs:
                    addrs.append(ip)
        if addrs:
            r.answer.append(dns.rrset.from_text_list(
                qname, self.ttl, "IN", rdtype, addrs[:_MAX_ANSWERS]))
        elif not d.picks and self.cname is not None:
            r.answer.append(dns.rrset.from_text(qname, self.ttl, "IN", "CNAME",
                                                self.cname.to_text()))
        elif not d.picks:  # no edge up, no CloudFront: a resolver retries, never caches it
            return dns.rcode.SERVFAIL
        else:
            r.authority.append(self.soa)
        return dns.rcode.NOERROR


class DnsUdp(asyncio.DatagramProtocol):
    def __init__(self, responder: DnsResponder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            peer = canonical_ip(addr[0])
            out = self.responder.respond(data, peer, 512, "udp")
        except Exception:  # never let one datagram kill the endpoint
            return
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


async def serve_tcp_conn(responder: DnsResponder, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
    peer = canonical_ip(writer.get_extra_info("peername")[0])
    try:
        while True:
            hdr = await asyncio.wait_for(reader.readexactly(2), timeout=10)
            (n,) = struct.unpack("!H", hdr)
            data = await asyncio.wait_for(reader.readexactly(n), timeout=10)
            out = responder.respond(data, peer, None, "tcp")
            if out is None:
                break
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def start_dns(responder: DnsResponder, host: str, port: int) -> tuple[
        asyncio.DatagramTransport, asyncio.base_events.Server]:
    """UDP and TCP on the same port (with port 0: the first free one that both can take)."""
    loop = asyncio.get_running_loop()
    for _ in range(20):
        udp, _ = await loop.create_datagram_endpoint(lambda: DnsUdp(responder),
                                                     local_addr=(host, port))
        got = udp.get_extra_info("sockname")[1]
        try:
            tcp = await asyncio.start_server(lambda r, w: serve_tcp_conn(responder, r, w),
                                             host, got)
        except OSError:
            udp.close()
            if port:
                raise
            continue
        return udp, tcp
    raise OSError("no port free for DNS on both UDP and TCP")
