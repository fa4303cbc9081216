"""One edge process: store + origin client + flights + server listeners + housekeeping.

With ``--workers N`` the supervisor (edge.workers) runs N of these on one port
(SO_REUSEPORT), each also listening on its own Unix socket for peer requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from edge.config import EdgeConfig
from edge.flights import Flights
from edge.origin_client import make_origin
from edge.peer import Peers, socket_path
from edge.policy import make_policy
from edge.sched import set_batch
from edge.server.accesslog import AccessLog
from edge.server.app import EdgeApp
from edge.server.metrics import EdgeMetrics
from edge.server.ops import Ops
from edge.server.protocol import HttpConnection
from edge.store.store import Store, StoreConfig

log = logging.getLogger("edge.node")
START_FAILED = 3  # exit code: could not bind / set up (the supervisor does not retry it)


class EdgeNode:
    def __init__(self, cfg: EdgeConfig, worker: int = 0, workers: int = 1) -> None:
        self.cfg = cfg
        self.worker = worker
        self.workers = workers
        self.servers: list[asyncio.base_events.Server] = []
        self.app: EdgeApp | None = None
        self.ops: Ops | None = None
        self.store: Any = None
        self.flights: Flights | None = None
        self.peers: Peers | None = None
        self.origin: Any = None
        self.port = 0
        self.admin_port = 0
        self.fill: Any = None
        self.fill_task: asyncio.Task[None] | None = None
        self.shipper: Any = None
        self.ship_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        cfg = self.cfg
        cfg.cache.dir.mkdir(parents=True, exist_ok=True)
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        self.peers = Peers(cfg.origin, cfg.run_dir, self.worker, self.workers)
        owns = self.peers.owns if self.workers > 1 else None
        # each worker accounts (and evicts) only its shard of the shared disk, and has a
        # memory tier of its own: split both budgets so the edge stays within the configured
        disk = cfg.cache.disk_bytes // self.workers
        memory = cfg.cache.memory_bytes // self.workers
        self.store = Store(
            StoreConfig(cfg.cache.dir, disk, memory, cfg.cache.chunk_size, cfg.cache.fsync, owns,
                        scrub_rate=cfg.cache.scrub_rate // self.workers,  # each its own chunks
                        scrub_interval=cfg.cache.scrub_interval),
            make_policy(cfg.cache.policy, disk),
            make_policy("lru", memory),
        )
        await self.store.start()
        self.origin = make_origin(cfg.origin)
        await self.origin.start()
        self.flights = Flights(self.store, self.origin, chunk_size=cfg.cache.chunk_size,
                               peer_for=self.peers.peer_for)
        app = self.app = EdgeApp(cfg, self.store, self.origin, self.flights)
        if self.workers > 1:
            app.owns = self.peers.owns
        access = AccessLog(cfg.log, cfg.spool_dir, cfg.node.name, cfg.node.site, cfg.node.region)
        self.ops = Ops(app, self.flights, self.store, EdgeMetrics(), access,
                       run_dir=cfg.run_dir, worker=self.worker, workers=self.workers)
        app.ops = self.ops
        loop = asyncio.get_running_loop()
        reuse = self.workers > 1
        admin_apart = cfg.node.admin_listen is not None
        host, port = cfg.node.listen
        srv = await loop.create_server(
            lambda: HttpConnection(app, admin=not admin_apart), host, port,
            reuse_port=reuse or None, backlog=2048)
        self.servers.append(srv)
        self.port = srv.sockets[0].getsockname()[1]
        if admin_apart:
            ahost, aport = cfg.node.admin_listen  # type: ignore[misc]
            asrv = await loop.create_server(
                lambda: HttpConnection(app, admin=True, public=False), ahost, aport,
                reuse_port=reuse or None)
            self.servers.append(asrv)
            self.admin_port = asrv.sockets[0].getsockname()[1]
        if self.workers > 1:
            sp = socket_path(cfg.run_dir, self.worker)
            with contextlib.suppress(FileNotFoundError):
                sp.unlink()
            usrv = await loop.create_unix_server(
                lambda: HttpConnection(app, internal=True, public=False), str(sp), backlog=1024)
            self.servers.append(usrv)
        self.ops.start()
        self._start_fill_and_logship()

    def _start_fill_and_logship(self) -> None:
        cfg = self.cfg
        ops = self.ops
        assert ops is not None
        if cfg.fill is not None and cfg.fill.enabled:
            from edge.fill import FillWorker

            token = None
            if cfg.tokens.required and cfg.tokens.secrets:
                kid = next(iter(cfg.tokens.secrets))
                token = (kid, cfg.tokens.secrets[kid])
            cap = cfg.node.capacity_bps
            self.fill = FillWorker(
                self.store, self.origin, cfg.fill, edge=cfg.node.name, site=cfg.node.site,
                load=lambda: ops.egress_bps / cap if cap > 0 else 0.0,
                state_dir=cfg.cache.dir / "fill", token=token, fetch=self.worker == 0,
                ca_file=cfg.origin.ca_file, flights=self.flights)
            self.fill_task = asyncio.get_running_loop().create_task(self.fill.run())
            if self.worker == 0:
                ops.fill = self.fill
        if cfg.logship is not None and cfg.logship.enabled and self.worker == 0:
            from edge.logship import LogShipper

            self.shipper = LogShipper.from_config(cfg.logship, cfg.spool_dir, cfg.node.site,
                                                  cfg.node.name, cfg.origin.ca_file)
            self.ship_task = asyncio.get_running_loop().create_task(self.shipper.run())
            ops.shipper = self.shipper

    async def stop(self, grace: float = 5.0) -> None:
        for s in self.servers:
            s.close()
        if self.fill is not None:
            with contextlib.suppress(Exception):
                await self.fill.stop()
            if self.fill_task is not None:
                with contextlib.suppress(BaseException):
                    await self.fill_task
        if self.app is not None:
            await self.app.drain_connections(grace)
        if self.flights is not None:
            await self.flights.close()
        if self.app is not None:
            for t in list(self.app.tasks):
                t.cancel()
            self.app.fds.clear()
        if self.ops is not None:
            await self.ops.stop()  # closes the access log: its last spool file is .ready
        if self.shipper is not None:
            await self.shipper.stop()  # ships that last file on the way out
            if self.ship_task is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(self.ship_task, 10)
        if self.origin is not None:
            await self.origin.close()
        if self.peers is not None:
            await self.peers.close()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        if self.workers > 1:
            with contextlib.suppress(OSError):
                socket_path(self.cfg.run_dir, self.worker).unlink()


async def run_node(cfg: EdgeConfig, worker: int = 0, workers: int = 1) -> int:
    """Serve until SIGTERM/SIGINT, then stop gracefully."""
    import signal

    node = EdgeNode(cfg, worker, workers)
    sched = set_batch(cfg.node.worker_slice_ms) if workers > 1 else ""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
    except OSError as e:
        print(f"edge: cannot start: {e}", file=sys.stderr, flush=True)
        await node.stop(0)
        return START_FAILED
    host = cfg.node.listen[0]
    admin = f" admin on {cfg.node.admin_listen[0]}:{node.admin_port}" if node.admin_port else ""
    sched = f" scheduling {sched}" if sched else ""
    # one write with its newline: workers share stderr, and print's two writes interleave
    sys.stderr.write(f"edge {cfg.node.name} worker {worker} pid {os.getpid()} ready on "
                     f"http://{host}:{node.port}{admin} origin {cfg.origin.url}{sched}\n")
    sys.stderr.flush()
    if cfg.node.admin_token == "change-me":
        print("edge: warning: admin_token is the example's 'change-me': set your own",
              file=sys.stderr, flush=True)
    await stop.wait()
    await node.stop()
    return 0


def cache_dir_of(cfg: EdgeConfig) -> Path:
    return cfg.cache.dir
