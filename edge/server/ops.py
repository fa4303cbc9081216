"""Operations endpoints: /healthz (contracts.reports.EdgeReport), /metrics, /admin/purge,
and the once-a-second housekeeping behind them (egress rate, metric sync, access log flush,
per-worker snapshots so any worker reports for the whole edge)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

from contracts.keys import BadPath, normalize_path
from contracts.reports import EdgeReport, TierUsage
from edge.http.cachekey import object_key
from edge.server.accesslog import AccessLog
from edge.server.metrics import CONTENT_TYPE, EdgeMetrics
from edge.server.protocol import HttpConnection, Request

DISK_FULL_WINDOW = 30.0  # /healthz says "disk full" this long after the last ENOSPC
SNAPSHOT_MAX_AGE = 3.0
LOG_SLICE = 1000  # access rows formatted per loop turn


class Ops:
    def __init__(self, app: Any, flights: Any, store: Any, metrics: EdgeMetrics,
                 access: AccessLog, *, run_dir: Path, worker: int = 0, workers: int = 1) -> None:
        self.app = app
        self.flights = flights
        self.store = store
        self.metrics = metrics
        self.access = access
        self.run_dir = run_dir
        self.worker = worker
        self.workers = workers
        self.samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=6)
        self.egress_bps = 0.0
        self.task: asyncio.Task[None] | None = None
        self._log_task: asyncio.Future[None] | None = None
        self._fmt: tuple[list[Any], list[str]] | None = None  # a batch being formatted
        self.fill: Any = None  # edge.fill.FillWorker (the fetching worker only)
        self.shipper: Any = None  # edge.logship.LogShipper (worker 0 only)

    # ---- housekeeping ----------------------------------------------------------------------
    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.tick()
            except Exception:  # housekeeping must never stop
                import logging

                logging.getLogger("edge.ops").exception("housekeeping failed")

    def tick(self) -> None:
        now = time.monotonic()
        self.app.fold_hot_counts()
        self.samples.append((now, self.app.counters.bytes_sent))
        if len(self.samples) >= 2:
            (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
            self.egress_bps = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        self.flush_log()
        self.app.fds.sweep(now)
        self.store.scrub_due(now)
        self.app.flush_hot_hits()
        self.metrics.sync(self.app, self.flights, self.store)
        if self.app.remote_hits:
            self.app.send_remote_hits()
        if self.workers > 1:
            self._write_snapshot()
            if self.worker == 0:
                self._write_extra_metrics()

    # ---- fill / logship figures (worker 0 runs them; any worker reports them) ---------------
    def extra_samples(self) -> list[tuple[str, dict[str, str], float]]:
        out: list[tuple[str, dict[str, str], float]] = []
        for part in (self.fill, self.shipper):
            if part is not None:
                with contextlib.suppress(Exception):
                    out += part.metric_samples()
        return out

    def extra_metrics_text(self) -> bytes:
        if self.workers > 1 and self.worker != 0:
            with contextlib.suppress(OSError):
                return (self.run_dir / "extra-metrics.prom").read_bytes()
            return b""
        lines = []
        for name, labels, value in self.extra_samples():
            lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")
        return ("\n".join(lines) + "\n").encode() if lines else b""

    def _write_extra_metrics(self) -> None:
        p = self.run_dir / "extra-metrics.prom"
        with contextlib.suppress(OSError):
            tmp = p.with_suffix(".tmp")
            tmp.write_bytes(self.extra_metrics_text())
            os.replace(tmp, p)

    def fill_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.fill is not None:
            with contextlib.suppress(Exception):
                out = dict(self.fill.status())
        elif self.workers > 1 and self.worker != 0:
            with contextlib.suppress(OSError, ValueError):
                out = json.loads((self.run_dir / "fill-status.json").read_text())
        if self.shipper is not None:
            with contextlib.suppress(Exception):
                out["logship"] = self.shipper.status()
        return out

    def flush_log(self) -> None:
        """Format the access rows gathered since the last tick on the loop, LOG_SLICE rows
        per turn (~1 us a row: at 15k req/s one batch would stall the loop ~15 ms, and a
        formatting thread contends for the GIL with the loop), then write them in a thread."""
        if self._fmt is not None or (self._log_task is not None and not self._log_task.done()):
            return  # the previous batch is still being formatted or written: wait a tick
        rows = self.app.access
        if rows:
            self.app.access = []
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.access.write(rows)
            return
        if not rows or not self.access.enabled:
            if self.access.rotation_due():  # nothing to write: no thread hop unless rotating
                self._log_task = loop.create_task(asyncio.to_thread(self.access.write_text, ""))
            return
        self._fmt = (rows, [])
        loop.call_soon(self._format_slice, 0)

    def _format_slice(self, i: int) -> None:
        fmt = self._fmt
        if fmt is None:  # finished synchronously by flush_log_now
            return
        rows, parts = fmt
        parts.append(self.access.format(rows[i:i + LOG_SLICE]))
        i += LOG_SLICE
        loop = asyncio.get_running_loop()
        if i < len(rows):
            loop.call_soon(self._format_slice, i)
            return
        self._fmt = None
        self._log_task = loop.create_task(asyncio.to_thread(self.access.write_text,
                                                            "".join(parts)))

    def flush_log_now(self) -> None:
        """Synchronously (shutdown, tests): everything gathered so far, in order."""
        fmt, self._fmt = self._fmt, None
        if fmt is not None:  # a batch half formatted: its rows precede the newer ones
            rows, parts = fmt
            done = len(parts) * LOG_SLICE
            self.access.write_text("".join(parts))
            self.access.write(rows[done:])
        rows = self.app.access
        self.app.access = []
        self.access.write(rows)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        if self._log_task is not None:
            with contextlib.suppress(BaseException):
                await self._log_task
        self.flush_log_now()
        with contextlib.suppress(Exception):
            self.metrics.sync(self.app, self.flights, self.store)
        self.access.close()

    def _snapshot(self) -> dict[str, Any]:
        c = self.app.counters
        return {"t": time.time(), "active": c.active, "egress": self.egress_bps,
                "hits": self._hits(),
                "requests": self._requests()}

    def _write_snapshot(self) -> None:
        p = self.run_dir / f"stats-{self.worker}.json"
        tmp = p.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(self._snapshot()))
            os.replace(tmp, p)
        if self.fill is not None:
            p = self.run_dir / "fill-status.json"
            with contextlib.suppress(Exception):
                tmp = p.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.fill.status(), default=str))
                os.replace(tmp, p)

    def _hits(self) -> int:
        self.app.fold_hot_counts()
        b = self.app.by_cache
        return b.get("hit", 0) + b.get("stale", 0) + b.get("revalidated", 0)

    def _requests(self) -> int:
        self.app.fold_hot_counts()
        b = self.app.by_cache
        return sum(v for k, v in b.items() if k not in ("error", "ops"))

    # ---- /healthz --------------------------------------------------------------------------
    def report(self) -> EdgeReport:
        active, egress, hits, reqs = self.app.counters.active, self.egress_bps, self._hits(), \
            self._requests()
        if self.workers > 1:
            now = time.time()
            for i in range(self.workers):
                if i == self.worker:
                    continue
                with contextlib.suppress(OSError, ValueError, KeyError):
                    d = json.loads((self.run_dir / f"stats-{i}.json").read_text())
                    if now - d["t"] <= SNAPSHOT_MAX_AGE:
                        active += int(d["active"])
                        egress += float(d["egress"])
                        hits += int(d["hits"])
                        reqs += int(d["requests"])
        tiers: dict[str, TierUsage] = self.store.stats()
        reasons: list[str] = []
        full = self.store.disk_full or (
            self.flights.stats.disk_full_since
            and time.time() - self.flights.stats.disk_full_since < DISK_FULL_WINDOW)
        if full:
            reasons.append("disk full: serving without storing")
            if "disk" in tiers:
                tiers["disk"].full = True
        if getattr(self.store, "rebuilding", False):
            reasons.append("index rebuilding")
        status = "draining" if self.app.draining else ("degraded" if full else "ok")
        return EdgeReport(
            status=status, active_connections=active, egress_bps=round(egress, 1),
            capacity_bps=self.app.cfg.node.capacity_bps,
            hit_ratio=round(hits / reqs, 4) if reqs else 0.0, tiers=tiers, reasons=reasons,
            fill=self.fill_status(),
        )

    def healthz(self, conn: HttpConnection, req: Request) -> None:
        body = json.dumps(self.report().to_dict()).encode()
        self.app.respond(conn, req, 200, {"content-type": "application/json",
                                          "cache-control": "no-store"}, body,
                         "edgecdn; fwd=bypass; detail=healthz", "ops")

    def metrics_page(self, conn: HttpConnection, req: Request) -> None:
        self.metrics.sync(self.app, self.flights, self.store)
        body = self.metrics.render() + self.extra_metrics_text()
        self.app.respond(conn, req, 200, {"content-type": CONTENT_TYPE,
                                          "cache-control": "no-store"}, body,
                         "edgecdn; fwd=bypass; detail=metrics", "ops")

    # ---- /admin ----------------------------------------------------------------------------
    async def admin(self, conn: HttpConnection, req: Request) -> None:
        token = self.app.cfg.node.admin_token
        if req.path != "/admin/purge":
            self._json(conn, req, 404, {"error": "no such admin endpoint"})
            return
        if req.method != "POST":
            self._json(conn, req, 405, {"error": "use POST"}, extra={"allow": "POST"})
            return
        if not token:
            self._json(conn, req, 403, {"error": "admin disabled (no admin_token configured)"})
            return
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not hmac.compare_digest(
                auth[7:].strip().encode(), token.encode()):
            self._json(conn, req, 401, {"error": "bad or missing bearer token"},
                       extra={"www-authenticate": "Bearer"})
            return
        try:
            doc = json.loads(req.body or b"{}")
            if not isinstance(doc, dict):
                raise ValueError("body must be a JSON object")
            soft = doc.get("soft", False)
            if not isinstance(soft, bool):
                raise ValueError("soft must be true or false")
            key = prefix = None
            if doc.get("key") is not None:
                raw = str(doc["key"])
                path, _, query = raw.partition("?")
                npath = normalize_path(path)
                key = object_key(npath, query if self.app.origin.kind == "http" else "")
            if doc.get("prefix") is not None:
                prefix = normalize_path(str(doc["prefix"]))
            if key is None and not prefix:
                raise ValueError('give "key" or a non-empty "prefix"')
        except (ValueError, BadPath) as e:
            self._json(conn, req, 400, {"error": str(e)})
            return
        n = await asyncio.to_thread(self.store.purge, key, prefix, soft)
        self.app.fds.clear()  # purged files: no open fd keeps their space (refs were dropped)
        for k in list(self.app.hit_for_pass):
            if k == key or (prefix and k.startswith(prefix)):
                del self.app.hit_for_pass[k]
        self._json(conn, req, 200, {"purged": n, "soft": soft, "key": key, "prefix": prefix})

    def _json(self, conn: HttpConnection, req: Request, status: int, doc: dict[str, Any],
              extra: dict[str, str] | None = None) -> None:
        h = {"content-type": "application/json", "cache-control": "no-store"}
        h.update(extra or {})
        self.app.respond(conn, req, status, h, json.dumps(doc).encode(),
                         "edgecdn; fwd=bypass; detail=admin", "ops")
