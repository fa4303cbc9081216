"""Telling a whole origin body from a cut one when the origin gave no length.

A chunked body is checked by aiohttp itself (a missing last chunk raises). A close-delimited
body (neither Content-Length nor chunked) ends when the connection does, and aiohttp reports
the end as a clean EOF even when the connection was reset mid-body. The connection's
``closed`` future tells the two apart (an exception on a reset), so it is watched from before
the body is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edge.origin_client.base import OriginResponse


def is_close_delimited(resp: OriginResponse) -> bool:
    h = resp.headers
    return "content-length" not in h and "chunked" not in h.get("transfer-encoding", "").lower()


def _retrieve(f: asyncio.Future[None]) -> None:
    if not f.cancelled():
        f.exception()


def end_check(resp: OriginResponse) -> Callable[[], bool]:
    """Call before reading the body; the returned function, called after the body ended
    without an error, says whether it is whole (False: the connection was reset)."""
    if not is_close_delimited(resp) or resp.resp is None:
        return lambda: True
    conn = resp.resp.connection
    proto = conn.protocol if conn is not None else None
    fut = proto.closed if proto is not None else None
    if fut is None:  # already closed before we looked: nothing tells a reset apart
        return lambda: True
    fut.add_done_callback(_retrieve)  # never "exception was never retrieved" noise

    def whole() -> bool:
        if not fut.done():  # cannot happen after EOF; be strict: not provably whole
            return False
        return fut.exception() is None

    return whole
