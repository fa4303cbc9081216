"""Faults on purpose during a player run: what to do, when, and the hands that do it.

A scenario is a list of ``FaultAction``s, from a TOML file (``[[faults]]`` tables) or from
``--fault T:ACTION[:ARG...]`` flags; both parse to the same thing and are validated before
the run starts (a typo fails at once, not half way through a rehearsal).

Actions:
  kill EDGE / pause EDGE / resume EDGE     SIGKILL / SIGSTOP / SIGCONT the edge's process group
  origin MODE [RATE] [DELAY]                MODE ok|slow|fail|reset via the fault proxy
  evacuate REGION / restore REGION          steering admin API
  weights REGION=W,...                      steering admin API
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from contracts.config import ConfigError, load_toml
from contracts.fleet import Fleet

EDGE_ACTIONS = {"kill": signal.SIGKILL, "pause": signal.SIGSTOP, "resume": signal.SIGCONT}
ORIGIN_MODES = ("ok", "slow", "fail", "reset")
ACTIONS = (*EDGE_ACTIONS, "origin", "evacuate", "restore", "weights")


@dataclass(frozen=True, slots=True)
class FaultAction:
    at: float  # seconds after the run starts
    action: str
    target: str = ""  # edge name, region name, or origin mode
    weights: tuple[tuple[str, float], ...] = ()
    rate: float = 1.0  # origin: fraction of requests affected
    delay: float = 0.0  # origin slow: seconds added before the response
    status: int = 503  # origin fail: the status returned

    def describe(self) -> str:
        if self.action == "weights":
            return "weights " + ",".join(f"{r}={w:g}" for r, w in self.weights)
        if self.action == "origin":
            extra = f" rate={self.rate:g}" if self.target != "ok" else ""
            if self.target == "slow":
                extra += f" delay={self.delay:g}s"
            return f"origin {self.target}{extra}"
        return f"{self.action} {self.target}"


def _check(a: FaultAction) -> FaultAction:
    if a.action not in ACTIONS:
        raise ConfigError(f"fault at {a.at}: unknown action {a.action!r} (one of {ACTIONS})")
    if a.at < 0:
        raise ConfigError(f"fault {a.action}: time must be >= 0")
    if a.action == "origin" and a.target not in ORIGIN_MODES:
        raise ConfigError(f"fault origin: mode must be one of {ORIGIN_MODES}")
    if a.action == "weights" and not a.weights:
        raise ConfigError("fault weights: give REGION=WEIGHT pairs")
    if a.action not in ("weights", "origin") and not a.target:
        raise ConfigError(f"fault {a.action}: needs a target")
    if not 0 <= a.rate <= 1 or a.delay < 0:
        raise ConfigError(f"fault {a.action}: rate in [0,1] and delay >= 0")
    return a


def parse_spec(spec: str) -> FaultAction:
    """``30:kill:lon-1``, ``10:origin:fail:0.5``, ``12:origin:slow:1:0.3``,
    ``40:weights:eu-west=70,us-east=30``, ``30:evacuate:eu-west``."""
    parts = spec.split(":")
    if len(parts) < 2:
        raise ConfigError(f"bad --fault {spec!r}: want T:ACTION[:ARG...]")
    try:
        at = float(parts[0])
    except ValueError as e:
        raise ConfigError(f"bad --fault {spec!r}: time {parts[0]!r} is not a number") from e
    action, args = parts[1], parts[2:]
    try:
        if action == "weights":
            pairs = []
            for kv in ":".join(args).split(","):
                r, eq, w = kv.partition("=")
                if not eq:
                    raise ValueError(kv)
                pairs.append((r.strip(), float(w)))
            return _check(FaultAction(at, action, weights=tuple(pairs)))
        if action == "origin":
            mode = args[0] if args else ""
            rate = float(args[1]) if len(args) > 1 else 1.0
            delay = float(args[2]) if len(args) > 2 else (0.5 if mode == "slow" else 0.0)
            return _check(FaultAction(at, action, mode, rate=rate, delay=delay))
    except (ValueError, IndexError) as e:
        raise ConfigError(f"bad --fault {spec!r}: {e}") from e
    return _check(FaultAction(at, action, args[0] if args else ""))


def parse_table(t: dict[str, Any]) -> FaultAction:
    try:
        at = float(t["at"])
        action = str(t["action"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"[[faults]] entry needs 'at' (seconds) and 'action': {t}") from e
    target = str(t.get("edge") or t.get("region") or t.get("mode") or t.get("target") or "")
    try:
        weights = tuple((str(k), float(v)) for k, v in dict(t.get("weights", {})).items())
        return _check(FaultAction(
            at, action, target, weights, float(t.get("rate", 1.0)),
            float(t.get("delay", 0.5 if target == "slow" else 0.0)), int(t.get("status", 503)),
        ))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"[[faults]] entry {t}: {e}") from e


@dataclass(slots=True)
class Scenario:
    faults: list[FaultAction] = field(default_factory=list)
    bench: dict[str, Any] = field(default_factory=dict)  # overrides of the fleet's [bench]


def load_scenario(path: str | Path) -> Scenario:
    doc = load_toml(path)
    faults = [parse_table(t) for t in doc.get("faults", [])]
    return Scenario(sorted(faults, key=lambda a: a.at), dict(doc.get("bench", {})))


def validate_targets(faults: list[FaultAction], fleet: Fleet) -> None:
    """Names in the scenario must exist in the fleet."""
    edges = {e.name for e in fleet.edges}
    regions = {r.name for r in fleet.regions}
    for a in faults:
        if a.action in EDGE_ACTIONS and a.target not in edges:
            raise ConfigError(f"fault {a.describe()}: no edge {a.target!r} in the fleet")
        if a.action in ("evacuate", "restore") and a.target not in regions:
            raise ConfigError(f"fault {a.describe()}: no region {a.target!r} in the fleet")
        for r, _ in a.weights:
            if r not in regions:
                raise ConfigError(f"fault {a.describe()}: no region {r!r} in the fleet")


# -- the hands ---------------------------------------------------------------------------


def find_edge_pid(name: str, listen: str = "") -> int | None:
    """The pid of a running ``edgecdn edge`` started with ``--name NAME`` (or that listen)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "edge" not in args:
            continue
        flags = dict(zip(args, args[1:], strict=False))
        if (name and flags.get("--name") == name) or (listen and flags.get("--listen") == listen):
            return int(d)
        if "--config" in flags and "--name" not in flags:  # identity inside the config file
            try:
                node = load_toml(flags["--config"]).get("edge", {})
            except (ConfigError, OSError):
                continue
            if node.get("name") == name or (listen and node.get("listen") == listen):
                return int(d)
    return None


def signal_edge(pid: int, sig: int) -> None:
    """Signal the edge's whole process group when it leads one (workers go with it)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
    except ProcessLookupError:
        raise
    except OSError:
        pass
    os.kill(pid, sig)


class FaultController:
    """Applies FaultActions to a running fleet over HTTP and signals; never raises."""

    def __init__(self, fleet: Fleet, http: aiohttp.ClientSession, steering_url: str,
                 fault_proxy: str = "", pids: dict[str, int] | None = None,
                 on_signal: Callable[[str, str], None] | None = None) -> None:
        self.fleet = fleet
        self.http = http
        self.steering_url = steering_url.rstrip("/")
        self.fault_proxy = fault_proxy.rstrip("/")
        self.pids = dict(pids or {})
        self.admin_token = str(fleet.steering.get("admin_token", ""))
        self.on_signal = on_signal

    async def apply(self, a: FaultAction) -> tuple[bool, str]:
        try:
            if a.action in EDGE_ACTIONS:
                return self._signal(a)
            if a.action == "origin":
                return await self._origin(a)
            return await self._steering(a)
        except Exception as e:  # a failed fault is reported, never fatal to the run
            return False, f"{type(e).__name__}: {e}"

    def _signal(self, a: FaultAction) -> tuple[bool, str]:
        edge = self.fleet.edge(a.target)
        pid = self.pids.get(a.target)
        if pid is None:
            listen = edge.url.split("://", 1)[-1]
            pid = find_edge_pid(a.target, listen)
        if pid is None:
            return False, f"no process found for edge {a.target}"
        signal_edge(pid, EDGE_ACTIONS[a.action])
        if self.on_signal:
            self.on_signal(a.action, a.target)
        return True, f"pid {pid}"

    async def _origin(self, a: FaultAction) -> tuple[bool, str]:
        if not self.fault_proxy:
            return False, "no fault proxy configured (--fault-proxy or [bench] fault_proxy)"
        body = {"mode": a.target, "rate": a.rate, "delay": a.delay, "status": a.status}
        async with self.http.post(f"{self.fault_proxy}/_fault", json=body) as r:
            return r.status == 200, f"fault proxy {r.status}"

    async def _steering(self, a: FaultAction) -> tuple[bool, str]:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        if a.action == "weights":
            url, body = f"{self.steering_url}/v1/admin/weights", {"weights": dict(a.weights)}
        else:
            url, body = f"{self.steering_url}/v1/admin/{a.action}", {"region": a.target}
        async with self.http.post(url, json=body, headers=headers) as r:
            text = (await r.text())[:200]
            return r.status == 200, f"steering {r.status} {text}".strip()


async def run_schedule(faults: list[FaultAction], ctl: FaultController,
                       now: Callable[[], float],
                       record: Callable[[float, str, bool, str], None]) -> None:
    """Apply each fault at its time (relative to the run clock ``now``)."""
    for a in sorted(faults, key=lambda a: a.at):
        wait = a.at - now()
        if wait > 0:
            await asyncio.sleep(wait)
        ok, detail = await ctl.apply(a)
        record(now(), a.describe(), ok, detail)
