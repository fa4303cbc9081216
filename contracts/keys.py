"""Content keys: what a request path names (title, rendition, segment).

Path convention for packaged titles (origin layout, edge URLs, fill manifests):
    /titles/<title>/master.m3u8
    /titles/<title>/<rendition>/index.m3u8
    /titles/<title>/<rendition>/seg_00003.ts   (or .m4s, init.mp4)
Any other path is still a valid object; it just has no title/rendition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

_SEG_NUM = re.compile(r"(\d+)(?=\.[A-Za-z0-9]+$)")
MAX_PATH = 4096


class BadPath(ValueError):
    """A request path that must be refused with 400 (traversal, NUL, not absolute...)."""


def normalize_path(raw: str) -> str:
    """Decoded absolute path, or BadPath. Never resolves '..': it refuses it."""
    if not raw.startswith("/"):
        raise BadPath("path must start with /")
    if len(raw) > MAX_PATH:
        raise BadPath("path too long")
    try:  # an escape that is not UTF-8 would name another object once replaced: refuse it
        path = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadPath("path escapes are not UTF-8") from None
    if "\x00" in path or "\\" in path:
        raise BadPath("path has NUL or backslash")
    parts = path.split("/")
    if any(p in ("..", ".") for p in parts):
        raise BadPath("path traversal")
    if "//" in path:
        raise BadPath("empty path segment")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise BadPath("control character in path")
    return path


@dataclass(frozen=True, slots=True)
class ContentKey:
    path: str
    title: str | None
    rendition: str | None
    name: str
    segment: int | None  # number parsed from the file name; None for playlists/init

    @classmethod
    def parse(cls, path: str) -> ContentKey:
        parts = path.strip("/").split("/")
        name = parts[-1] if parts else ""
        title = rendition = None
        if len(parts) >= 3 and parts[0] == "titles":
            title = parts[1]
            if len(parts) >= 4:
                rendition = parts[2]
        seg = None
        if not name.endswith((".m3u8", ".mpd")):
            m = _SEG_NUM.search(name)
            if m:
                seg = int(m.group(1))
        return cls(path, title, rendition, name, seg)

    @property
    def title_prefix(self) -> str:
        """The prefix a signed token covers: the title's folder, else the path itself."""
        return f"/titles/{self.title}/" if self.title else self.path


def chunk_key(object_key: str, index: int) -> str:
    """Key of the index-th fixed-size chunk of an object (the unit of storage and eviction)."""
    return f"{object_key}#{index}"


def split_chunk_key(key: str) -> tuple[str, int]:
    obj, _, idx = key.rpartition("#")
    return obj, int(idx)
