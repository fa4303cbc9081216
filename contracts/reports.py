"""The edge's health/load report: what an edge's ``GET /healthz`` returns and steering reads.

Kept small and versioned (like Traffic Control's cache states): steering validates a
report before it replaces the last good one, and ignores fields it does not know.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1
STATUSES = ("ok", "degraded", "draining", "starting")


class ReportError(ValueError):
    pass


@dataclass(slots=True)
class TierUsage:
    used_bytes: int
    capacity_bytes: int
    objects: int = 0
    full: bool = False  # disk tier: writes failing (ENOSPC) -> passing through


@dataclass(slots=True)
class EdgeReport:
    status: str  # one of STATUSES; "degraded" still serves (e.g. disk full)
    active_connections: int
    egress_bps: float  # bytes/s over the last few seconds
    capacity_bps: float  # configured egress capacity (0: unknown)
    hit_ratio: float  # requests served from cache / requests, since start
    tiers: dict[str, TierUsage] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)  # why degraded, human readable
    fill: dict[str, Any] = field(default_factory=dict)  # fill progress, bytes by source
    version: int = SCHEMA_VERSION

    @property
    def load(self) -> float:
        """Egress as a fraction of capacity; 0 when capacity is unknown."""
        return self.egress_bps / self.capacity_bps if self.capacity_bps > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["load"] = round(self.load, 4)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> EdgeReport:
        if not isinstance(d, dict):
            raise ReportError("report is not an object")
        try:
            status = str(d["status"])
            if status not in STATUSES:
                raise ReportError(f"unknown status {status!r}")
            tiers = {
                str(k): TierUsage(
                    int(v["used_bytes"]), int(v["capacity_bytes"]), int(v.get("objects", 0)),
                    bool(v.get("full", False)),
                )
                for k, v in dict(d.get("tiers", {})).items()
            }
            rep = cls(
                status=status,
                active_connections=int(d["active_connections"]),
                egress_bps=float(d["egress_bps"]),
                capacity_bps=float(d.get("capacity_bps", 0.0)),
                hit_ratio=float(d.get("hit_ratio", 0.0)),
                tiers=tiers,
                reasons=[str(r) for r in d.get("reasons", [])],
                fill=dict(d.get("fill", {})),
                version=int(d.get("version", SCHEMA_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ReportError):
                raise
            raise ReportError(f"bad report: {e}") from e
        if not (math.isfinite(rep.egress_bps) and math.isfinite(rep.capacity_bps)
                and math.isfinite(rep.hit_ratio)):
            raise ReportError("load figures must be finite numbers")  # NaN would look idle
        if rep.egress_bps < 0 or rep.active_connections < 0:
            raise ReportError("negative load figures")
        return rep
