"""Fixtures for the player harness tests: stand-in fleets on loopback, fleet files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bench_players.standins import ServerThread


@pytest.fixture
def servers() -> Iterator[ServerThread]:
    st = ServerThread()
    yield st
    st.close()


def write_fleet(path: Path, edges: dict[str, tuple[str, str, str]], steering_url: str,
                bench: str = "", titles: tuple[str, ...] = ("t1", "t2", "t3")) -> Path:
    """A fleet file for edges {name: (url, site, region)} with a [bench] table."""
    regions: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for name, (url, site, region) in edges.items():
        regions.setdefault(region, {}).setdefault(site, []).append((name, url))
    lines = [
        "[steering]", 'admin_token = "tok"', "",
        "[bench]", f'steering_url = "{steering_url}"',
        "titles = [" + ", ".join(f'"{t}"' for t in titles) + "]",
        "ramp = 0.2", bench, "",
        "[[bench.clients]]", 'prefix = "10.1.0.0/16"', 'label = "r1-clients"', "weight = 3",
        "[[bench.clients]]", 'prefix = "2001:db8::/32"', 'label = "v6"', "",
    ]
    lat = 10.0
    for region, sites in regions.items():
        lines += ["[[regions]]", f'name = "{region}"']
        for site, es in sites.items():
            lines += ["  [[regions.sites]]", f'  name = "{site}"', f"  lat = {lat}", "  lon = 1.0"]
            lat += 5
            for name, url in es:
                lines += ["    [[regions.sites.edges]]", f'    name = "{name}"',
                          f'    url = "{url}"']
    path.write_text("\n".join(lines) + "\n")
    return path
