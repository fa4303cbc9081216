"""What the cache keeps about a response besides its body."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.http import Headers


@dataclass(slots=True)
class StoredResponse:
    """A stored response's status and end-to-end headers, with the two clock readings the
    RFC 9111 §4.2.3 age calculation needs: ``request_time`` (when the request that produced it
    was sent) and ``response_time`` (when its header arrived). ``soft_purged`` marks an entry
    an operator invalidated without deleting it: it must be revalidated before reuse, yet it
    may still be served when the origin fails and stale-if-error allows."""

    status: int
    headers: Headers = field(default_factory=dict)
    request_time: float = 0.0
    response_time: float = 0.0
    soft_purged: bool = False
