"""The Policy contract, for every policy (lru, popularity, sieve, s3fifo)."""

from __future__ import annotations

import pytest

from edge.policy import POLICIES, BasePolicy, Policy, make_policy

from .conftest import request


def test_make_policy_knows_every_name(policy_name: str) -> None:
    p = make_policy(policy_name, 1000)
    assert isinstance(p, Policy)
    assert p.name == policy_name
    assert (p.capacity, p.used, len(p)) == (1000, 0, 0)
    p.check()


def test_make_policy_refuses_unknown_name_with_choices() -> None:
    with pytest.raises(ValueError, match="lru"):
        make_policy("mru", 10)


def test_miss_then_hit_after_insert(new_policy) -> None:
    p = new_policy(1000)
    assert p.access("/a", 10) is False
    p.insert("/a", 10)
    assert "/a" in p and len(p) == 1 and p.used == 10
    assert p.access("/a", 10) is True
    p.check()


def test_victims_free_what_is_asked_and_drop_it(new_policy) -> None:
    p = new_policy(100)
    for i in range(10):
        p.insert(f"/k{i}", 10)
    got = p.victims(25)
    assert len(got) == len(set(got)) >= 3
    assert all(k not in p for k in got)
    assert p.used == 100 - 10 * len(got)
    p.check()


def test_victims_give_everything_when_asked_for_more(new_policy) -> None:
    p = new_policy(100)
    for i in range(4):
        p.insert(f"/k{i}", 10)
    assert sorted(p.victims(1000)) == [f"/k{i}" for i in range(4)]
    assert p.used == 0 and len(p) == 0
    assert p.victims(10) == []
    p.check()


def test_remove_is_a_noop_when_absent_and_frees_when_present(new_policy) -> None:
    p = new_policy(100)
    p.remove("/nothing")
    p.insert("/a", 30)
    p.remove("/a")
    p.remove("/a")
    assert "/a" not in p and p.used == 0
    p.check()


def test_reinsert_replaces_the_size(new_policy) -> None:
    p = new_policy(100)
    p.insert("/a", 30)
    p.insert("/a", 50)
    assert p.used == 50 and len(p) == 1
    p.check()


def test_the_simulated_protocol_keeps_used_within_capacity(new_policy) -> None:
    p = new_policy(500)
    for i in range(3000):
        request(p, f"/k{(i * 7919) % 97}", 10 + (i * 31) % 90)
    assert 0 < p.used <= 500
    p.check()


def test_pinned_keys_outlive_every_unpinned_one(new_policy) -> None:
    p = new_policy(100)
    for i in range(10):
        p.insert(f"/k{i}", 10)
    p.pin("/k0", 1)
    p.pin("/k1", 2)
    got = p.victims(80)
    assert sorted(got) == [f"/k{i}" for i in range(2, 10)]
    assert "/k0" in p and "/k1" in p
    p.check()


def test_only_pinned_left_worst_rank_goes_first(new_policy) -> None:
    p = new_policy(100)
    for i in range(3):
        p.insert(f"/k{i}", 10)
        p.pin(f"/k{i}", i)  # rank 0 is the most valuable
    assert p.victims(10) == ["/k2"]
    assert p.victims(10) == ["/k1"]
    assert "/k0" in p
    p.check()


def test_pin_before_fetch_protects_the_key_when_it_arrives(new_policy) -> None:
    p = new_policy(30)
    p.pin("/manifest", 0)
    p.insert("/manifest", 10)
    p.insert("/a", 10)
    p.insert("/b", 10)
    assert p.access("/manifest", 10)
    assert "/manifest" not in p.victims(20)
    assert "/manifest" in p
    p.check()


def test_unpin_makes_the_key_ordinary_content(new_policy) -> None:
    p = new_policy(20)
    p.insert("/a", 10)
    p.pin("/a", 0)
    p.insert("/b", 10)
    p.unpin("/a")
    p.unpin("/never-pinned")
    assert sorted(p.victims(20)) == ["/a", "/b"]
    p.check()


def test_remove_of_a_pinned_key_frees_its_bytes(new_policy) -> None:
    p = new_policy(100)
    p.insert("/a", 10)
    p.pin("/a", 3)
    p.remove("/a")
    assert "/a" not in p and p.used == 0
    p.check()


def test_check_catches_a_wrong_byte_count(new_policy) -> None:
    p = new_policy(100)
    p.insert("/a", 10)
    assert isinstance(p, BasePolicy)
    p.used += 1
    with pytest.raises(AssertionError):
        p.check()


def test_negative_capacity_and_size_are_refused() -> None:
    for name in POLICIES:
        with pytest.raises(ValueError):
            make_policy(name, -1)
        with pytest.raises(ValueError):
            make_policy(name, 10).insert("/a", -5)


def test_objects_larger_than_the_cache_are_not_admitted(new_policy) -> None:
    p = new_policy(100)
    assert p.admit("/huge", 101) is False
