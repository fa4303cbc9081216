"""Fixtures for origin/fill tests: a tiny real title packaged with ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from origin.package import package, parse_ladder

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
