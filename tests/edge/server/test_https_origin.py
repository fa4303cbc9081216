"""HTTPS origins through real sockets: a throwaway CA, an aiohttp origin serving TLS on
127.0.0.1, and edges that must verify it (origin.ca_file / --origin-ca-file) and answer 502
with a plain reason when the certificate is untrusted, expired or for another host."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from contracts.config import ConfigError
from edge.cli import overrides, register
from edge.config import load_config
from tests.conftest import free_port
from tests.edge.server.conftest import (
    CHUNK,
    EdgeProcess,
    OriginServer,
    fetch,
    payload,
    run_then_close,
    start_site,
)

CC = {"Cache-Control": "max-age=600", "ETag": '"t"'}


# ---- a throwaway PKI -----------------------------------------------------------------------
@dataclass
class Pki:
    ca: Path  # the CA the edge is told to trust
    certs: dict[str, tuple[Path, Path]]  # name -> (cert.pem, key.pem) served by an origin


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, out: Path, name: str,
          dns: list[str], ips: list[str], expired: bool = False) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = ((now - dt.timedelta(days=10), now - dt.timedelta(days=1)) if expired
                  else (now - dt.timedelta(hours=1), now + dt.timedelta(days=7)))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(_name(dns[0] if dns else ips[0]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_cert.public_key()), critical=False)  # type: ignore[arg-type]
            .sign(ca_key, hashes.SHA256()))
    cert_path = out / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, _write_key(key, out / f"{name}.key")


def new_ca(out: Path, cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    """A throwaway CA under out (created): its key, certificate and ca.pem."""
    out.mkdir()
    ca_key, ca_cert = _ca(cn)
    ca = out / "ca.pem"
    ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return ca_key, ca_cert, ca


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    out = tmp_path / "pki"
    ca_key, ca_cert, ca = new_ca(out, "edgecdn test CA")
    rogue_key, rogue_cert = _ca("someone else's CA")
    certs = {
        "good": _leaf(ca_key, ca_cert, out, "good", ["localhost"], ["127.0.0.1"]),
        "name_only": _leaf(ca_key, ca_cert, out, "name_only", ["localhost"], []),
        "other_host": _leaf(ca_key, ca_cert, out, "other_host", ["origin.example"], []),
        "expired": _leaf(ca_key, ca_cert, out, "expired", ["localhost"], ["127.0.0.1"],
                         expired=True),
        "rogue": _leaf(rogue_key, rogue_cert, out, "rogue", ["localhost"], ["127.0.0.1"]),
    }
    ss_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ss = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(_name("localhost"))
          .public_key(ss_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=7))
          .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
          .sign(ss_key, hashes.SHA256()))
    (out / "self_signed.pem").write_bytes(ss.public_bytes(serialization.Encoding.PEM))
    certs["self_signed"] = (out / "self_signed.pem", _write_key(ss_key, out / "self_signed.key"))
    return Pki(ca, certs)


# ---- an HTTPS origin -------------------------------------------------------------------------
class HttpsOrigin(OriginServer):
    """conftest's counting origin (objects, ranges, ETags) served over TLS. ``serving`` names
    the certificate shown to the next handshake; every answer closes its connection so the
    next request handshakes again; ``sni`` records each server name the edge sent."""

    def __init__(self, pki: Pki, serving: str = "good") -> None:
        self.certs = pki.certs
        self.contexts: dict[str, ssl.SSLContext] = {}
        for name, (cert, key) in pki.certs.items():
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
            self.contexts[name] = ctx
        self.serving = serving
        self.sni: list[str | None] = []
        self.handshakes = 0
        super().__init__()

    def url_for(self, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}"

    def _pick(self, sslobj: ssl.SSLObject, server_name: str | None,
              _ctx: ssl.SSLContext) -> None:
        self.sni.append(server_name)
        self.handshakes += 1
        sslobj.context = self.contexts[self.serving]

    def app(self) -> web.Application:
        app = super().app()

        async def close_after(_req: web.Request, resp: web.StreamResponse) -> None:
            resp.force_close()

        app.on_response_prepare.append(close_after)
        return app

    def ssl_context(self) -> ssl.SSLContext:
        # a client that sends no SNI (an IP-address URL) gets the certificate served at start
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(*self.certs[self.serving])
        server_ctx.sni_callback = self._pick
        return server_ctx


@pytest.fixture
def make_https_origin(pki: Pki) -> Iterator[Any]:
    made: list[HttpsOrigin] = []

    def make(serving: str = "good") -> HttpsOrigin:
        o = HttpsOrigin(pki, serving)
        made.append(o)
        return o

    yield make
    for o in made:
        o.stop()


# ---- serving through TLS ----------------------------------------------------------------------
async def test_https_origin_with_ca_file_fetches_caches_and_serves_hits_and_ranges(
        pki, make_https_origin, make_edge, client):
    origin = make_https_origin()
    body = payload(3 * CHUNK + 1000, 3)
    origin.put("/v/seg1.ts", body, headers=CC)
    edge = make_edge(origin.url_for() + "/v", origin={"ca_file": str(pki.ca)})
    r = await fetch(client, edge.url + "/seg1.ts")
    assert r.status == 200 and r.body == body and "fwd=miss" in r.cache
    misses = origin.count("/v/seg1.ts")
    assert misses == 4  # one fetch per chunk, each over its own verified TLS connection
    assert origin.sni and set(origin.sni) == {"localhost"}  # SNI carries the origin hostname
    edge.settle()
    r = await fetch(client, edge.url + "/seg1.ts")
    assert r.status == 200 and r.body == body and r.cache.startswith("edgecdn; hit")
    a, b = CHUNK - 10, 2 * CHUNK + 9  # crosses two chunk boundaries
    r = await fetch(client, edge.url + "/seg1.ts", headers={"Range": f"bytes={a}-{b}"})
    assert r.status == 206 and r.body == body[a:b + 1]
    assert r.headers["content-range"] == f"bytes {a}-{b}/{len(body)}"
    r = await fetch(client, edge.url + "/seg1.ts", headers={"Range": "bytes=-500"})
    assert r.status == 206 and r.body == body[-500:]
    assert origin.count("/v/seg1.ts") == misses  # hits and ranges never went back to origin


async def test_https_origin_by_ip_address_is_checked_against_the_ip_san(
        pki, make_https_origin, make_edge, client):
    origin = make_https_origin()
    origin.put("/ip", b"by address", headers=CC)
    edge = make_edge(origin.url_for("127.0.0.1"), origin={"ca_file": str(pki.ca)})
    r = await fetch(client, edge.url + "/ip")
    assert r.status == 200 and r.body == b"by address"

    bare = make_https_origin("name_only")  # names localhost only: not valid for 127.0.0.1
    bare.put("/ip", b"by address", headers=CC)
    edge = make_edge(bare.url_for("127.0.0.1"), origin={"ca_file": str(pki.ca)})
    r = await fetch(client, edge.url + "/ip")
    assert r.status == 502 and r.body == b"origin TLS certificate is for another IP address\n"


async def test_self_signed_origin_is_trusted_by_naming_its_certificate_as_ca_file(
        pki, make_https_origin, make_edge, client):
    origin = make_https_origin("self_signed")
    origin.put("/ss", b"pinned", headers=CC)
    edge = make_edge(origin.url_for(), origin={"ca_file": str(pki.certs["self_signed"][0])})
    r = await fetch(client, edge.url + "/ss")
    assert r.status == 200 and r.body == b"pinned"
    edge = make_edge(origin.url_for(), origin={"ca_file": str(pki.ca)})
    r = await fetch(client, edge.url + "/ss")
    assert r.status == 502 and r.body == b"origin TLS certificate not trusted (self-signed)\n"


@pytest.mark.parametrize("serving,ca,reason", [
    ("good", False, b"origin TLS certificate not trusted\n"),  # system store lacks our CA
    ("rogue", True, b"origin TLS certificate not trusted\n"),  # signed by another CA
    ("other_host", True, b"origin TLS certificate is for another hostname\n"),
    ("expired", True, b"origin TLS certificate expired\n"),
])
async def test_bad_origin_certificate_gives_502_with_the_reason(
        pki, make_https_origin, make_edge, client, serving, ca, reason):
    origin = make_https_origin(serving)
    origin.put("/x.ts", b"secret", headers=CC)
    edge = make_edge(origin.url_for(), origin={"ca_file": str(pki.ca)} if ca else {})
    for _ in range(2):  # and again: a failed handshake is not cached as an answer
        r = await fetch(client, edge.url + "/x.ts")
        assert r.status == 502 and r.body == reason
        assert "fwd=request" in r.cache or "fwd=miss" in r.cache, r.cache
        r = await fetch(client, edge.url + "/x.ts", method="HEAD")
        assert r.status == 502
    assert origin.count("/x.ts") == 0 and origin.handshakes >= 2  # no request got through


async def test_plain_http_server_behind_an_https_url_gives_502(origin, make_edge, client):
    origin.put("/p", b"plain", headers=CC)
    edge = make_edge(origin.url.replace("http://", "https://"))
    r = await fetch(client, edge.url + "/p")
    assert r.status == 502 and r.body == b"origin TLS handshake failed\n", r.body


async def test_origin_that_never_finishes_the_handshake_gives_504_not_a_hang(make_edge, client):
    """TCP accepted, TLS never answered: the connect + first-byte budget ends it."""
    accepted = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def mute(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)
        accepted.set()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        edge = make_edge(f"https://localhost:{port}",
                         origin={"connect_timeout": 0.3, "first_byte_timeout": 0.3})
        r = await asyncio.wait_for(fetch(client, edge.url + "/m"), 10)
        assert accepted.is_set() and r.status == 504 and b"timed out" in r.body
    finally:
        for w in held:
            w.close()
        server.close()


async def test_tls_failure_serves_stale_if_error_else_502(pki, make_https_origin, make_edge,
                                                          client):
    origin = make_https_origin()
    origin.put("/sie", b"s" * 100, headers={"Cache-Control": "max-age=0, stale-if-error=600",
                                            "ETag": '"s"'})
    origin.put("/nosie", b"n" * 100, headers={"Cache-Control": "max-age=0", "ETag": '"n"'})
    edge = make_edge(origin.url_for(), origin={"ca_file": str(pki.ca)})
    assert (await fetch(client, edge.url + "/sie")).status == 200
    assert (await fetch(client, edge.url + "/nosie")).status == 200
    edge.settle()
    origin.serving = "expired"  # the origin's certificate lapses
    r = await fetch(client, edge.url + "/sie")
    assert r.status == 200 and r.body == b"s" * 100
    assert "fwd=stale" in r.cache and "stale-if-error" in r.cache
    r = await fetch(client, edge.url + "/nosie")
    assert r.status == 502 and r.body == b"origin TLS certificate expired\n"
    origin.serving = "good"  # renewed: revalidation works again
    r = await fetch(client, edge.url + "/nosie")
    assert r.status == 200 and r.body == b"n" * 100


# ---- an https S3 endpoint ----------------------------------------------------------------------
def put_s3(s3_endpoint: str, bucket: str, key: str, body: bytes) -> None:
    """One object into the moto bucket, over plain HTTP (boto3 is given no test CA)."""
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").put_object(
        Bucket=bucket, Key=key, Body=body)


class TlsS3Front:
    """A TLS-terminating proxy in front of the moto S3 server: an https S3-compatible endpoint
    signed by the test CA (moto itself only speaks plain HTTP)."""

    def __init__(self, cert: tuple[Path, Path], upstream: str) -> None:
        self.upstream = upstream
        self.cert = cert
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self._ready.wait(10)

    async def handle(self, req: web.Request) -> web.StreamResponse:
        self.requests += 1
        fwd = {k: v for k, v in req.headers.items() if k.lower() in
               ("range", "if-none-match", "if-modified-since", "if-match")}
        async with self.session.request(req.method, self.upstream + req.path_qs,
                                        headers=fwd) as up:
            body = await up.read()
            keep = ("content-type", "content-range", "etag", "last-modified", "accept-ranges")
            resp = web.Response(status=up.status, body=body if req.method != "HEAD" else None,
                                headers={k: v for k, v in up.headers.items()
                                         if k.lower() in keep})
            if req.method == "HEAD":
                resp.content_length = int(up.headers.get("Content-Length", "0"))
            return resp

    @staticmethod
    async def _session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(auto_decompress=False)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.session = self.loop.run_until_complete(self._session())
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*self.cert)
        self.runner, self.port = start_site(self.loop, app, ctx)
        self._ready.set()
        run_then_close(self.loop)

    def __enter__(self) -> TlsS3Front:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        async def _stop() -> None:
            await self.session.close()
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def test_https_s3_endpoint_is_verified_with_the_same_ca_file(
        pki, s3_endpoint, s3_bucket, make_edge, client):
    body = payload(2 * CHUNK + 77, 5)
    put_s3(s3_endpoint, s3_bucket, "hls/seg.ts", body)
    # boto3 only presigns: it is given no CA, so were it to connect to the https endpoint the
    # trusting edge below would fail too
    with TlsS3Front(pki.certs["good"], s3_endpoint) as front:
        https = f"https://localhost:{front.port}"
        edge = make_edge(f"s3://{s3_bucket}/hls",
                         origin={"endpoint_url": https, "ca_file": str(pki.ca)})
        r = await fetch(client, edge.url + "/seg.ts")
        assert r.status == 200 and r.body == body
        edge.settle()
        before = front.requests
        r = await fetch(client, edge.url + "/seg.ts", headers={"Range": f"bytes={CHUNK - 5}-"})
        assert r.status == 206 and r.body == body[CHUNK - 5:]
        assert front.requests == before  # served from cache
        untrusting = make_edge(f"s3://{s3_bucket}/hls", origin={"endpoint_url": https})
        r = await fetch(client, untrusting.url + "/seg.ts")
        assert r.status == 502 and r.body == b"origin TLS certificate not trusted\n"


# ---- configuration -------------------------------------------------------------------------------
def _doc(**origin: Any) -> dict[str, Any]:
    return {"origin": {"url": "https://origin.example", **origin}}


def test_ca_file_is_loaded_at_start_and_kept_as_an_absolute_path(pki, monkeypatch):
    monkeypatch.chdir(pki.ca.parent)
    from edge.config import build_config

    cfg = build_config(_doc(ca_file="ca.pem"))
    assert cfg.origin.ca_file == str(pki.ca)
    assert build_config(_doc()).origin.ca_file is None


@pytest.mark.parametrize("content,expect", [
    (None, "cannot read"),  # missing
    (b"", "no PEM certificate"),
    (b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
     "no PEM certificate"),
    ("key", "no PEM certificate"),  # a private key is not a CA
    ("dir", "cannot read"),
])
def test_bad_ca_file_is_a_config_error_naming_the_key(pki, tmp_path, content, expect):
    from edge.config import build_config

    path = tmp_path / "bad.pem"
    if content == "key":
        path = pki.certs["good"][1]
    elif content == "dir":
        path = tmp_path
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"^origin\.ca_file: {expect}"):
        build_config(_doc(ca_file=str(path)))


def test_tls_verify_off_is_refused_with_the_alternative():
    from edge.config import build_config

    with pytest.raises(ConfigError, match=r"^origin\.tls_verify: .*origin\.ca_file"):
        build_config(_doc(tls_verify=False))


def test_origin_ca_file_flag_overrides_the_file(pki, tmp_path):
    import argparse

    other = tmp_path / "other.pem"
    other.write_bytes(pki.ca.read_bytes())
    conf = tmp_path / "edge.toml"
    conf.write_text(f'[origin]\nurl = "https://localhost"\nca_file = "{pki.ca}"\n')
    p = argparse.ArgumentParser()
    register(p.add_subparsers())
    a = p.parse_args(["edge", "--config", str(conf)])
    assert load_config(a.config, overrides(a)).origin.ca_file == str(pki.ca)
    a = p.parse_args(["edge", "--config", str(conf), "--origin-ca-file", str(other)])
    assert load_config(a.config, overrides(a)).origin.ca_file == str(other)


# ---- a real `edgecdn edge` process ---------------------------------------------------------------
def _proc_args(origin_url: str, cache_dir: Path, port: int, *extra: str) -> list[str]:
    return ["--origin", origin_url, "--listen", f"127.0.0.1:{port}", "--cache-dir",
            str(cache_dir), "--chunk-size", str(CHUNK), "--memory-cache", "4MiB",
            "--disk-cache", "64MiB", "--policy", "lru", "--access-log", "", "--no-fsync",
            *extra]


@pytest.mark.parametrize("workers", [1, 2])
async def test_edge_process_with_origin_ca_file_serves_an_https_origin(
        pki, make_https_origin, edge_procs, tmp_path, client, workers):
    origin = make_https_origin()
    body = payload(2 * CHUNK + 5, 9)
    origin.put("/p/a.ts", body, headers=CC)
    port = free_port()
    e = EdgeProcess(_proc_args(origin.url_for() + "/p", tmp_path / "c", port,
                               "--origin-ca-file", str(pki.ca), "--workers", str(workers)))
    edge_procs.append(e)
    e.wait_ready(workers)  # each worker re-reads the config and builds its own TLS context
    url = f"http://127.0.0.1:{port}"
    r = await fetch(client, url + "/a.ts")
    assert r.status == 200 and r.body == body
    n = origin.count("/p/a.ts")
    assert n == 3  # one verified fetch per chunk, whichever worker owns it
    r = await fetch(client, url + "/a.ts", headers={"Range": f"bytes={CHUNK}-{CHUNK + 9}"})
    assert r.status == 206 and r.body == body[CHUNK:CHUNK + 10]
    assert origin.count("/p/a.ts") == n and set(origin.sni) == {"localhost"}
    assert e.term() == 0


@pytest.mark.parametrize("bad", ["missing", "not_pem"])
def test_edge_process_with_a_bad_origin_ca_file_exits_with_the_reason(tmp_path, edge_procs,
                                                                      bad):
    ca = tmp_path / "ca.pem"
    if bad == "not_pem":
        ca.write_text("hello\n")
    e = EdgeProcess(_proc_args("https://localhost:1", tmp_path / "c", free_port(),
                               "--origin-ca-file", str(ca)))
    edge_procs.append(e)
    assert e.proc.wait(30) == 2
    with e._cv:  # the reader thread may still be draining stderr: wait for its lines
        e._cv.wait_for(lambda: any("config error" in x for x in e.lines), 10)
    out = "".join(e.lines)
    assert "config error: origin.ca_file:" in out and str(ca) in out, out
    assert not e.ready_lines()
