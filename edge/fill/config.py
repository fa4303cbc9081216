"""The edge's ``[fill]`` section: where its manifest is, when and how fast to fill.

    [fill]
    enabled = true
    manifests = "s3://video-origin/manifests/"   # where `edgecdn fill plan` writes
    # endpoint_url = "http://127.0.0.1:9000"     # default: [origin] endpoint_url / AWS chain
    window = "02:00-14:00"     # local time; "always"/"now" or "never"
    rate = "50MiB"             # bandwidth cap, bytes per second (0 = no cap)
    refresh = 300              # seconds between manifest checks
    retry = 10                 # seconds before retrying objects a pass could not fetch
    busy_load = 0.7            # pause while serving load (egress/capacity) is above this
    concurrency = 2            # objects fetched at once
    peer_timeout = 5.0         # seconds to connect / first byte / between bytes from a peer
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.config import ConfigError
from contracts.manifest import parse_s3_url
from contracts.sizes import parse_size
from edge.fill.window import FillWindow

PEER_FILL_HEADER = "x-edgecdn-peer-fill"  # "1": answer only from cache (200/206) or 404


@dataclass(slots=True)
class FillConfig:
    enabled: bool = False
    manifests: str = ""  # s3://bucket/prefix/
    endpoint_url: str | None = None
    region: str | None = None
    window: FillWindow = FillWindow.parse("02:00-14:00")
    rate: int = 50 * 1024**2  # bytes/s; 0 = unlimited
    refresh: float = 300.0
    retry: float = 10.0  # seconds before a pass that left objects missing is retried
    busy_load: float = 0.7
    concurrency: int = 2
    peer_timeout: float = 5.0

    @property
    def manifests_location(self) -> tuple[str, str]:
        return parse_s3_url(self.manifests)

    @classmethod
    def from_section(cls, sec: dict[str, Any] | None) -> FillConfig:
        """From the TOML ``[fill]`` table; ConfigError names the bad key."""
        sec = dict(sec or {})
        known = {"enabled", "manifests", "endpoint_url", "region", "window", "rate", "refresh", "retry",
                 "busy_load", "concurrency", "peer_timeout"}
        for k in sec:
            if k not in known:
                raise ConfigError(f"fill.{k}: unknown key")
        cfg = cls()
        enabled = sec.get("enabled", bool(sec.get("manifests")))
        if not isinstance(enabled, bool):
            raise ConfigError("fill.enabled: must be true or false")
        cfg.enabled = enabled
        cfg.manifests = str(sec.get("manifests", ""))
        if cfg.enabled:
            try:
                parse_s3_url(cfg.manifests)
            except ValueError as e:
                raise ConfigError(f"fill.manifests: {e}") from e
            if not cfg.manifests.endswith("/"):
                cfg.manifests += "/"
        cfg.endpoint_url = sec.get("endpoint_url") or None
        cfg.region = sec.get("region") or None
        try:
            cfg.window = FillWindow.parse(str(sec.get("window", "02:00-14:00")))
        except ValueError as e:
            raise ConfigError(f"fill.window: {e}") from e
        try:
            cfg.rate = parse_size(sec.get("rate", cfg.rate))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"fill.rate: {e}") from e
        for key, lo in (("refresh", 0.01), ("retry", 0.01), ("busy_load", 0.0), ("peer_timeout", 0.01)):
            v = sec.get(key, getattr(cfg, key))
            if isinstance(v, bool) or not isinstance(v, int | float) or v < lo:
                raise ConfigError(f"fill.{key}: must be a number >= {lo}")
            setattr(cfg, key, float(v))
        conc = sec.get("concurrency", cfg.concurrency)
        if isinstance(conc, bool) or not isinstance(conc, int) or not 1 <= conc <= 64:
            raise ConfigError("fill.concurrency: must be an integer 1..64")
        cfg.concurrency = conc
        return cfg
