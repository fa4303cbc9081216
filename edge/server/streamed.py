"""Answers that are not read from the store: the fill's own origin answer relayed to the
request that caused it (an uncacheable URL's first request costs one origin request), and a
body still arriving without a length (edge.stream_flight), streamed as it comes."""

from __future__ import annotations

import logging
from typing import Any

from edge.flights import META_HEADER, STREAM_HEADER
from edge.http.cachestatus import append_cache_status
from edge.http.conditional import Precondition, evaluate_preconditions
from edge.http.dates import parse_http_date
from edge.server.protocol import HttpConnection, Request, status_line
from edge.stream_flight import StreamFailed, StreamFlight

log = logging.getLogger("edge.app")
# response headers the edge computes per response; never copied from the stored ones
COMPUTED = frozenset({
    "content-length", "content-range", "accept-ranges", "age", "cache-status", "connection",
    "transfer-encoding", "keep-alive", "content-type", META_HEADER,
})
_CONDITIONALS = ("if-none-match", "if-modified-since", "if-match", "if-unmodified-since")


def preconditions_against(req: Request, headers: dict[str, str]) -> Precondition:
    """This request's preconditions evaluated against an origin answer's headers, as the
    origin would have (RFC 9110 §13.2.2); PROCEED when it has none."""
    h = req.headers
    if not any(c in h for c in _CONDITIONALS):
        return Precondition.PROCEED
    return evaluate_preconditions(req.method, h, headers.get("etag"),
                                  parse_http_date(headers.get("last-modified")),
                                  date=parse_http_date(headers.get("date")))


class StreamAnswers:
    """Mixin of EdgeApp."""

    async def _relay_claimed(self, conn: HttpConnection, req: Request, resp: Any,
                             cs: str) -> None:
        """Relay the fill's own (whole, unconditional) answer, this request's preconditions
        evaluated against it as the origin would have (RFC 9110 §13.2.2)."""
        pre = preconditions_against(req, resp.headers)
        if pre is not Precondition.PROCEED:
            resp.close()
            if pre is Precondition.PRECONDITION_FAILED:
                self.simple(conn, req, 412, "precondition failed", "pass", cs=cs)
                return
            kept = {k: v for k, v in resp.headers.items() if not k.startswith("content-")}
            self.respond(conn, req, 304, kept, b"", cs, "pass")
            return
        await self.relay(conn, req, resp, cs, "pass")

    async def serve_stream(self, conn: HttpConnection, req: Request, fl: StreamFlight, cs: str,
                           word: str, peer: bool) -> None:
        """Answer from a body still arriving without a length: 200 (Range is ignored, RFC
        9110 §14.2 allows it), chunked for HTTP/1.1, close-delimited for HTTP/1.0; a body
        the origin cuts short cuts this response (no terminating chunk)."""
        fh = fl.headers
        rid = fl.join()
        try:
            status = 200
            pre = preconditions_against(req, fh)
            if pre is Precondition.PRECONDITION_FAILED:
                self.simple(conn, req, 412, "precondition failed", word, cs=cs)
                return
            if pre is Precondition.NOT_MODIFIED:
                status = 304
            parts = [status_line(status)]
            for k, v in fh.items():
                if k not in COMPUTED:
                    parts.append(f"{k}: {v}\r\n".encode("latin-1", "replace"))
            if status == 200 and "content-type" in fh:
                parts.append(f"content-type: {fh['content-type']}\r\n"
                             .encode("latin-1", "replace"))
            cs = append_cache_status(fh.get("cache-status"), cs)  # (stored: upstream only)
            parts.append(f"age: 0\r\ncache-status: {cs}\r\n".encode())
            if peer:
                parts.append(f"{STREAM_HEADER}: 1\r\n".encode())
            body = status == 200 and req.method != "HEAD"
            chunked = body and not req.http10
            if chunked:
                parts.append(b"transfer-encoding: chunked\r\n")
            elif body:
                conn.keep_alive = False  # HTTP/1.0: the body ends with the connection
            self._end_head(conn, req, parts)
            conn.write_head(b"".join(parts))
            if body:
                pos = 0
                while True:
                    data = await fl.read(pos, rid)
                    if not data:
                        break
                    await conn.drain()
                    conn.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
                    pos += len(data)
                if chunked:
                    conn.write(b"0\r\n\r\n")
        except (StreamFailed, ConnectionError, OSError) as e:
            log.debug("stream cut: %s", e)
            conn.abort()
            self._log(conn, req, 200, word)
            return
        finally:
            fl.leave(rid)
        self._log(conn, req, status, word)
        conn.finish()
