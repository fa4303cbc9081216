"""Pass-through: requests the cache does not answer (unsafe methods, uncacheable responses,
credentials, no-store) go to the origin as they are and stream back; nothing is stored, and
an unsafe method that succeeds invalidates what is stored for the URL (RFC 9111 §4.4).
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

from contracts.keys import BadPath, normalize_path
from edge.flights import META_HEADER, PEER_HEADER, STREAM_HEADER, VIA
from edge.http.cachekey import object_key
from edge.http.cachestatus import append_cache_status, cache_status, upstream_members
from edge.http.revalidate import also_invalidated, invalidates
from edge.http.storage import strip_hop_by_hop
from edge.origin_client.base import OriginError, OriginResponse
from edge.origin_client.framing import end_check
from edge.server.protocol import HttpConnection, Request, status_line

PASS_DROP = frozenset({"cache-status", "connection", "keep-alive", "transfer-encoding",
                       "content-length", META_HEADER, STREAM_HEADER})
NO_BODY_STATUS = frozenset({204, 304})


class PassThrough:
    """Mixin of EdgeApp."""

    def _also_invalidated(self, headers: dict[str, str]) -> list[str]:
        """Cache keys named by Location / Content-Location of an unsafe method's answer
        (RFC 9111 §4.4), when they are on the origin's own authority and under its prefix."""
        ocfg = self.cfg.origin
        if ocfg.kind != "http":
            return []
        authority = urlsplit(ocfg.bucket).netloc
        base = f"/{ocfg.prefix}" if ocfg.prefix else ""
        out = []
        for path in also_invalidated(headers, authority):
            if base and not path.startswith(base + "/"):
                continue
            try:
                out.append(object_key(normalize_path(path[len(base):]), ""))
            except BadPath:
                continue
        return out

    # ---- pass-through (uncacheable, other methods) -----------------------------------------
    async def passthrough(self, conn: HttpConnection, req: Request, npath: str, key: str,
                          why: str) -> None:
        """Forward the request as is and stream the answer; nothing is stored."""
        fwd = {k: v for k, v in strip_hop_by_hop(req.headers).items()
               if k not in ("host", "content-length", PEER_HEADER, "expect")}
        fwd["via"] = f"{fwd['via']}, {VIA}" if "via" in fwd else VIA
        query = req.query if self.origin.kind == "http" else ""
        cs = cache_status(hit=False, fwd=why)
        try:
            resp = await self.origin.fetch(req.method, npath, query, fwd, req.body or None)
        except OriginError as e:
            self.simple(conn, req, e.status, e.reason, "error",
                        cs=cache_status(hit=False, fwd=why, detail="origin-error"))
            return
        if invalidates(req.method, resp.status):
            with contextlib.suppress(Exception):
                self.store.remove_object(key)
            self.hit_for_pass.pop(key, None)
            for other in self._also_invalidated(resp.headers):
                with contextlib.suppress(Exception):
                    self.store.remove_object(other)
        await self.relay(conn, req, resp, cs, "pass")

    async def relay(self, conn: HttpConnection, req: Request, resp: OriginResponse, cs: str,
                    word: str) -> None:
        """Stream an origin answer to the client as it arrives (chunked when the origin gave
        no length, close-delimited for HTTP/1.0); nothing is stored. A body the origin cuts
        short cuts the client's response too."""
        try:
            status = resp.status
            parts = [status_line(status)]
            for k, v in strip_hop_by_hop(resp.headers).items():
                if k not in PASS_DROP:
                    parts.append(f"{k}: {v}\r\n".encode("latin-1", "replace"))
            cs = append_cache_status(upstream_members(resp.headers.get("cache-status")), cs)
            parts.append(f"cache-status: {cs}\r\n".encode())
            clen = resp.content_length
            no_body = req.method == "HEAD" or status in NO_BODY_STATUS or status < 200
            chunked = False
            if clen is not None:
                parts.append(b"content-length: %d\r\n" % clen)
            elif not no_body:
                if req.http10:
                    conn.keep_alive = False
                else:
                    chunked = True
                    parts.append(b"transfer-encoding: chunked\r\n")
            self._end_head(conn, req, parts)  # type: ignore[attr-defined]
            conn.write_head(b"".join(parts))
            if not no_body:
                whole = end_check(resp)
                got = 0
                async for data in resp.iter_body():
                    await conn.drain()
                    if chunked:
                        conn.write(b"%x\r\n" % len(data) + data + b"\r\n")
                    else:
                        conn.write(data)
                    got += len(data)
                if not whole() or clen is not None and got != clen:
                    raise OriginError("unreachable", "origin body short")
                if chunked:
                    conn.write(b"0\r\n\r\n")
            resp.release()  # an unread body (a GET relayed to a HEAD) closes the connection
        except (OriginError, ConnectionError, OSError):
            resp.close()
            conn.abort()
            self._log(conn, req, resp.status, "error")
            return
        except BaseException:
            resp.close()
            raise
        self._log(conn, req, status, word)
        conn.finish()
