"""Real parts shared by every test: free loopback ports, a moto S3 server, ffmpeg HLS.

Area-specific fixtures live in tests/<area>/conftest.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def free_port(host: str = "127.0.0.1") -> int:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 HTTP endpoint (moto server mode) on a free loopback port."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    p = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=p, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{p}"
    os.environ["AWS_ENDPOINT_URL_S3"] = url
    yield url
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket on the moto server; name is unique per test."""
    import boto3

    name = f"t-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def make_hls(ffmpeg: str, out: Path, seconds: int = 12, size: str = "320x180",
             bitrate: str = "300k") -> Path:
    """A real HLS rendition (libx264 testsrc + sine audio, 4 s segments); returns index.m3u8."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc=size={size}:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-b:v", bitrate,
        "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", "64k", "-shortest",
        "-f", "hls", "-hls_time", "4", "-hls_playlist_type", "vod",
        "-hls_segment_filename", str(out / "seg_%05d.ts"), str(out / "index.m3u8"),
    ]
    subprocess.run(cmd, check=True, timeout=120)
    return out / "index.m3u8"


@pytest.fixture(scope="session")
def hls_rendition(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """Directory holding a real 12 s HLS rendition: index.m3u8 + seg_0000N.ts."""
    d = tmp_path_factory.mktemp("hls") / "r360"
    make_hls(ffmpeg, d)
    return d


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED
