"""Just enough HLS parsing for a simulated player: master variants and media segments.

Pure functions over playlist text; URIs stay as written (resolve them with ``resolve``).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


class PlaylistError(ValueError):
    """Not a playlist a player can use."""


@dataclass(frozen=True, slots=True)
class Variant:
    uri: str
    bandwidth: int  # bits/s, from BANDWIDTH
    resolution: str = ""


@dataclass(frozen=True, slots=True)
class Segment:
    uri: str
    duration: float


def parse_master(text: str) -> list[Variant]:
    """Variants lowest bandwidth first. A media playlist counts as one variant of itself."""
    lines = [ln.strip() for ln in text.splitlines()]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError("missing #EXTM3U")
    out: list[Variant] = []
    pending: dict[str, str] | None = None
    for ln in lines[1:]:
        if ln.startswith("#EXT-X-STREAM-INF:"):
            pending = {k: v.strip('"') for k, v in _ATTR.findall(ln.split(":", 1)[1])}
        elif ln and not ln.startswith("#") and pending is not None:
            try:
                bw = int(pending.get("BANDWIDTH", "0"))
            except ValueError as e:
                raise PlaylistError(f"bad BANDWIDTH in {ln!r}") from e
            out.append(Variant(ln, bw, pending.get("RESOLUTION", "")))
            pending = None
    if not out:
        if any(ln.startswith("#EXTINF") for ln in lines):
            return []
        raise PlaylistError("master playlist lists no variants")
    return sorted(out, key=lambda v: v.bandwidth)


def parse_media(text: str) -> list[Segment]:
    lines = [ln.strip() for ln in text.splitlines()]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError("missing #EXTM3U")
    segs: list[Segment] = []
    dur: float | None = None
    for ln in lines[1:]:
        if ln.startswith("#EXTINF:"):
            try:
                dur = float(ln[8:].split(",", 1)[0])
            except ValueError as e:
                raise PlaylistError(f"bad EXTINF {ln!r}") from e
        elif ln and not ln.startswith("#"):
            if dur is None:
                raise PlaylistError(f"segment {ln!r} without EXTINF")
            segs.append(Segment(ln, dur))
            dur = None
    if not segs:
        raise PlaylistError("media playlist has no segments")
    return segs


def resolve(base_path: str, uri: str) -> str:
    """Absolute path of a playlist URI relative to the playlist at base_path."""
    if "://" in uri:
        raise PlaylistError(f"absolute URIs are not followed: {uri!r}")
    if uri.startswith("/"):
        path = uri
    else:
        path = posixpath.join(posixpath.dirname(base_path), uri)
    path = path.split("?", 1)[0]
    norm = posixpath.normpath(path)
    if not norm.startswith("/"):
        raise PlaylistError(f"bad URI {uri!r}")
    return norm
