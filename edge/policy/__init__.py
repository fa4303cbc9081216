"""Pure eviction policies behind one interface (see ``base.py``), used unchanged by the edge
store and by ``edgecdn bench trace``.

``lru`` and ``popularity`` (the production policy) serve the edge; ``sieve`` and ``s3fifo`` are
reference policies for the simulator.
"""

from __future__ import annotations

import importlib

from edge.policy.base import BasePolicy, Policy

# name -> "module:Class"; imported lazily so the edge loads only what it runs.
POLICIES: dict[str, str] = {
    "lru": "edge.policy.lru:LRUPolicy",
    "popularity": "edge.policy.popularity:PopularityPolicy",
    "sieve": "edge.policy.sieve:SievePolicy",
    "s3fifo": "edge.policy.s3fifo:S3FifoPolicy",
}


def policy_class(name: str) -> type[BasePolicy]:
    try:
        target = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r} (choose from {', '.join(POLICIES)})") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def make_policy(name: str, capacity: int) -> Policy:
    """A fresh policy instance holding at most capacity bytes."""
    return policy_class(name)(capacity)


__all__ = ["POLICIES", "BasePolicy", "Policy", "make_policy", "policy_class"]
