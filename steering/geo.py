"""Great-circle distance and client locations (pure: no database, no sockets)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

EARTH_RADIUS_KM = 6371.0088


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance; accurate to ~0.5% (the earth is not a sphere), enough to rank sites."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class Location:
    lat: float
    lon: float
    source: str  # "city" (mmdb coordinates), "country" (centroid), "default" (default region)
    country: str = ""
    prefix_len: int = 0  # length of the mmdb network that answered (DNS ECS scope)
    # memo key: ~1 km grid, far finer than any site spacing (computed once, not per lookup)
    key: tuple[float, float] = field(default=(0.0, 0.0), compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (round(self.lat, 2), round(self.lon, 2)))


# Approximate geographic centres (lat, lon) of common countries, for mmdb records that carry a
# country but no coordinates. Missing countries fall through to the default region.
COUNTRY_CENTROIDS: dict[str, tuple[float, float]] = {
    "AE": (23.4, 53.8), "AR": (-38.4, -63.6), "AT": (47.5, 14.6), "AU": (-25.3, 133.8),
    "BE": (50.5, 4.5), "BG": (42.7, 25.5), "BR": (-14.2, -51.9), "CA": (56.1, -106.3),
    "CH": (46.8, 8.2), "CL": (-35.7, -71.5), "CN": (35.9, 104.2), "CO": (4.6, -74.3),
    "CZ": (49.8, 15.5), "DE": (51.2, 10.5), "DK": (56.3, 9.5), "EG": (26.8, 30.8),
    "ES": (40.5, -3.7), "FI": (61.9, 25.7), "FR": (46.2, 2.2), "GB": (55.4, -3.4),
    "GR": (39.1, 21.8), "HK": (22.3, 114.2), "HU": (47.2, 19.5), "ID": (-0.8, 113.9),
    "IE": (53.4, -8.2), "IL": (31.0, 34.9), "IN": (20.6, 79.0), "IT": (41.9, 12.6),
    "JP": (36.2, 138.3), "KE": (-0.0, 37.9), "KR": (35.9, 127.8), "MX": (23.6, -102.6),
    "MY": (4.2, 101.9), "NG": (9.1, 8.7), "NL": (52.1, 5.3), "NO": (60.5, 8.5),
    "NZ": (-40.9, 174.9), "PE": (-9.2, -75.0), "PH": (12.9, 121.8), "PK": (30.4, 69.3),
    "PL": (51.9, 19.1), "PT": (39.4, -8.2), "RO": (45.9, 25.0), "RU": (61.5, 105.3),
    "SA": (23.9, 45.1), "SE": (60.1, 18.6), "SG": (1.35, 103.8), "TH": (15.9, 101.0),
    "TR": (39.0, 35.2), "TW": (23.7, 121.0), "UA": (48.4, 31.2), "US": (37.1, -95.7),
    "VN": (14.1, 108.3), "ZA": (-30.6, 22.9),
}
