"""--workers N: hits a worker serves from disk for chunks another worker owns are counted and
sent to the owner once a second over its Unix socket, so the owner's eviction policy sees the
whole edge's demand for its shard."""

from __future__ import annotations

import contextlib
from typing import Any

from edge.server.protocol import HttpConnection, Request

HITS_PATH = "/_edgecdn/hits"  # internal listener only: batched remote hits for the owner


class RemoteHits:
    """Mixin of EdgeApp."""

    # ---- multi-worker: hits on other workers' chunks go to their owner's policy ------------
    def send_remote_hits(self) -> None:
        """Batch of hits this worker served for chunks another worker owns (once a second)."""
        hits, self.remote_hits = self.remote_hits, {}
        peers = self.flights.peer_for
        by_peer: dict[Any, list[str]] = {}
        for (ck, size), n in hits.items():
            p = peers(ck)
            if p is not None:
                by_peer.setdefault(p, []).append(f"{n} {size} {ck}")
        for p, lines in by_peer.items():
            self._spawn(self._post_hits(p, "\n".join(lines).encode()))

    async def _post_hits(self, peer: Any, body: bytes) -> None:
        with contextlib.suppress(Exception):
            resp = await peer.fetch_post(HITS_PATH, body)
            resp.release()

    def _remote_hits_in(self, conn: HttpConnection, req: Request) -> None:
        pairs = []
        for line in req.body.decode("utf-8", "replace").splitlines():
            n, _, rest = line.partition(" ")
            size, _, ck = rest.partition(" ")
            if n.isdigit() and size.isdigit() and ck:
                # each hit counts for the owner's policy; a burst is capped (frequency, not
                # volume, is what the policies weigh)
                pairs += [(ck, int(size))] * min(int(n), 16)
        with contextlib.suppress(Exception):
            self.store.record_remote_hits(pairs)
        self.respond(conn, req, 204, {}, b"", "edgecdn; fwd=bypass; detail=internal", "ops")

