from __future__ import annotations

import ipaddress

import pytest

from steering.clientaddr import ClientAddrError, TrustSet, canonical_ip, resolve_client

PROXIES = TrustSet([ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")])
CALLERS = TrustSet([ipaddress.ip_network("192.168.1.10/32")])


def test_peer_by_default_and_xff_ignored_from_untrusted_peers() -> None:
    assert resolve_client("81.2.69.1", "203.0.113.9", None, PROXIES, CALLERS) == (
        "81.2.69.1", "peer")


def test_xff_from_trusted_proxy_takes_rightmost_untrusted_hop() -> None:
    xff = "1.1.1.1, 203.0.113.9, 10.0.0.7"  # 1.1.1.1 was forged by the client
    assert resolve_client("10.0.0.1", xff, None, PROXIES, CALLERS) == ("203.0.113.9", "xff")
    assert resolve_client("fd00::1", "2a02:db8:1::5", None, PROXIES, CALLERS) == (
        "2a02:db8:1::5", "xff")


def test_xff_garbage_from_trusted_proxy_is_400() -> None:
    with pytest.raises(ClientAddrError) as e:
        resolve_client("10.0.0.1", "not-an-ip", None, PROXIES, CALLERS)
    assert e.value.status == 400


def test_client_ip_param_only_from_trusted_callers() -> None:
    assert resolve_client("192.168.1.10", None, "2a02:db8:1::1", PROXIES, CALLERS) == (
        "2a02:db8:1::1", "param")
    with pytest.raises(ClientAddrError) as e:
        resolve_client("81.2.69.1", None, "1.2.3.4", PROXIES, CALLERS)
    assert e.value.status == 403
    with pytest.raises(ClientAddrError) as e:
        resolve_client("192.168.1.10", None, "1.2.3", PROXIES, CALLERS)
    assert e.value.status == 400


@pytest.mark.parametrize(("raw", "want"), [("::ffff:81.2.69.1", "81.2.69.1"),
                                           ("[2001:DB8::1]", "2001:db8::1"),
                                           ("fe80::1%eth0", "fe80::1"), (" 1.2.3.4 ", "1.2.3.4")])
def test_canonical_ip(raw: str, want: str) -> None:
    assert canonical_ip(raw) == want
