"""The eviction-policy interface, and the bookkeeping every policy shares (size, pins).

A policy is a pure object: no clock, no I/O.  The edge store and ``edgecdn bench trace`` drive
it the same way::

    hit = p.access(key, size)
    if not hit and size <= p.capacity and p.admit(key, size):
        need = p.used + size - p.capacity
        if need > 0:
            p.victims(need)        # chosen keys are already dropped from p
        p.insert(key, size)

Pins (fill manifests): ``pin(key, rank)`` protects a key, resident or not yet fetched.  A pinned
resident key leaves the policy's own eviction structures and waits in ``_pinned``; it is chosen
as a victim only when no unpinned key is left, worst rank (largest number) first.  ``unpin``
hands it back to the policy as a fresh insertion.  Rank 0 is the top of the manifest.

Subclasses implement five hooks over their *unpinned* resident keys: ``_touch`` (a request;
True if resident), ``_attach`` (becomes resident), ``_detach`` (leaves without being evicted,
returns its size or None), ``_evict`` (choose one victim and drop it) and ``_check``.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable


@runtime_checkable
class Policy(Protocol):
    """What the edge store and the trace simulator need from an eviction policy."""

    name: ClassVar[str]
    capacity: int
    used: int

    def access(self, key: str, size: int) -> bool: ...
    def admit(self, key: str, size: int) -> bool: ...
    def insert(self, key: str, size: int) -> None: ...
    def victims(self, bytes_needed: int) -> list[str]: ...
    def remove(self, key: str) -> None: ...
    def pin(self, key: str, rank: int) -> None: ...
    def unpin(self, key: str) -> None: ...
    def check(self) -> None: ...
    def __contains__(self, key: str) -> bool: ...
    def __len__(self) -> int: ...


class BasePolicy:
    """Byte accounting and pin protection around a subclass's eviction structures."""

    name: ClassVar[str] = "base"

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must not be negative: {capacity}")
        self.capacity = int(capacity)
        self.used = 0
        self._pin_rank: dict[str, int] = {}  # every pinned key, resident or not
        self._pinned: dict[str, int] = {}  # resident pinned key -> size (outside the structures)

    # -- hooks -----------------------------------------------------------------------------
    def _touch(self, key: str, size: int) -> bool:
        raise NotImplementedError

    def _attach(self, key: str, size: int) -> None:
        raise NotImplementedError

    def _detach(self, key: str) -> int | None:
        raise NotImplementedError

    def _evict(self) -> tuple[str, int] | None:
        raise NotImplementedError

    def _check(self) -> int:
        """Verify the structures; return the sum of their resident sizes."""
        raise NotImplementedError

    def _resident(self, key: str) -> bool:
        raise NotImplementedError

    def _count(self) -> int:
        raise NotImplementedError

    # -- the interface ---------------------------------------------------------------------
    def access(self, key: str, size: int) -> bool:
        """A request for key: True if resident.  Updates recency/frequency either way."""
        return self._touch(key, size) or key in self._pinned

    def admit(self, key: str, size: int) -> bool:
        """Should this missed object be stored?  Default: anything that fits."""
        return size <= self.capacity

    def insert(self, key: str, size: int) -> None:
        """key is now resident (the caller made room).  Re-inserting replaces the old size."""
        if size < 0:
            raise ValueError(f"size must not be negative: {size}")
        self.remove(key)
        if key in self._pin_rank:
            self._pinned[key] = size
        else:
            self._attach(key, size)
        self.used += size

    def victims(self, bytes_needed: int) -> list[str]:
        """Choose and drop resident keys totalling >= bytes_needed (fewer if all are gone)."""
        out: list[str] = []
        freed = 0
        while freed < bytes_needed:
            got = self._evict()
            if got is None:
                break
            out.append(got[0])
            freed += got[1]
        if freed < bytes_needed and self._pinned:
            # Only pinned keys are left: give up the worst-ranked first.
            for key in sorted(self._pinned, key=self._pin_rank.__getitem__, reverse=True):
                out.append(key)
                freed += self._pinned.pop(key)
                if freed >= bytes_needed:
                    break
        self.used -= freed
        return out

    def remove(self, key: str) -> None:
        """External removal (purge, corruption): no-op when absent."""
        size = self._pinned.pop(key, None)
        if size is None:
            size = self._detach(key)
        if size is not None:
            self.used -= size

    def pin(self, key: str, rank: int) -> None:
        """Protect key (resident now or later) from eviction; lower rank = more valuable."""
        self._pin_rank[key] = rank
        if key not in self._pinned:
            size = self._detach(key)
            if size is not None:
                self._pinned[key] = size

    def unpin(self, key: str) -> None:
        """key becomes ordinary cache content again."""
        if self._pin_rank.pop(key, None) is None:
            return
        size = self._pinned.pop(key, None)
        if size is not None:
            self._attach(key, size)

    def check(self) -> None:
        """Invariants (off the hot path): structures consistent, used == resident bytes."""
        total = self._check()
        for key in self._pinned:
            assert key in self._pin_rank, f"pinned resident {key!r} has no rank"
            assert not self._resident(key), f"pinned {key!r} also in eviction structures"
        total += sum(self._pinned.values())
        assert total == self.used, f"{self.name}: used={self.used} but resident bytes={total}"
        assert self.used >= 0

    def __contains__(self, key: str) -> bool:
        return key in self._pinned or self._resident(key)

    def __len__(self) -> int:
        return self._count() + len(self._pinned)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self)} keys {self.used}/{self.capacity} B>"
