"""origin.tls_server_name (nginx's proxy_ssl_name) through real sockets: an HTTPS origin whose
certificate names only ``origin.test``, reached at https://127.0.0.1:PORT. The name is what the
edge sends as SNI (asserted on the origin's side) and what the certificate is verified against;
the Host header still comes from the URL."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.config import ConfigError
from edge.cli import overrides, register
from edge.config import build_config, load_config
from tests.conftest import free_port
from tests.edge.server.conftest import CHUNK, EdgeProcess, fetch, payload
from tests.edge.server.test_https_origin import (
    CC,
    HttpsOrigin,
    Pki,
    TlsS3Front,
    _leaf,
    new_ca,
    put_s3,
)

NAME = "origin.test"


@pytest.fixture
def name_pki(tmp_path: Path) -> Pki:
    """A CA and one leaf for the DNS name origin.test only (no IP address SAN)."""
    out = tmp_path / "pki"
    ca_key, ca_cert, ca = new_ca(out, "edgecdn tls-name CA")
    return Pki(ca, {"named": _leaf(ca_key, ca_cert, out, "named", [NAME], [])})


@pytest.fixture
def named_origin(name_pki: Pki) -> Iterator[HttpsOrigin]:
    o = HttpsOrigin(name_pki, "named")
    yield o
    o.stop()


def _by_ip(o: HttpsOrigin) -> str:
    return o.url_for("127.0.0.1")


# ---- through an edge ----------------------------------------------------------------------------
async def test_ip_url_without_a_tls_server_name_is_verified_against_the_ip_and_refused(
        name_pki, named_origin, make_edge, client):
    named_origin.put("/a.ts", b"x", headers=CC)
    edge = make_edge(_by_ip(named_origin), origin={"ca_file": str(name_pki.ca)})
    r = await fetch(client, edge.url + "/a.ts")
    assert r.status == 502 and r.body == b"origin TLS certificate is for another IP address\n"
    assert named_origin.count("/a.ts") == 0
    assert named_origin.sni and set(named_origin.sni) == {None}  # an IP address: no SNI at all


async def test_tls_server_name_is_sent_as_sni_and_verified_then_hits_and_ranges(
        name_pki, named_origin, make_edge, client):
    body = payload(2 * CHUNK + 300, 7)
    named_origin.put("/v/seg.ts", body, headers=CC)
    edge = make_edge(_by_ip(named_origin) + "/v",
                     origin={"ca_file": str(name_pki.ca), "tls_server_name": NAME})
    r = await fetch(client, edge.url + "/seg.ts")
    assert r.status == 200 and r.body == body and "fwd=miss" in r.cache
    misses = named_origin.count("/v/seg.ts")
    assert misses == 3  # one fetch per chunk, each its own handshake (the origin closes)
    assert len(named_origin.sni) >= misses and set(named_origin.sni) == {NAME}
    # the Host header is the URL's, as nginx keeps proxy_ssl_name and Host apart
    hosts = {h.get("Host") for m, p, h in named_origin.requests if p == "/v/seg.ts"}
    assert hosts == {f"127.0.0.1:{named_origin.port}"}
    edge.settle()
    r = await fetch(client, edge.url + "/seg.ts")
    assert r.status == 200 and r.body == body and r.cache.startswith("edgecdn; hit")
    a, b = CHUNK - 3, CHUNK + 40
    r = await fetch(client, edge.url + "/seg.ts", headers={"Range": f"bytes={a}-{b}"})
    assert r.status == 206 and r.body == body[a:b + 1]
    assert r.headers["content-range"] == f"bytes {a}-{b}/{len(body)}"
    assert named_origin.count("/v/seg.ts") == misses


async def test_a_wrong_tls_server_name_is_sent_and_refused_as_another_hostname(
        name_pki, named_origin, make_edge, client):
    named_origin.put("/w", b"w", headers=CC)
    edge = make_edge(_by_ip(named_origin),
                     origin={"ca_file": str(name_pki.ca), "tls_server_name": "other.test"})
    for _ in range(2):  # not cached as an answer
        r = await fetch(client, edge.url + "/w")
        assert r.status == 502 and r.body == b"origin TLS certificate is for another hostname\n"
    assert named_origin.count("/w") == 0
    assert len(named_origin.sni) >= 2 and set(named_origin.sni) == {"other.test"}


async def test_tls_server_name_applies_to_an_https_s3_endpoint_data_path(
        name_pki, s3_endpoint, s3_bucket, make_edge, client):
    body = payload(CHUNK + 11, 8)
    put_s3(s3_endpoint, s3_bucket, "k/o.ts", body)
    with TlsS3Front(name_pki.certs["named"], s3_endpoint) as front:
        https = f"https://127.0.0.1:{front.port}"
        plain = make_edge(f"s3://{s3_bucket}/k",
                          origin={"endpoint_url": https, "ca_file": str(name_pki.ca)})
        r = await fetch(client, plain.url + "/o.ts")
        assert r.status == 502 and r.body == b"origin TLS certificate is for another IP address\n"
        named = make_edge(f"s3://{s3_bucket}/k", origin={
            "endpoint_url": https, "ca_file": str(name_pki.ca), "tls_server_name": NAME})
        r = await fetch(client, named.url + "/o.ts")
        assert r.status == 200 and r.body == body


# ---- configuration ----------------------------------------------------------------------------
def _doc(url: str = "https://127.0.0.1:8443", **origin: Any) -> dict[str, Any]:
    return {"origin": {"url": url, **origin}}


def test_tls_server_name_defaults_to_none_and_is_kept_as_given():
    assert build_config(_doc()).origin.tls_server_name is None
    assert build_config(_doc(tls_server_name=NAME)).origin.tls_server_name == NAME
    assert build_config(_doc(tls_server_name="a-b_c.Example.")).origin.tls_server_name \
        == "a-b_c.Example."


@pytest.mark.parametrize("value,reason", [
    ("", "empty"),
    ("origin test", "contains whitespace"),
    (" origin.test", "contains whitespace"),
    ("origin.test/x", "a host name, not a URL"),
    ("https://origin.test", "a host name, not a URL"),
    ("origin.test:443", "a host name without a port"),
    ("origin..test", "not a valid host name"),
    ("orígin.test", "not a valid host name"),
    ("a" * 64 + ".test", "not a valid host name"),
    (443, "must be a host name string"),
    (True, "must be a host name string"),
    (["origin.test"], "must be a host name string"),
])
def test_bad_tls_server_name_is_a_config_error_naming_the_key(value, reason):
    with pytest.raises(ConfigError, match=rf"^origin\.tls_server_name: {reason}"):
        build_config(_doc(tls_server_name=value))


def test_tls_server_name_for_a_plain_http_origin_is_refused():
    with pytest.raises(ConfigError, match=r"^origin\.tls_server_name: origin\.url "
                                          r"'http://origin.example' is plain http"):
        build_config(_doc("http://origin.example/p", tls_server_name=NAME))


def test_tls_server_name_for_s3_follows_the_endpoint_scheme(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(ConfigError, match=r"^origin\.tls_server_name: the S3 endpoint "
                                          r"'http://127\.0\.0\.1:9000' is plain http"):
        build_config(_doc("s3://b/p", endpoint_url="http://127.0.0.1:9000",
                          tls_server_name=NAME))
    cfg = build_config(_doc("s3://b/p", endpoint_url="https://10.0.0.9", tls_server_name=NAME))
    assert cfg.origin.tls_server_name == NAME
    assert build_config(_doc("s3://b", tls_server_name=NAME)).origin.tls_server_name == NAME
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000")  # what boto3 would use
    with pytest.raises(ConfigError, match="is plain http"):
        build_config(_doc("s3://b", tls_server_name=NAME))


def test_origin_tls_server_name_flag_overrides_the_file(tmp_path):
    conf = tmp_path / "edge.toml"
    conf.write_text(f'[origin]\nurl = "https://127.0.0.1:8443"\ntls_server_name = "{NAME}"\n')
    p = argparse.ArgumentParser()
    register(p.add_subparsers())
    a = p.parse_args(["edge", "--config", str(conf)])
    assert load_config(a.config, overrides(a)).origin.tls_server_name == NAME
    a = p.parse_args(["edge", "--config", str(conf), "--origin-tls-server-name", "cdn.test"])
    assert load_config(a.config, overrides(a)).origin.tls_server_name == "cdn.test"
    a = p.parse_args(["edge", "--config", str(conf), "--origin-tls-server-name", ""])
    with pytest.raises(ConfigError, match=r"^origin\.tls_server_name: empty"):
        load_config(a.config, overrides(a))


# ---- a real `edgecdn edge` process --------------------------------------------------------------
def _proc_args(origin_url: str, cache_dir: Path, port: int, *extra: str) -> list[str]:
    return ["--origin", origin_url, "--listen", f"127.0.0.1:{port}", "--cache-dir",
            str(cache_dir), "--chunk-size", str(CHUNK), "--memory-cache", "4MiB",
            "--disk-cache", "64MiB", "--policy", "lru", "--access-log", "", "--no-fsync",
            *extra]


async def test_edge_process_with_the_flag_serves_an_origin_reached_by_ip(
        name_pki, named_origin, edge_procs, tmp_path, client):
    body = payload(CHUNK + 9, 4)
    named_origin.put("/p/a.ts", body, headers=CC)
    port = free_port()
    e = EdgeProcess(_proc_args(_by_ip(named_origin) + "/p", tmp_path / "c", port,
                               "--origin-ca-file", str(name_pki.ca),
                               "--origin-tls-server-name", NAME))
    edge_procs.append(e)
    e.wait_ready()
    url = f"http://127.0.0.1:{port}"
    r = await fetch(client, url + "/a.ts")
    assert r.status == 200 and r.body == body
    n = named_origin.count("/p/a.ts")
    assert n == 2 and set(named_origin.sni) == {NAME}
    r = await fetch(client, url + "/a.ts", headers={"Range": f"bytes={CHUNK}-"})
    assert r.status == 206 and r.body == body[CHUNK:]
    assert named_origin.count("/p/a.ts") == n
    assert e.term() == 0


@pytest.mark.parametrize("url,flag,expect", [
    ("https://127.0.0.1:1", "origin.test:443", "a host name without a port"),
    ("http://127.0.0.1:1", NAME, "origin.url 'http://127.0.0.1:1' is plain http"),
])
def test_edge_process_with_a_bad_tls_server_name_exits_with_the_reason(
        tmp_path, edge_procs, url, flag, expect):
    e = EdgeProcess(_proc_args(url, tmp_path / "c", free_port(),
                               "--origin-tls-server-name", flag))
    edge_procs.append(e)
    assert e.proc.wait(30) == 2
    with e._cv:  # the reader thread may still be draining stderr: wait for its lines
        e._cv.wait_for(lambda: any("config error" in x for x in e.lines), 10)
    out = "".join(e.lines)
    assert f"config error: origin.tls_server_name: {expect}" in out, out
    assert not e.ready_lines()
