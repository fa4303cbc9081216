from __future__ import annotations

from pathlib import Path

import pytest

from steering.geo import Location, distance_km
from steering.geoip import GeoLocator
from tests.steering.conftest import LONDON, NEW_YORK

DEFAULT = Location(48.0, 2.0, "default")


def test_distance_london_new_york_is_about_5570_km() -> None:
    assert distance_km(*LONDON, *NEW_YORK) == pytest.approx(5570, rel=0.01)


def test_distance_is_zero_to_itself_and_symmetric() -> None:
    assert distance_km(10, 20, 10, 20) == 0
    assert distance_km(1, 2, 3, 4) == pytest.approx(distance_km(3, 4, 1, 2))


def test_distance_antipodes_is_half_the_circumference() -> None:
    assert distance_km(0, 0, 0, 180) == pytest.approx(20015, rel=0.001)


def test_city_coordinates_ipv4_and_ipv6(mmdb_path: Path) -> None:
    g = GeoLocator(str(mmdb_path), DEFAULT)
    for ip in ("81.2.69.160", "2a02:db8:1::42"):
        loc = g.locate(ip)
        assert (loc.source, loc.country) == ("city", "GB")
        assert (loc.lat, loc.lon) == pytest.approx(LONDON)
    assert g.locate("2001:db8:2::1").country == "US"


def test_prefix_len_is_the_matching_network(mmdb_path: Path) -> None:
    g = GeoLocator(str(mmdb_path), DEFAULT)
    assert g.locate("81.2.69.1").prefix_len == 24
    assert g.locate("100.64.200.1").prefix_len == 16
    assert g.locate("2a02:db8:1:ffff::1").prefix_len == 48


def test_country_only_record_falls_back_to_centroid(mmdb_path: Path) -> None:
    loc = GeoLocator(str(mmdb_path), DEFAULT).locate("192.0.2.7")
    assert (loc.source, loc.country) == ("country", "FR")
    assert loc.lat == pytest.approx(46.2)


def test_unknown_address_falls_back_to_default(mmdb_path: Path) -> None:
    g = GeoLocator(str(mmdb_path), DEFAULT)
    for ip in ("10.1.2.3", "2001:db8:ffff::1"):
        loc = g.locate(ip)
        assert loc.source == "default"
        assert (loc.lat, loc.lon) == (DEFAULT.lat, DEFAULT.lon)


def test_no_database_means_default_everywhere() -> None:
    assert GeoLocator("", DEFAULT).locate("81.2.69.160") == DEFAULT


MAXMIND_TEST_DB = Path(__file__).parent / "data" / "GeoLite2-City-Test.mmdb"


@pytest.mark.parametrize(("ip", "country", "lat", "lon", "plen"), [
    ("81.2.69.160", "GB", 51.5142, -0.0931, 27),
    ("216.160.83.56", "US", 47.2513, -122.3149, 29),
    ("89.160.20.112", "SE", 58.4167, 15.6167, 28),
    ("2001:218::1", "JP", 35.68536, 139.75309, 32),
])
def test_maxmind_own_test_database_known_addresses(ip: str, country: str, lat: float,
                                                   lon: float, plen: int) -> None:
    loc = GeoLocator(str(MAXMIND_TEST_DB), DEFAULT).locate(ip)
    assert (loc.source, loc.country, loc.prefix_len) == ("city", country, plen)
    assert (loc.lat, loc.lon) == pytest.approx((lat, lon))
