"""Every policy behind the one interface, for tests that must hold for all of them."""

from __future__ import annotations

import pytest

from edge.policy import POLICIES, Policy, make_policy


@pytest.fixture(params=sorted(POLICIES))
def policy_name(request: pytest.FixtureRequest) -> str:
    return request.param


def request(p: Policy, key: str, size: int) -> bool:
    """One request driven the way the edge store and the simulator drive a policy."""
    if p.access(key, size):
        return True
    if size <= p.capacity and p.admit(key, size):
        need = p.used + size - p.capacity
        if need > 0:
            dropped = p.victims(need)
            assert key not in dropped
        p.insert(key, size)
    assert p.used <= p.capacity
    return False


@pytest.fixture
def new_policy(policy_name: str):
    def make(capacity: int) -> Policy:
        return make_policy(policy_name, capacity)

    return make
