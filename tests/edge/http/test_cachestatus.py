"""The Cache-Status field (RFC 9211)."""

from __future__ import annotations

import pytest

from edge.http.cachestatus import append_cache_status, cache_status, upstream_members


@pytest.mark.parametrize(
    ("kwargs", "value"),
    [
        ({"hit": True}, "edgecdn; hit"),
        ({"hit": True, "ttl": 12.9}, "edgecdn; hit; ttl=12"),
        ({"hit": True, "ttl": -0.2}, "edgecdn; hit; ttl=-1"),  # stale shows negative
        ({"hit": False, "fwd": "miss", "stored": True}, "edgecdn; fwd=miss; stored"),
        ({"hit": False, "fwd": "stale", "fwd_status": 304}, "edgecdn; fwd=stale; fwd-status=304"),
        ({"hit": False, "fwd": "uri-miss", "collapsed": True}, "edgecdn; fwd=uri-miss; collapsed"),
        (
            {"hit": False, "fwd": "bypass", "detail": "no-store"},
            "edgecdn; fwd=bypass; detail=no-store",
        ),
        (
            {"hit": False, "fwd": "miss", "detail": "disk full"},
            'edgecdn; fwd=miss; detail="disk full"',
        ),
        ({"hit": True, "key": "edge-1.lon"}, "edge-1.lon; hit"),
        ({"hit": True, "key": "edge 1"}, '"edge 1"; hit'),
        ({"hit": True, "detail": 'a"b\\c'}, 'edgecdn; hit; detail="a\\"b\\\\c"'),
        ({"hit": True, "ttl": float("inf")}, "edgecdn; hit"),
    ],
)
def test_cache_status_table(kwargs, value) -> None:
    assert cache_status(**kwargs) == value


def test_hit_with_fwd_is_a_contradiction() -> None:
    with pytest.raises(ValueError):
        cache_status(hit=True, fwd="miss")


def test_unknown_fwd_reason_is_refused() -> None:
    with pytest.raises(ValueError):
        cache_status(hit=False, fwd="because")


def test_unrepresentable_characters_are_replaced_not_raised() -> None:
    assert cache_status(hit=True, detail="café\r\nx") == 'edgecdn; hit; detail="caf???x"'


def test_append_keeps_upstream_members_first() -> None:
    assert append_cache_status(None, "edgecdn; hit") == "edgecdn; hit"
    assert append_cache_status("origin-cache; hit", "edgecdn; fwd=miss") == (
        "origin-cache; hit, edgecdn; fwd=miss"
    )


def test_upstream_members_keep_other_caches_and_drop_the_edge_tier():
    assert upstream_members("shield; hit; ttl=30") == "shield; hit; ttl=30"
    # a sibling worker's or peer edge's member describes a hop inside the edge tier
    assert upstream_members("shield; fwd=miss, edgecdn; hit; ttl=3") == "shield; fwd=miss"
    assert upstream_members("edgecdn; hit") is None
    assert upstream_members('"edgecdn"; hit, a') == "a"
    # commas inside sf-strings do not split members
    assert upstream_members('"a, b"; detail="x, \\"y\\", z", edgecdn; hit, c; hit') == \
        '"a, b"; detail="x, \\"y\\", z", c; hit'
    # nothing that could break the header goes on
    for bad in (None, "", "a\x01", "a\u00e9", "a" * 600, "a\r\nX-Injected: 1"):
        assert upstream_members(bad) is None
    assert append_cache_status(upstream_members("shield; hit"), "edgecdn; hit") == \
        "shield; hit, edgecdn; hit"
