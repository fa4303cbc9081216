"""Steering settings: the ``[steering]`` table of the fleet file, validated once at start-up.

Every knob has a default, so a fleet file with an empty ``[steering]`` table works.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from contracts.config import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(values: Any, key: str) -> tuple[Network, ...]:
    if isinstance(values, str):
        values = [values]
    try:
        return tuple(ipaddress.ip_network(str(v), strict=False) for v in values or ())
    except ValueError as e:
        raise ConfigError(f"steering.{key}: {e}") from e


@dataclass(frozen=True, slots=True)
class SteeringSettings:
    listen: str = "127.0.0.1:8300"
    dns_listen: str = ""  # "" = DNS mode off unless --dns is given
    dns_name: str = "video.edgecdn.example"
    geoip_db: str = ""  # path to a MaxMind City mmdb ("" = every client at default_region)
    default_region: str = ""  # "" = the first region of the fleet
    trusted_proxies: tuple[Network, ...] = ()  # X-Forwarded-For honoured only from these
    trusted_callers: tuple[Network, ...] = ()  # ?client_ip= honoured only from these
    admin_token: str = ""  # bearer token for /v1/admin/*; "" disables the admin API
    response_ttl: int = 30  # seconds a player may reuse an answer (and DNS TTL)
    probe_interval: float = 1.0  # seconds between /healthz probes of one edge
    probe_timeout: float = 0.4  # seconds; a hung edge counts as a failure after this
    down_after: int = 2  # consecutive failed probes -> down
    up_after: int = 2  # consecutive good probes -> up again
    shed_low: float = 0.80  # load (egress/capacity) where shedding starts
    shed_high: float = 0.95  # load where an edge gets no new traffic
    ramp_seconds: float = 30.0  # weight changes and evacuations move linearly over this
    evacuate_below: float = 0.25  # healthy capacity fraction that evacuates a region (0 = off)
    restore_above: float = 0.50  # healthy capacity fraction that brings it back
    coverage_km: float = 500.0  # regions within this of the nearest one share by weight
    distance_tie_km: float = 100.0  # sites closer than this in distance are ordered by load
    edges_per_site: int = 2
    max_sites: int = 3  # sites in one answer (at least 2 when the fleet has them)
    cloudfront_bucket: int = 0  # seconds a signed CloudFront URL is reused (0 = url_ttl/10)
    decision_log: str = ""  # "" off, "-" stderr, else a file path (JSON lines)
    decision_log_sample: float = 1.0  # fraction of decisions logged
    state_file: str = ""  # admin weights/evacuations saved here, reloaded at start ("" = off)
    weights: dict[str, float] = field(default_factory=dict)  # initial region weights

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SteeringSettings:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"steering: unknown keys {sorted(unknown)}")
        kw: dict[str, Any] = dict(d)
        for key in ("trusted_proxies", "trusted_callers"):
            if key in kw:
                kw[key] = _nets(kw[key], key)
        try:
            for key in ("response_ttl", "down_after", "up_after", "edges_per_site",
                        "max_sites", "cloudfront_bucket"):
                if key in kw:
                    kw[key] = int(kw[key])
            for key in ("probe_interval", "probe_timeout", "shed_low", "shed_high",
                        "ramp_seconds", "evacuate_below", "restore_above", "coverage_km",
                        "distance_tie_km", "decision_log_sample"):
                if key in kw:
                    kw[key] = float(kw[key])
            if "weights" in kw:
                kw["weights"] = {str(k): float(v) for k, v in dict(kw["weights"]).items()}
        except (TypeError, ValueError) as e:
            raise ConfigError(f"steering: {e}") from e
        s = cls(**kw)
        s.check()
        return s

    def check(self) -> None:
        if not 0 <= self.shed_low < self.shed_high:
            raise ConfigError("steering: need 0 <= shed_low < shed_high")
        if self.down_after < 1 or self.up_after < 1:
            raise ConfigError("steering: down_after and up_after must be >= 1")
        if self.probe_interval <= 0 or self.probe_timeout <= 0:
            raise ConfigError("steering: probe_interval and probe_timeout must be > 0")
        if not 0 <= self.evacuate_below <= self.restore_above <= 1:
            raise ConfigError("steering: need 0 <= evacuate_below <= restore_above <= 1")
        if self.edges_per_site < 1 or self.max_sites < 1:
            raise ConfigError("steering: edges_per_site and max_sites must be >= 1")
        if self.ramp_seconds < 0 or self.response_ttl < 0:
            raise ConfigError("steering: ramp_seconds and response_ttl must be >= 0")
        if any(w < 0 for w in self.weights.values()):
            raise ConfigError("steering: weights must be >= 0")
        if not 0 <= self.decision_log_sample <= 1:
            raise ConfigError("steering: decision_log_sample must be within [0, 1]")


def load_settings(steering: dict[str, Any], source: str = "", geoip_db: str | None = None,
                  admin_token: str | None = None) -> SteeringSettings:
    """Settings from a fleet's [steering] table plus command-line overrides; a relative
    geoip_db is looked up next to the fleet file first."""
    s = SteeringSettings.from_dict(steering)
    geoip = s.geoip_db if geoip_db is None else geoip_db
    if geoip and source and not Path(geoip).is_absolute():
        cand = Path(source).parent / geoip
        geoip = str(cand) if cand.exists() else geoip
    s = replace(s, geoip_db=geoip)
    if admin_token is not None:
        s = replace(s, admin_token=admin_token)
    return s
