"""Ship the edge's rotated access-log spool files to S3, gzipped, for ``edgecdn fill plan``.

The access log (edge.server.accesslog) closes a spool file every few seconds and renames it
``access-<pid>-<seq>.ready`` (``access-*.jsonl.ready`` is accepted too). The shipper uploads
each ready file to ``<logs_prefix><site>/<edge>/<ts>-<pid>-<seq>.jsonl.gz`` and only then
deletes it, so:

- nothing is lost across restarts or S3 outages: a file stays in the spool until its upload
  succeeded (outages back off, up to ``max_backoff``);
- nothing is counted twice: the object name is a function of the file (``ts`` is the file's
  mtime, which the rename keeps), so a file re-shipped after a crash between upload and
  delete overwrites the same object;
- serving never waits: compression and upload run in a worker thread, the event loop only
  sleeps between rounds. Files are gzipped in 1 MiB blocks into a spooled temp file, never
  read whole into memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.config import ConfigError
from contracts.manifest import parse_s3_url
from edge.origin_client.s3client import s3_client

log = logging.getLogger(__name__)

READY_GLOB = "access-*.ready"
_NAME = re.compile(r"^access-(\d+)-(\d+)(?:\.jsonl)?\.ready$")
_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(slots=True)
class LogShipConfig:
    """The edge's ``[logship]`` table::

        [logship]
        to = "s3://video-origin/logs/"   # where `fill plan` reads (its logs_prefix)
        interval = 10                    # seconds between rounds
        # endpoint_url = "http://127.0.0.1:9000"
    """

    enabled: bool = False
    to: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    interval: float = 10.0
    max_backoff: float = 300.0

    @classmethod
    def from_section(cls, sec: dict[str, Any] | None) -> LogShipConfig:
        sec = dict(sec or {})
        for k in sec:
            if k not in ("enabled", "to", "endpoint_url", "region", "interval", "max_backoff"):
                raise ConfigError(f"logship.{k}: unknown key")
        cfg = cls(to=str(sec.get("to", "")))
        enabled = sec.get("enabled", bool(cfg.to))
        if not isinstance(enabled, bool):
            raise ConfigError("logship.enabled: must be true or false")
        cfg.enabled = enabled
        if enabled:
            try:
                parse_s3_url(cfg.to)
            except ValueError as e:
                raise ConfigError(f"logship.to: {e}") from e
        cfg.endpoint_url = sec.get("endpoint_url") or None
        cfg.region = sec.get("region") or None
        for key in ("interval", "max_backoff"):
            v = sec.get(key, getattr(cfg, key))
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise ConfigError(f"logship.{key}: must be a positive number")
            setattr(cfg, key, float(v))
        return cfg


def object_name(path: Path) -> str:
    """``<ts>-<pid>-<seq>.jsonl.gz`` for a spool file: stable across retries."""
    ts = int(path.stat().st_mtime)
    m = _NAME.match(path.name)
    if m:
        return f"{ts}-{m.group(1)}-{m.group(2)}.jsonl.gz"
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", path.name.removeprefix("access-").split(".")[0])
    return f"{ts}-0-{stem}.jsonl.gz"


class LogShipper:
    def __init__(self, spool_dir: Path, *, bucket: str, prefix: str, site: str, edge: str,
                 endpoint_url: str | None = None, region: str | None = None,
                 interval: float = 10.0, max_backoff: float = 300.0,
                 client: Any = None, ca_file: str | None = None) -> None:
        """prefix: the logs prefix in bucket ("logs/"); site/edge name the folder; ca_file:
        the edge's origin.ca_file, trusted for an https endpoint (None: the system store)."""
        for what, v in (("site", site), ("edge", edge)):
            if not _SAFE.match(v):
                raise ValueError(f"{what} name {v!r} cannot be part of an S3 key")
        self.spool = Path(spool_dir)
        self.bucket = bucket
        self.folder = f"{prefix}{site}/{edge}/"
        self.endpoint_url, self.region = endpoint_url, region
        self.ca_file = ca_file
        self.interval, self.max_backoff = interval, max_backoff
        self._client = client
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self.shipped_files = 0
        self.shipped_bytes = 0  # uncompressed
        self.uploaded_bytes = 0  # gzipped
        self.failures = 0
        self.last_error = ""
        self.last_ship_at: float | None = None
        self.rounds = 0
        self.round_done = asyncio.Event()  # set after each round (tests, admin tools)

    @classmethod
    def from_config(cls, cfg: LogShipConfig, spool_dir: Path, site: str,
                    edge: str, ca_file: str | None = None) -> LogShipper:
        bucket, prefix = parse_s3_url(cfg.to)
        return cls(spool_dir, bucket=bucket, prefix=prefix, site=site, edge=edge,
                   endpoint_url=cfg.endpoint_url, region=cfg.region, interval=cfg.interval,
                   max_backoff=cfg.max_backoff, ca_file=ca_file)

    def _s3(self) -> Any:
        if self._client is None:
            from botocore.config import Config

            self._client = s3_client(
                self.endpoint_url, self.region, ca_file=self.ca_file,
                config=Config(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=30))
        return self._client

    # -- life cycle -------------------------------------------------------------------------
    async def run(self) -> None:
        """Ship a round every interval until stop(); a last round on the way out."""
        self._stop.clear()
        delay = self.interval
        while True:
            ok = await asyncio.to_thread(self.ship_once)
            self.round_done.set()
            if self._stop.is_set():
                return
            delay = self.interval if ok else min(self.max_backoff, max(delay, 1.0) * 2)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def stop(self) -> None:
        """Finish after one more round (what the access log rotated at shutdown goes too)."""
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # -- one round (blocking; a thread) ---------------------------------------------------------
    def pending(self) -> list[Path]:
        if not self.spool.is_dir():
            return []
        return sorted(p for p in self.spool.glob(READY_GLOB) if p.is_file())

    def ship_once(self) -> bool:
        """Upload and delete every ready file, oldest first; False if any upload failed."""
        self.rounds += 1
        ok = True
        for path in self.pending():
            try:
                self._ship(path)
            except FileNotFoundError:
                continue  # shipped by another worker process in the meantime
            except Exception as e:  # S3 down, disk error: keep the file, try next round
                self.failures += 1
                self.last_error = f"{path.name}: {type(e).__name__}: {e}"
                log.warning("log ship failed: %s", self.last_error)
                ok = False
                break
        return ok

    def _ship(self, path: Path) -> None:
        key = self.folder + object_name(path)
        size = path.stat().st_size
        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as tmp:
            with path.open("rb") as src, gzip.GzipFile(fileobj=tmp, mode="wb",
                                                       compresslevel=6, mtime=0) as gz:
                shutil.copyfileobj(src, gz, 1 << 20)
            gz_size = tmp.tell()
            tmp.seek(0)
            self._s3().upload_fileobj(tmp, self.bucket, key, ExtraArgs={"ContentType": "application/gzip"})
        path.unlink()
        self.shipped_files += 1
        self.shipped_bytes += size
        self.uploaded_bytes += gz_size
        self.last_ship_at = time.time()

    def status(self) -> dict[str, Any]:
        pend = self.pending()
        pending_bytes = 0
        for p in pend:
            with contextlib.suppress(OSError):
                pending_bytes += p.stat().st_size
        return {
            "destination": f"s3://{self.bucket}/{self.folder}",
            "shipped_files": self.shipped_files, "shipped_bytes": self.shipped_bytes,
            "uploaded_bytes": self.uploaded_bytes, "pending_files": len(pend),
            "pending_bytes": pending_bytes, "failures": self.failures,
            "last_error": self.last_error, "last_ship_at": self.last_ship_at,
        }

    def metric_samples(self) -> list[tuple[str, dict[str, str], float]]:
        """(name, labels, value) for Prometheus; names are edgecdn_logship_*."""
        st = self.status()
        return [
            ("edgecdn_logship_files_total", {}, float(st["shipped_files"])),
            ("edgecdn_logship_bytes_total", {}, float(st["shipped_bytes"])),
            ("edgecdn_logship_uploaded_bytes_total", {}, float(st["uploaded_bytes"])),
            ("edgecdn_logship_pending_files", {}, float(st["pending_files"])),
            ("edgecdn_logship_pending_bytes", {}, float(st["pending_bytes"])),
            ("edgecdn_logship_failures_total", {}, float(st["failures"])),
        ]
