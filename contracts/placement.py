"""Which edges of a site hold an object: the one rule steering and the fill planner share.

Steering sends every request of a title to the same edges of a site, so the key hashed is
the title's folder (``ContentKey.title_prefix``: ``/titles/T/``), or the path itself for
objects outside ``/titles/``. The fill planner must place objects with this same function.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.keys import ContentKey
from contracts.rendezvous import rank


def placement_key(path: str) -> str:
    return ContentKey.parse(path).title_prefix


def edges_for(path: str, edge_names: Iterable[str]) -> list[str]:
    """The site's edges, best first, for the object at ``path`` (a normalised request path)."""
    return rank(placement_key(path), edge_names)
