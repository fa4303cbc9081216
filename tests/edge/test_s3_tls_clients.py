"""The edge's own S3 clients (fill manifests, log shipping) trust the same origin.ca_file as
its origin fetches: an https S3 endpoint signed by a private CA works with it, and without it
the request fails on the certificate (never silently unverified)."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import aiohttp
import boto3
import pytest
from aiohttp import web
from botocore.exceptions import SSLError

from edge.fill.source import S3ManifestSource
from edge.logship import LogShipper
from tests.edge.server.test_https_origin import TlsS3Front, pki, put_s3  # noqa: F401 (fixture)


class TlsS3Proxy(TlsS3Front):
    """The https front of the origin tests, passing request bodies and headers through too
    (log shipping uploads)."""

    async def handle(self, req: web.Request) -> web.StreamResponse:
        self.requests += 1
        fwd = {k: v for k, v in req.headers.items() if k.lower() not in ("host", "transfer-encoding")}
        async with self.session.request(req.method, self.upstream + req.path_qs, headers=fwd,
                                        data=await req.read()) as up:
            body = await up.read()
            keep = ("content-type", "content-range", "etag", "last-modified", "accept-ranges")
            return web.Response(status=up.status, body=body if req.method != "HEAD" else None,
                                headers={k: v for k, v in up.headers.items()
                                         if k.lower() in keep})

    @staticmethod
    async def _session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=("Content-Type",))


@pytest.fixture
def https_s3(pki, s3_endpoint):  # noqa: F811
    with TlsS3Proxy(pki.certs["good"], s3_endpoint) as front:
        yield f"https://localhost:{front.port}"


def test_manifest_source_trusts_the_ca_file(pki, https_s3, s3_endpoint, s3_bucket):  # noqa: F811
    doc = b'{"not": "checked here"}'
    put_s3(s3_endpoint, s3_bucket, "manifests/lon/lon-1.json", doc)
    trusting = S3ManifestSource(s3_bucket, "manifests/lon/lon-1.json", https_s3,
                                "us-east-1", ca_file=str(pki.ca))
    got = trusting._get()
    assert got is not None and got[0] == doc
    untrusting = S3ManifestSource(s3_bucket, "manifests/lon/lon-1.json", https_s3, "us-east-1")
    with pytest.raises(SSLError):
        untrusting._get()


async def test_log_shipper_trusts_the_ca_file(pki, https_s3, s3_endpoint, s3_bucket,  # noqa: F811
                                              tmp_path: Path):
    spool = tmp_path / "logs"
    spool.mkdir()
    line = b'{"path": "/titles/t1/seg_00001.ts", "status": 200}\n'
    (spool / "access-123-1.ready").write_bytes(line * 50)
    untrusting = LogShipper(spool, bucket=s3_bucket, prefix="logs/", site="lon", edge="lon-1",
                            endpoint_url=https_s3, region="us-east-1")
    assert await asyncio.to_thread(untrusting.ship_once) is False
    assert "SSL" in untrusting.last_error and (spool / "access-123-1.ready").exists()
    trusting = LogShipper(spool, bucket=s3_bucket, prefix="logs/", site="lon", edge="lon-1",
                          endpoint_url=https_s3, region="us-east-1", ca_file=str(pki.ca))
    assert await asyncio.to_thread(trusting.ship_once) is True
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="logs/lon/lon-1/")
            .get("Contents", [])]
    assert len(keys) == 1
    body = s3.get_object(Bucket=s3_bucket, Key=keys[0])["Body"].read()
    assert gzip.decompress(body) == line * 50
    assert not (spool / "access-123-1.ready").exists()
