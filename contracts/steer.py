"""The steering answer players receive from ``GET /v1/steer`` (JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class SteerTarget:
    url: str  # absolute URL, signed (edge token or CloudFront signature)
    kind: str  # "edge" | "cloudfront"
    edge: str = ""  # edge name ("" for cloudfront)
    site: str = ""
    region: str = ""
    distance_km: float = 0.0


@dataclass(slots=True)
class SteerResponse:
    path: str
    targets: list[SteerTarget]  # try in order; CloudFront (if configured) is last
    ttl: int  # seconds the player may reuse this answer
    reason: dict[str, Any] = field(default_factory=dict)  # client geo, site chosen, fallback...

    @property
    def urls(self) -> list[str]:
        return [t.url for t in self.targets]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["urls"] = self.urls
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SteerResponse:
        return cls(
            path=str(d["path"]),
            targets=[SteerTarget(**t) for t in d["targets"]],
            ttl=int(d["ttl"]),
            reason=dict(d.get("reason", {})),
        )
