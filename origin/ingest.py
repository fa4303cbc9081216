"""``edgecdn origin ingest``: upload a packaged title to the S3 origin.

- Keys: ``<prefix>titles/<ID>/<relative path>``, the layout contracts.keys describes.
- Content-Type and Cache-Control by file kind: playlists/manifests change (or are fixed
  after a bad upload), so they are cached briefly; segments and init segments never change
  under a name, so they are cached for a year and marked immutable.
- Resumable: one listing of the title's prefix, then every file whose size and ETag already
  match is skipped. S3's ETag is the MD5 for a single-part upload and
  ``md5(part md5s)-N`` for a multipart one; we upload with a fixed part size and compute the
  same value locally, so the comparison holds for big files too.
- Parallel: a thread pool over files (boto3 clients are thread-safe); media first, then
  variant playlists, master last, so a playlist never names a segment that is not there yet.
"""

from __future__ import annotations

import hashlib
import mimetypes
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from origin.package import check_title
from origin.s3 import list_objects

PART_SIZE = 16 * 1024 * 1024  # multipart threshold and part size, fixed so ETags are computable

PLAYLIST_CACHE = "public, max-age=30, stale-while-revalidate=30"
SEGMENT_CACHE = "public, max-age=31536000, immutable"
OTHER_CACHE = "public, max-age=3600"

# suffix -> (Content-Type, Cache-Control, upload phase: 0 media, 1 playlists, 2 master)
KINDS: dict[str, tuple[str, str, int]] = {
    ".m3u8": ("application/vnd.apple.mpegurl", PLAYLIST_CACHE, 1),
    ".mpd": ("application/dash+xml", PLAYLIST_CACHE, 1),
    ".ts": ("video/mp2t", SEGMENT_CACHE, 0),
    ".m4s": ("video/iso.segment", SEGMENT_CACHE, 0),
    ".mp4": ("video/mp4", SEGMENT_CACHE, 0),
    ".m4v": ("video/mp4", SEGMENT_CACHE, 0),
    ".m4a": ("audio/mp4", SEGMENT_CACHE, 0),
    ".aac": ("audio/aac", SEGMENT_CACHE, 0),
    ".vtt": ("text/vtt", SEGMENT_CACHE, 0),
    ".webvtt": ("text/vtt", SEGMENT_CACHE, 0),
    ".key": ("application/octet-stream", SEGMENT_CACHE, 0),
}
MASTER_NAMES = {"master.m3u8", "manifest.mpd"}


class IngestError(ValueError):
    pass


def headers_for(name: str) -> tuple[str, str, int]:
    """(Content-Type, Cache-Control, phase) for a file name."""
    suffix = Path(name).suffix.lower()
    if suffix in KINDS:
        ctype, cc, phase = KINDS[suffix]
    else:
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        cc, phase = OTHER_CACHE, 0
    if Path(name).name in MASTER_NAMES and "/" not in name:
        phase = 2
    return ctype, cc, phase


def s3_etag(path: Path, part_size: int = PART_SIZE) -> str:
    """The ETag S3 gives this file when uploaded with this part size (no quotes)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        if size <= part_size:
            h = hashlib.md5(usedforsecurity=False)
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
            return h.hexdigest()
        digests = []
        while part := f.read(part_size):
            digests.append(hashlib.md5(part, usedforsecurity=False).digest())
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


def etag_matches(path: Path, size: int, etag: str, part_size: int = PART_SIZE) -> bool:
    """Does the object's ETag say it holds this file? A plain ETag is the whole file's MD5
    (single-part upload); a multipart one (``...-N``) is checked against every common part
    size giving N parts, so a file uploaded by another tool (the AWS CLI uses 8 MiB parts)
    is not uploaded again."""
    if "-" not in etag:
        return s3_etag(path, max(size, 1)) == etag
    try:
        parts = int(etag.rsplit("-", 1)[1])
    except ValueError:
        return False
    mib = 1024 * 1024
    candidates = {part_size, 5 * mib, 8 * mib, 16 * mib, 64 * mib, 100 * mib,
                  -(-size // parts // mib) * mib}
    for ps in sorted(c for c in candidates if c > 0 and -(-size // c) == parts):
        if s3_etag(path, ps) == etag:
            return True
    return False


@dataclass(slots=True)
class LocalFile:
    path: Path
    rel: str  # posix path relative to the title folder
    size: int
    key: str
    content_type: str
    cache_control: str
    phase: int


@dataclass(slots=True)
class IngestResult:
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    bytes_skipped: int = 0


def scan(src: Path, title: str, prefix: str) -> list[LocalFile]:
    """Every regular, non-hidden file under src, as the object it becomes."""
    if not src.is_dir():
        raise IngestError(f"not a directory: {src}")
    out = []
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src).as_posix()
        if not p.is_file() or any(part.startswith(".") for part in rel.split("/")):
            continue
        ctype, cc, phase = headers_for(rel)
        out.append(LocalFile(p, rel, p.stat().st_size, f"{prefix}titles/{title}/{rel}",
                             ctype, cc, phase))
    if not out:
        raise IngestError(f"nothing to ingest in {src}")
    return out


def ingest(src: Path, title: str, client: Any, bucket: str, prefix: str = "",
           workers: int = 8, part_size: int = PART_SIZE,
           on_progress: Callable[[int], None] | None = None,
           on_plan: Callable[[int, int], None] | None = None) -> IngestResult:
    """Upload what is missing or different; returns what was uploaded and skipped.

    on_plan(files_to_upload, bytes_to_upload) is called once, on_progress(n) per bytes sent.
    """
    from boto3.s3.transfer import TransferConfig

    check_title(title)
    files = scan(src, title, prefix)
    existing = {o["Key"]: (int(o["Size"]), str(o.get("ETag", "")).strip('"'))
                for o in list_objects(client, bucket, f"{prefix}titles/{title}/")}
    result = IngestResult()
    todo: list[LocalFile] = []
    for f in files:
        have = existing.get(f.key)
        if have and have[0] == f.size and etag_matches(f.path, f.size, have[1], part_size):
            result.skipped.append(f.key)
            result.bytes_skipped += f.size
        else:
            todo.append(f)
    if on_plan:
        on_plan(len(todo), sum(f.size for f in todo))
    cfg = TransferConfig(multipart_threshold=part_size + 1, multipart_chunksize=part_size,
                         use_threads=False)
    lock = threading.Lock()

    def put(f: LocalFile) -> None:
        client.upload_file(str(f.path), bucket, f.key, Config=cfg, Callback=on_progress,
                           ExtraArgs={"ContentType": f.content_type,
                                      "CacheControl": f.cache_control})
        with lock:
            result.uploaded.append(f.key)
            result.bytes_uploaded += f.size

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for phase in (0, 1, 2):
            batch = [f for f in todo if f.phase == phase]
            for fut in as_completed([pool.submit(put, f) for f in batch]):
                fut.result()  # the first failure stops the ingest; a rerun resumes
    return result


def ingest_with_progress(src: Path, title: str, client: Any, bucket: str, prefix: str = "",
                         workers: int = 8, show: bool = True) -> IngestResult:
    """ingest() with a rich progress bar (bytes, speed, ETA) on the terminal."""
    if not show:
        return ingest(src, title, client, bucket, prefix, workers)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as progress:
        task = progress.add_task(f"ingest {title}", total=None)

        def plan(n: int, total: int) -> None:
            progress.update(task, total=total, description=f"ingest {title} ({n} files)")

        return ingest(src, title, client, bucket, prefix, workers,
                      on_progress=lambda n: progress.advance(task, n), on_plan=plan)
