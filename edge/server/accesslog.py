"""Access log: the hot path appends a tuple; this formats and writes them once a second.

A row is (ts, client, method, path, range, status, bytes, cache, dur_ms), or for an answer of
the hot path (ts, client, fields, dur_ms) where ``fields`` is that answer's method, path,
status, bytes and cache already as JSON (edge.server.hot.hot_log_fields): the same line.

Lines are contracts.logs.AccessRecord JSON, to stdout or a file, and to a spool directory
``<cache_dir>/logs/`` as ``access-<pid>-<seq>.jsonl`` files that are closed every
``rotate_seconds`` and renamed to ``access-<pid>-<seq>.ready`` for the log shipper. A file
left ``.jsonl`` by a process that died is renamed on the next start, so no line is lost.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from json.encoder import encode_basestring_ascii as _encode
from pathlib import Path
from typing import IO, Any

from contracts.logs import AccessRecord  # noqa: F401  (the format written here)
from edge.config import LogConfig
from edge.proc import pid_alive

_SPOOL_NAME = re.compile(r"^access-(\d+)-(\d+)\.jsonl$")



def recover_spool(spool: Path) -> int:
    """Rename files of dead processes to .ready; returns how many."""
    n = 0
    if not spool.is_dir():
        return 0
    for p in spool.iterdir():
        m = _SPOOL_NAME.match(p.name)
        if m and (int(m.group(1)) == os.getpid() or not pid_alive(int(m.group(1)))):
            if p.stat().st_size > 0:
                os.replace(p, p.with_suffix(".ready"))
                n += 1
            else:
                p.unlink(missing_ok=True)
    return n


class AccessLog:
    def __init__(self, cfg: LogConfig, spool_dir: Path | None, edge: str = "", site: str = "",
                 region: str = "") -> None:
        self.cfg = cfg
        self.edge, self.site, self.region = edge, site, region
        self.sink: IO[str] | None = None
        self.own_sink = False
        if cfg.access == "-":
            self.sink = sys.stdout
        elif cfg.access:
            self.sink = open(cfg.access, "a", buffering=1 << 16)  # noqa: SIM115
            self.own_sink = True
        self.lock = threading.Lock()
        self._enc: dict[str, str] = {}
        self.spool = spool_dir if cfg.spool else None
        self.seq = 0
        self.file: IO[str] | None = None
        self.path: Path | None = None
        self.opened = 0.0
        if self.spool is not None:
            self.spool.mkdir(parents=True, exist_ok=True)
            recover_spool(self.spool)
            self.seq = int(time.time() * 1000)

    def format(self, rows: list[tuple[Any, ...]]) -> str:
        """JSON lines with AccessRecord's fields, built directly (dataclasses.asdict per row
        cost ~65 us; this ~5 us): strings escaped by the json module's C encoder."""
        memo = self._enc
        if len(memo) > 100_000:
            memo.clear()

        def enc(v: str) -> str:  # the same few clients/paths repeat: escape each once
            r = memo.get(v)
            if r is None:
                r = memo[v] = _encode(v)
            return r

        tail = (f',"edge":{enc(self.edge)},"site":{enc(self.site)},'
                f'"region":{enc(self.region)}}}')
        hot_tail = ',"range":""' + tail
        out = [
            f'{{"ts":{r[0]:.3f},"client":{enc(r[1])},{r[2]},"dur_ms":{r[3]:.3f}{hot_tail}'
            if len(r) == 4 else self._general(r, enc, tail)
            for r in rows
        ]
        out.append("")
        return "\n".join(out)

    @staticmethod
    def _general(row: tuple[Any, ...], enc: Any, tail: str) -> str:
        ts, client, method, path, rng, status, nbytes, cache, dur = row
        return (f'{{"ts":{ts:.3f},"client":{enc(client)},"method":{enc(method)},'
                f'"path":{enc(path)},"status":{status},"bytes":{nbytes},"cache":{enc(cache)},'
                f'"dur_ms":{dur:.3f},"range":{enc(rng)}{tail}')

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        """Write formatted rows; rotates the spool file when due. Thread-safe (the server
        calls it from a worker thread)."""
        with self.lock:
            self._write(rows)

    @property
    def enabled(self) -> bool:
        """Does anything consume the lines (else rows need no formatting)?"""
        return self.sink is not None or self.spool is not None

    def write_text(self, text: str) -> None:
        """Write lines already formatted (``format``); thread-safe, rotates when due."""
        with self.lock:
            self._write_text(text)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        self._write_text(self.format(rows) if rows and self.enabled else "")

    def _write_text(self, text: str) -> None:
        if text:
            if self.sink is not None:
                with contextlib.suppress(OSError, ValueError):
                    self.sink.write(text)
                    self.sink.flush()
            if self.spool is not None:
                try:
                    if self.file is None:
                        self._open()
                    assert self.file is not None
                    self.file.write(text)
                    self.file.flush()
                except OSError:
                    pass
        self.maybe_rotate()

    def _open(self) -> None:
        assert self.spool is not None
        self.seq += 1
        self.path = self.spool / f"access-{os.getpid()}-{self.seq}.jsonl"
        self.file = open(self.path, "a")  # noqa: SIM115
        self.opened = time.monotonic()

    def rotation_due(self) -> bool:
        """Is a spool file open past rotate_seconds? (read without the lock: a stale answer
        only delays the rename by a tick)"""
        return self.file is not None and time.monotonic() - self.opened >= self.cfg.rotate_seconds

    def maybe_rotate(self, force: bool = False) -> None:
        if self.file is None:
            return
        if force or time.monotonic() - self.opened >= self.cfg.rotate_seconds:
            self.file.close()
            self.file = None
            assert self.path is not None
            with contextlib.suppress(OSError):
                os.replace(self.path, self.path.with_suffix(".ready"))
            self.path = None

    def close(self) -> None:
        with self.lock:
            self.maybe_rotate(force=True)
        if self.own_sink and self.sink is not None:
            self.sink.close()
            self.sink = None
