"""Access log records: the edge writes them (JSON lines), the fill planner reads them.

One record per response. Compact keys keep the log cheap to write on the hot path.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class AccessRecord:
    ts: float  # unix seconds when the response finished
    client: str
    method: str
    path: str
    status: int
    bytes: int  # body bytes sent
    cache: str  # "hit" | "miss" | "stale" | "revalidated" | "pass" | "error" ...
    dur_ms: float
    range: str = ""  # the Range header as sent, "" when none
    edge: str = ""
    site: str = ""
    region: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str | bytes) -> AccessRecord:
        d: dict[str, Any] = json.loads(line)
        return cls(
            ts=float(d["ts"]), client=str(d.get("client", "")), method=str(d.get("method", "GET")),
            path=str(d["path"]), status=int(d["status"]), bytes=int(d.get("bytes", 0)),
            cache=str(d.get("cache", "")), dur_ms=float(d.get("dur_ms", 0.0)),
            range=str(d.get("range", "")), edge=str(d.get("edge", "")),
            site=str(d.get("site", "")), region=str(d.get("region", "")),
        )
