"""JSON decision log lines, buffered: the request path appends a tuple, ``flush`` (called from
the service's ticker) formats and writes them, so logging costs the hot path ~nothing."""

from __future__ import annotations

import json
import sys
from typing import IO


class DecisionLog:
    def __init__(self, target: str, sample: float = 1.0) -> None:
        self.enabled = bool(target) and sample > 0
        self.sample = sample
        self._buf: list[tuple] = []
        self._out: IO[str] | None = None
        if target == "-":
            self._out = sys.stderr
        elif target:
            self._out = open(target, "a", buffering=1 << 16)  # noqa: SIM115 - lives with server

    def add(self, rec: tuple) -> None:
        """rec = (time, client, geo source, path, choice, region, site, edges, cloudfront?)"""
        self._buf.append(rec)

    def flush(self) -> None:
        if not self._buf or self._out is None:
            self._buf.clear()
            return
        buf, self._buf = self._buf, []
        lines = []
        for t, client, source, path, choice, region, site, edges, cf in buf:
            lines.append(json.dumps({
                "time": round(t, 3), "client": client, "geo": source, "path": path,
                "reason": choice, "region": region, "site": site, "edges": edges,
                "cloudfront": cf,
            }, separators=(",", ":")))
        self._out.write("\n".join(lines) + "\n")
        self._out.flush()

    def close(self) -> None:
        self.flush()
        if self._out is not None and self._out is not sys.stderr:
            self._out.close()
