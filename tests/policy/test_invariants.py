"""Invariants under arbitrary request sequences (hypothesis), for every policy.

Whatever the mix of requests, purges, pins and forced evictions: used equals the sum of the
resident sizes, the structures agree with each other (``check()``), the cache never holds more
than its capacity under the edge's protocol, and pinned keys are only evicted when nothing
unpinned is left.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.policy import POLICIES, make_policy

from .conftest import request

KEYS = [f"/k{i}" for i in range(12)] + [
    f"/titles/t{t}/{r}/seg_{s:05d}.ts#{c}" for t in (1, 2) for r in ("240p", "1080p")
    for s in (0, 1, 9, 300) for c in (0, 1)
]

op = st.one_of(
    st.tuples(st.just("req"), st.sampled_from(KEYS), st.integers(0, 60)),
    st.tuples(st.just("remove"), st.sampled_from(KEYS), st.just(0)),
    st.tuples(st.just("pin"), st.sampled_from(KEYS), st.integers(0, 5)),
    st.tuples(st.just("unpin"), st.sampled_from(KEYS), st.just(0)),
    st.tuples(st.just("victims"), st.just(""), st.integers(1, 80)),
)


@pytest.mark.parametrize("name", sorted(POLICIES))
@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 200), ops=st.lists(op, max_size=120))
def test_invariants_hold_for_any_sequence(name: str, capacity: int, ops: list) -> None:
    p = make_policy(name, capacity)
    sizes: dict[str, int] = {}  # each key keeps one size, as cache objects do
    pinned: set[str] = set()
    for kind, key, arg in ops:
        if kind == "req":
            size = sizes.setdefault(key, arg)
            request(p, key, size)
        elif kind == "remove":
            p.remove(key)
            assert key not in p
        elif kind == "pin":
            p.pin(key, arg)
            pinned.add(key)
        elif kind == "unpin":
            p.unpin(key)
            pinned.discard(key)
        else:
            before = {k for k in KEYS if k in p}
            used = p.used
            got = p.victims(arg)
            assert len(got) == len(set(got)) and set(got) <= before
            assert all(k not in p for k in got)
            assert p.used == used - sum(sizes[k] for k in got)
            assert p.used == 0 or used - p.used >= arg
            if any(k in pinned for k in got):
                # a pinned key went: nothing unpinned may be left
                assert all(k in pinned for k in before - set(got))
        assert p.used <= capacity
        assert p.used == sum(sizes[k] for k in KEYS if k in p)
        assert len(p) == sum(1 for k in KEYS if k in p)
    p.check()
