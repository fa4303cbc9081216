"""Client address -> Location from a MaxMind City mmdb (the only I/O here is the mmap'd file).

Order of fallbacks: City coordinates, then the country's centroid, then the default location
(the configured default region). Answers are memoised per address string; the memo is
bounded by clearing it when full, which is cheaper per hit than an LRU.
"""

from __future__ import annotations

from typing import Any

import maxminddb

from contracts.config import ConfigError
from steering.geo import COUNTRY_CENTROIDS, Location

_MEMO_MAX = 200_000


class GeoLocator:
    def __init__(self, db_path: str, default: Location) -> None:
        self.default = default
        try:
            self._reader = maxminddb.open_database(db_path) if db_path else None
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as e:
            raise ConfigError(f"geoip_db {db_path}: {e}") from e
        self._memo: dict[str, Location] = {}

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def locate(self, ip: str) -> Location:
        """ip must already be a valid IPv4/IPv6 address string."""
        loc = self._memo.get(ip)
        if loc is None:
            loc = self._lookup(ip)
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            self._memo[ip] = loc
        return loc

    def _lookup(self, ip: str) -> Location:
        if self._reader is None:
            return self.default
        try:
            rec, plen = self._reader.get_with_prefix_len(ip)
        except ValueError:  # an IPv6 address against an IPv4-only database
            return self.default
        return location_from_record(rec, plen, self.default)


def location_from_record(rec: Any, prefix_len: int, default: Location) -> Location:
    if isinstance(rec, dict):
        country = ""
        c = rec.get("country") or rec.get("registered_country")
        if isinstance(c, dict):
            country = str(c.get("iso_code", ""))
        loc = rec.get("location")
        if isinstance(loc, dict):
            lat, lon = loc.get("latitude"), loc.get("longitude")
            if isinstance(lat, int | float) and isinstance(lon, int | float):
                return Location(float(lat), float(lon), "city", country, prefix_len)
        if country in COUNTRY_CENTROIDS:
            lat, lon = COUNTRY_CENTROIDS[country]
            return Location(lat, lon, "country", country, prefix_len)
    return Location(default.lat, default.lon, "default", default.country, prefix_len)
