"""Runs one steering server: probes, ticker, the HTTP front end and optionally DNS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass, field

import prometheus_client

from contracts.config import ConfigError, split_hostport
from contracts.fleet import Fleet, load_fleet
from steering.dns_server import DnsResponder, start_dns
from steering.gctune import GcTuner
from steering.http_api import HttpApi
from steering.http_server import HttpProtocol, close_idle
from steering.probes import Prober
from steering.service import Steering
from steering.settings import SteeringSettings, load_settings

log = logging.getLogger("edgecdn.steering")
TICK_S = 0.2
IDLE_S = 60.0


@dataclass
class SteeringServer:
    fleet: Fleet
    settings: SteeringSettings
    listen: str
    dns_listen: str = ""
    steering: Steering = field(init=False)
    http_port: int = 0
    dns_port: int = 0
    gc: GcTuner = field(default_factory=GcTuner)  # started by run_forever (not in tests)
    overrides: dict[str, str | None] = field(default_factory=dict)  # CLI flags, kept for reload

    def __post_init__(self) -> None:
        self.steering = Steering(self.fleet, self.settings)
        self.prober = Prober(self.steering)
        self._servers: list = []
        self._conns: set[HttpProtocol] = set()
        self._tasks: list[asyncio.Task] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._api: HttpApi | None = None
        self._dns: DnsResponder | None = None

    async def start(self) -> None:
        if self.steering.state_error:
            log.error("steering state not loaded: %s", self.steering.state_error)
        await self.prober.start()
        try:
            await self._listen()
        except BaseException:
            await self.stop()
            raise
        self._tasks.append(asyncio.create_task(self._ticker()))

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        api = self._api = HttpApi(self.steering)
        host, port = split_hostport(self.listen)
        srv = await loop.create_server(lambda: HttpProtocol(api, self._conns), host, port,
                                       backlog=1024, reuse_address=True)
        self._servers.append(srv)
        self.http_port = srv.sockets[0].getsockname()[1]
        if self.dns_listen:
            dhost, dport = split_hostport(self.dns_listen)
            responder = self._dns = DnsResponder(self.steering)
            self._udp, tcp = await start_dns(responder, dhost, dport)
            self._servers.append(tcp)
            self.dns_port = self._udp.get_extra_info("sockname")[1]

    async def reload(self) -> str:
        """Re-read the fleet file. Validated in full before anything changes: on any error the
        running fleet stays and the error is returned ("" on success). Listen addresses are
        not changed by a reload."""
        src = self.fleet.source
        try:
            if not src:
                raise ConfigError("this fleet did not come from a file")
            fleet = load_fleet(src)
            settings = load_settings(fleet.steering, fleet.source, **self.overrides)
            new = Steering(fleet, settings)
        except (ConfigError, OSError) as e:
            log.error("fleet reload refused, keeping the running fleet: %s", e)
            return str(e)
        new.adopt(self.steering, time.time())
        prober = Prober(new)
        await prober.start()
        old, old_prober = self.steering, self.prober
        self.fleet, self.settings, self.steering, self.prober = fleet, settings, new, prober
        if self._api is not None:
            self._api.use(new)
        if self._dns is not None:
            self._dns.use(new)
        await old_prober.stop()
        old.close()
        log.warning("fleet reloaded from %s: %d edges", src, len(new.edges))
        return ""

    async def _ticker(self) -> None:
        last_sweep = time.monotonic()
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(TICK_S)
            self.steering.metrics.loop_lag.observe(max(0.0, loop.time() - t0 - TICK_S))
            for change in self.steering.tick(time.time()):
                log.warning("region %s", change)
            mono = time.monotonic()
            if mono - last_sweep > 5:
                last_sweep = mono
                close_idle(self._conns, IDLE_S)
            self.gc.tick()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.prober.stop()
        for s in self._servers:
            s.close()
        for c in list(self._conns):
            if c.transport is not None:
                c.transport.close()
        if self._udp is not None:
            self._udp.close()
        self.steering.close()


async def run_forever(server: SteeringServer, ready_line: bool = True) -> None:
    await server.start()
    server.gc.start()  # a server process (not tests): collector tuned for tail latency
    prometheus_client.disable_created_metrics()  # process-wide: fewer samples per scrape
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task] = set()

    def on_hup() -> None:
        t = asyncio.ensure_future(server.reload())
        reloads.add(t)
        t.add_done_callback(reloads.discard)

    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    if ready_line:  # one machine-readable line (signals handled by now), for tests and bench
        print(json.dumps({"steering": "ready", "http_port": server.http_port,
                          "dns_port": server.dns_port}), flush=True)
    await stop.wait()
    await server.stop()


def run(server: SteeringServer) -> int:
    try:
        import uvloop

        uvloop.run(run_forever(server))
    except ImportError:  # pragma: no cover - uvloop is a dependency
        asyncio.run(run_forever(server))
    except KeyboardInterrupt:
        pass
    except OSError as e:  # e.g. the listen address is taken
        print(f"edgecdn steer: {e}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    return 0
