"""Which address a decision is made for (pure).

- The connecting peer, by default.
- ``X-Forwarded-For`` only when the peer is a trusted proxy: the right-most address that is
  not itself a trusted proxy (entries further left are client-supplied and forgeable).
- ``client_ip=`` only when the peer is a trusted caller (a playback API asking on behalf of
  a player); from anyone else it is refused with 403 rather than silently ignored.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from steering.settings import Network


class ClientAddrError(ValueError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@functools.lru_cache(maxsize=65536)
def canonical_ip(text: str) -> str:
    """Canonical text of an IPv4/IPv6 address (IPv4-mapped IPv6 -> IPv4); ValueError if bad."""
    t = text.strip()
    if t.startswith("[") and t.endswith("]"):
        t = t[1:-1]
    if "%" in t:  # zone index: meaningless for geo
        t = t.split("%", 1)[0]
    a = ipaddress.ip_address(t)
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return str(a)


@dataclass
class TrustSet:
    nets: Sequence[Network]

    def __post_init__(self) -> None:
        self._memo: dict[str, bool] = {}

    def __contains__(self, ip: str) -> bool:
        r = self._memo.get(ip)
        if r is None:
            try:
                a = ipaddress.ip_address(ip)
                r = any(a in n for n in self.nets)
            except ValueError:
                r = False
            if len(self._memo) > 10_000:
                self._memo.clear()
            self._memo[ip] = r
        return r


def resolve_client(peer: str, xff: str | None, client_ip: str | None, proxies: TrustSet,
                   callers: TrustSet) -> tuple[str, str]:
    """(address, how) where how is "peer" | "xff" | "param"; ClientAddrError on bad input."""
    if client_ip is not None:
        if peer not in callers:
            raise ClientAddrError(403, "client_ip is accepted only from trusted callers")
        try:
            return canonical_ip(client_ip), "param"
        except ValueError:
            raise ClientAddrError(400, "client_ip is not an IP address") from None
    if xff and peer in proxies:
        hops = [h for h in xff.split(",")]
        for hop in reversed(hops):
            try:
                ip = canonical_ip(hop)
            except ValueError:
                raise ClientAddrError(400, "bad X-Forwarded-For entry") from None
            if ip not in proxies:
                return ip, "xff"
        return canonical_ip(hops[0]), "xff"
    return peer, "peer"
