"""Fixtures for origin/fill tests: a tiny real title packaged with ffmpeg."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.config import OriginConfig
from edge.origin_client.s3_origin import S3Origin
from origin.package import package, parse_ladder
from tests.origin.standins import RecordingProxy

TINY_LADDER = "240:400k,180:250k,144:150k"


@pytest.fixture(scope="session")
def source_clip(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """A 6 s testsrc clip with audio (320x240): the input a user would have."""
    out = tmp_path_factory.mktemp("src") / "clip.mp4"
    subprocess.run([
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", "6", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest",
        str(out),
    ], check=True, timeout=120)
    return out


@pytest.fixture(scope="session")
def packaged_title(tmp_path_factory: pytest.TempPathFactory, source_clip: Path,
                   ffmpeg: str) -> Path:
    out = tmp_path_factory.mktemp("pkg") / "T1"
    package(source_clip, out, "T1", parse_ladder(TINY_LADDER), ffmpeg=ffmpeg,
            preset="ultrafast")
    return out


@pytest.fixture
async def origin(s3_endpoint: str, s3_bucket: str) -> AsyncIterator[tuple[RecordingProxy, S3Origin]]:
    """An S3 origin client whose every request goes through a recording proxy."""
    proxy = RecordingProxy(s3_endpoint)
    url = await proxy.start()
    cfg = OriginConfig(url=f"s3://{s3_bucket}/pfx", kind="s3", bucket=s3_bucket, prefix="pfx",
                       endpoint_url=url, region="us-east-1")
    client = S3Origin(cfg)
    yield proxy, client
    await client.close()
    await proxy.close()


@pytest.fixture
async def edge_origin(s3_endpoint: str) -> AsyncIterator[RecordingProxy]:
    """A recording (and cutting) proxy in front of moto, for a real edge process."""
    proxy = RecordingProxy(s3_endpoint)
    await proxy.start()
    yield proxy
    await proxy.close()
