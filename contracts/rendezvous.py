"""Weighted rendezvous (highest-random-weight) hashing.

Steering and the fill planner both call this, so an edge is filled with exactly what
steering will send it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

_MAX = float(1 << 64)


def _unit(key: str, node: str) -> float:
    h = hashlib.blake2b(f"{node}\x00{key}".encode(), digest_size=8).digest()
    # (0, 1]: never 0, so log() is finite
    return (int.from_bytes(h, "big") + 1) / _MAX


def score(key: str, node: str, weight: float = 1.0) -> float:
    return -weight / math.log(_unit(key, node)) if weight > 0 else 0.0


def rank(key: str, nodes: Iterable[str], weights: dict[str, float] | None = None) -> list[str]:
    """Nodes best-first for key; stable for a node set, minimal movement when it changes."""
    w = weights or {}
    return sorted(nodes, key=lambda n: score(key, n, w.get(n, 1.0)), reverse=True)


def top(key: str, nodes: Sequence[str], k: int = 1) -> list[str]:
    return rank(key, nodes)[:k]
