"""The HTTP API as one synchronous dispatch: request in, (status, headers, body) out.

No sockets here: the lean protocol in ``http_server`` feeds it, tests can call it directly.
Routes:
    GET  /v1/steer?path=P[&client_ip=A]   ranked signed URLs (contracts.steer.SteerResponse);
                                          503 + reason when no edge is up and no CloudFront
    GET  /v1/redirect/<path>[?client_ip=A] 302 to the best URL
    GET  /healthz, /metrics, /v1/fleet
    GET  /v1/admin/regions                 (bearer token) region weights / evacuations
    POST /v1/admin/weights   {"weights": {"eu-west": 70, ...}, "ramp_seconds": 10?}
    POST /v1/admin/evacuate  {"region": "eu-west", "ramp_seconds": 0?}
    POST /v1/admin/restore   {"region": "eu-west"}
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from steering.clientaddr import ClientAddrError, TrustSet, resolve_client
from steering.service import NOTHING_SERVES, BadRequest, Steering, Unavailable

log = logging.getLogger("edgecdn.steering")
JSON = b"application/json"
# headers: (name, value) pairs, or a block pre-rendered as b"Name: value\r\n..." (hot path)
Response = tuple[int, list[tuple[bytes, bytes]] | bytes, bytes]
_MAX_PARAM = 4096


def _err(status: int, reason: str, extra: list[tuple[bytes, bytes]] | None = None) -> Response:
    body = json.dumps({"error": reason}).encode()
    return status, [(b"Content-Type", JSON), *(extra or [])], body


def _json(doc: Any, status: int = 200) -> Response:
    return status, [(b"Content-Type", JSON), (b"Cache-Control", b"no-store")], \
        json.dumps(doc, separators=(",", ":")).encode()


def parse_query(q: bytes) -> dict[str, str]:
    """First value of each parameter; a parameter that is not valid UTF-8 raises ValueError."""
    out: dict[str, str] = {}
    if not q:
        return out
    plain = b"%" not in q and b"+" not in q
    for part in q.split(b"&"):
        if not part:
            continue
        k, _, v = part.partition(b"=")
        if plain:
            key, val = k.decode("ascii"), v.decode("ascii")
        else:
            key = unquote_plus(k.decode("ascii"), errors="strict")
            val = unquote_plus(v.decode("ascii"), errors="strict")
        if key not in out:
            out[key] = val
    return out


class HttpApi:
    def __init__(self, steering: Steering, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.use(steering)

    def use(self, steering: Steering) -> None:
        """Serve from this Steering from now on (fleet reload); open connections follow."""
        self.steering = steering
        s = steering.settings
        self.proxies = TrustSet(s.trusted_proxies)
        self.callers = TrustSet(s.trusted_callers)
        self.admin_token = s.admin_token.encode()
        self.retry_after = b"%d" % max(1, round(s.probe_interval))
        self.steer_headers = (b"Content-Type: application/json\r\nCache-Control: private, "
                              b"max-age=%d\r\n" % s.response_ttl)

    def handle(self, method: bytes, path: bytes, query: bytes, headers: dict[bytes, bytes],
               body: bytes, peer: str) -> Response:
        try:
            return self._route(method, path, query, headers, body, peer)
        except Unavailable as e:  # nothing up and no CloudFront: retry once probes see one
            return _err(503, e.reason, [(b"Retry-After", self.retry_after),
                                        (b"Cache-Control", b"no-store")])
        except (BadRequest, ClientAddrError) as e:
            return _err(e.status, e.reason)
        except (UnicodeDecodeError, ValueError) as e:
            return _err(400, f"bad request: {e}"[:200])
        except Exception:  # a bug: say so (500) and keep the connection and server alive
            log.exception("steering request failed: %r %r", method, path)
            return _err(500, "internal error")

    def _route(self, method: bytes, path: bytes, query: bytes, headers: dict[bytes, bytes],
               body: bytes, peer: str) -> Response:
        get = method in (b"GET", b"HEAD")
        if path == b"/v1/steer":
            if not get:
                return _err(405, "use GET", [(b"Allow", b"GET, HEAD")])
            params = parse_query(query)
            raw = params.get("path")
            if not raw:
                raise BadRequest(400, "missing 'path' parameter")
            if len(raw) > _MAX_PARAM:
                raise BadRequest(414, "path parameter too long")
            ip, via = self._client(peer, headers, params)
            now = self.clock()
            out = self.steering.decide_json(raw, ip, now, via)
            return 200, self.steer_headers, out
        if path.startswith(b"/v1/redirect/"):
            if not get:
                return _err(405, "use GET", [(b"Allow", b"GET, HEAD")])
            params = parse_query(query)
            ip, via = self._client(peer, headers, params)
            raw = path[len(b"/v1/redirect"):].decode("utf-8", errors="strict")
            url = self.steering.first_url(raw, ip, self.clock())
            if not url:
                raise Unavailable(NOTHING_SERVES)
            return 302, [(b"Location", url.encode()), (b"Cache-Control", b"no-store"),
                         (b"Content-Type", JSON)], b'{"location":' + json.dumps(url).encode() + b"}"
        if path == b"/healthz":
            return _json(self.steering.health_doc()) if get else _err(405, "use GET")
        if path == b"/metrics":
            if not get:
                return _err(405, "use GET")
            self.steering.metrics.cf_signatures.set(
                self.steering.cloudfront.signatures if self.steering.cloudfront else 0)
            return 200, [(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")], \
                self.steering.metrics.render()
        if path == b"/v1/fleet":
            return _json(self.steering.fleet_doc(self.clock())) if get else _err(405, "use GET")
        if path.startswith(b"/v1/admin/"):
            return self._admin(method, path, headers, body)
        return _err(404, "no such endpoint")

    def _client(self, peer: str, headers: dict[bytes, bytes],
                params: dict[str, str]) -> tuple[str, str]:
        xff = headers.get(b"x-forwarded-for")
        return resolve_client(peer, xff.decode("latin-1") if xff else None,
                              params.get("client_ip"), self.proxies, self.callers)

    def _admin(self, method: bytes, path: bytes, headers: dict[bytes, bytes],
               body: bytes) -> Response:
        if not self.admin_token:
            return _err(403, "admin API disabled (no steering.admin_token)")
        auth = headers.get(b"authorization", b"")
        if not (auth[:7].lower() == b"bearer " and
                hmac.compare_digest(auth[7:].strip(), self.admin_token)):
            return _err(401, "bearer token required", [(b"WWW-Authenticate", b"Bearer")])
        now = self.clock()
        shifter = self.steering.shifter
        if path == b"/v1/admin/regions":
            return _json(self.steering.regions_doc(now))
        if method != b"POST":
            return _err(405, "use POST", [(b"Allow", b"POST")])
        try:
            doc = json.loads(body or b"{}")
        except (ValueError, RecursionError):  # RecursionError: nested past Python's limit
            return _err(400, "body is not JSON")
        if not isinstance(doc, dict):
            return _err(400, "body must be a JSON object")
        ramp = doc.get("ramp_seconds")
        if ramp is not None and (not isinstance(ramp, int | float) or isinstance(ramp, bool)
                                 or not 0 <= ramp <= 86400):
            return _err(400, "ramp_seconds must be a number of seconds in [0, 86400]")
        try:
            if path == b"/v1/admin/weights":
                w = doc.get("weights")
                if not isinstance(w, dict) or not w:
                    return _err(400, "'weights' must be an object of region -> number")
                shifter.set_weights(w, now, ramp)
            elif path in (b"/v1/admin/evacuate", b"/v1/admin/restore"):
                region = doc.get("region")
                if not isinstance(region, str):
                    return _err(400, "'region' must be a region name")
                if path == b"/v1/admin/evacuate":
                    shifter.evacuate(region, now, ramp)
                else:
                    shifter.restore(region, now, ramp)
            else:
                return _err(404, "no such admin endpoint")
        except KeyError as e:
            return _err(404, str(e.args[0]))
        except ValueError as e:
            return _err(400, str(e))
        self.steering.rebuild(now)
        try:
            self.steering.save_state()
        except OSError as e:  # applied but not persisted: say so
            return _json({"regions": self.steering.regions_doc(now),
                          "warning": f"state not saved: {e}"})
        return _json(self.steering.regions_doc(now))
