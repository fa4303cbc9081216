"""``edgecdn origin package``: a video file -> an HLS ladder ready for ``origin ingest``.

One ffmpeg run (the binary shipped by imageio-ffmpeg) splits the decoded video into every
rendition, so all renditions share one timeline. Key frames are forced every SEGMENT
seconds (``-force_key_frames``, scene-cut off), so segment N of every rendition starts at
the same instant and a player can switch renditions at any segment boundary.

Layout written to OUT::

    master.m3u8
    <rendition>/index.m3u8
    <rendition>/seg_00000.ts ...
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LADDER = "720:3000k,480:1200k,360:600k"
_TITLE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class PackageError(ValueError):
    """Bad input or an ffmpeg failure; the message says which."""


@dataclass(frozen=True, slots=True)
class Rendition:
    name: str  # e.g. "480p": the folder name
    height: int
    video_bitrate: str  # ffmpeg syntax, e.g. "1200k"

    @property
    def bandwidth_bits(self) -> int:
        return _bits(self.video_bitrate)


def _bits(rate: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", rate.strip())
    if not m:
        raise PackageError(f"bad bitrate {rate!r} (try 1200k or 3M)")
    mult = {"": 1, "k": 1000, "m": 1_000_000}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def check_title(title: str) -> str:
    """Title ids become URL path segments and S3 key parts: keep them plain."""
    if not _TITLE_RE.match(title) or title in (".", ".."):
        raise PackageError(f"bad title id {title!r}: use letters, digits, '.', '_', '-'")
    return title


def parse_ladder(spec: str) -> list[Rendition]:
    """``"720:3000k,480:1200k"`` -> renditions, highest first; heights must be distinct/even."""
    out: list[Rendition] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        h, sep, rate = part.partition(":")
        if not sep or not h.isdigit():
            raise PackageError(f"bad ladder step {part!r} (want HEIGHT:BITRATE, e.g. 480:1200k)")
        height = int(h)
        if height < 16 or height > 4320 or height % 2:
            raise PackageError(f"bad height {height} (even, 16..4320)")
        _bits(rate)
        out.append(Rendition(f"{height}p", height, rate))
    if not out:
        raise PackageError("empty ladder")
    if len({r.height for r in out}) != len(out):
        raise PackageError("ladder heights must be distinct")
    return sorted(out, key=lambda r: -r.height)


def has_audio(ffmpeg: str, src: Path) -> bool:
    """ffmpeg -i prints the stream list on stderr (imageio-ffmpeg ships no ffprobe)."""
    res = subprocess.run([ffmpeg, "-hide_banner", "-i", str(src)], capture_output=True,
                         text=True, timeout=60)
    if "Invalid data found" in res.stderr or "No such file" in res.stderr:
        raise PackageError(f"{src}: not a readable media file")
    if not re.search(r"Stream #\d+:\d+.*: Video:", res.stderr):
        raise PackageError(f"{src}: no video stream")
    return bool(re.search(r"Stream #\d+:\d+.*: Audio:", res.stderr))


def ffmpeg_command(ffmpeg: str, src: Path, out: Path, ladder: list[Rendition],
                   segment: float = 4.0, audio: bool = True, preset: str = "veryfast",
                   audio_bitrate: str = "96k") -> list[str]:
    """The whole ffmpeg command line (pure, so it can be inspected and tested)."""
    n = len(ladder)
    labels = "".join(f"[v{i}]" for i in range(n))
    graph = [f"[0:v]split={n}{labels}"]
    graph += [f"[v{i}]scale=-2:{r.height}[o{i}]" for i, r in enumerate(ladder)]
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
           "-filter_complex", ";".join(graph)]
    for i, r in enumerate(ladder):
        rate = _bits(r.video_bitrate)
        cmd += ["-map", f"[o{i}]", f"-c:v:{i}", "libx264", f"-b:v:{i}", r.video_bitrate,
                f"-maxrate:v:{i}", str(int(rate * 1.1)), f"-bufsize:v:{i}", str(rate * 2)]
        if audio:
            cmd += ["-map", "0:a:0"]
    cmd += ["-preset", preset, "-pix_fmt", "yuv420p", "-sc_threshold", "0",
            "-force_key_frames", f"expr:gte(t,n_forced*{segment:g})"]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", audio_bitrate, "-ac", "2"]
    vmap = " ".join(
        f"v:{i},a:{i},name:{r.name}" if audio else f"v:{i},name:{r.name}"
        for i, r in enumerate(ladder)
    )
    cmd += ["-f", "hls", "-hls_time", f"{segment:g}", "-hls_playlist_type", "vod",
            "-hls_flags", "independent_segments", "-master_pl_name", "master.m3u8",
            "-hls_segment_filename", str(out / "%v" / "seg_%05d.ts"),
            "-var_stream_map", vmap, str(out / "%v" / "index.m3u8")]
    return cmd


def package(src: Path, out: Path, title: str, ladder: list[Rendition] | None = None,
            segment: float = 4.0, ffmpeg: str | None = None, preset: str = "veryfast") -> Path:
    """Package SRC into OUT; returns the master playlist path."""
    check_title(title)
    if not src.is_file():
        raise PackageError(f"input not found: {src}")
    if not (1.0 <= segment <= 30.0):
        raise PackageError("segment length must be 1..30 s")
    if ffmpeg is None:
        import imageio_ffmpeg

        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    ladder = ladder or parse_ladder(DEFAULT_LADDER)
    audio = has_audio(ffmpeg, src)
    out.mkdir(parents=True, exist_ok=True)
    for r in ladder:
        (out / r.name).mkdir(exist_ok=True)
    cmd = ffmpeg_command(ffmpeg, src, out, ladder, segment, audio, preset)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise PackageError(f"ffmpeg failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    master = out / "master.m3u8"
    if not master.is_file():
        raise PackageError("ffmpeg wrote no master playlist")
    return master
