"""The peers ``bench serve`` compares: how to start each, pinned, and how it says "hit".

A peer is a name (``nginx``, ``edgecdn``, ``edgecdn-w2``, ``ref``...) resolved to a
:class:`Peer`: the command to run, which header carries the cache status, and how many
workers it runs. Every peer runs in its own session so it can be stopped as a group.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import nginx as ngx


@dataclass(frozen=True)
class Peer:
    name: str
    kind: str  # nginx | edgecdn | ref
    workers: int = 1
    mode: str = "memory"  # ref: memory | sendfile | pread; edgecdn: memory | disk
    extra: tuple[str, ...] = ()
    src: str | None = None  # run edgecdn from this source tree instead of ours (A/B builds)

    @property
    def cache_header(self) -> str:
        return ngx.CACHE_HEADER if self.kind == "nginx" else "Cache-Status"


def is_hit(kind: str, value: str | None) -> bool:
    """Whether a response's cache-status header value says it was served from cache."""
    if value is None:
        return False
    if kind == "nginx":
        return value.strip().upper() == "HIT"
    # RFC 9211: the first (our) entry, params after ';'; a hit has "hit" and no fwd=
    first = value.split(",", 1)[0]
    params = [p.strip().lower() for p in first.split(";")[1:]]
    return "hit" in params and not any(p.startswith("fwd=") for p in params)


def edge_available() -> bool:
    return importlib.util.find_spec("edge.cli") is not None


KNOWN = {
    "nginx": Peer("nginx", "nginx"),
    "nginx-w2": Peer("nginx-w2", "nginx", workers=2),  # the same turns on one core, in C
    "edgecdn": Peer("edgecdn", "edgecdn"),
    "edgecdn-w2": Peer("edgecdn-w2", "edgecdn", workers=2),
    "edgecdn-disk": Peer("edgecdn-disk", "edgecdn", mode="disk"),
    "ref": Peer("ref", "ref"),
    "ref-sendfile": Peer("ref-sendfile", "ref", mode="sendfile"),
    "ref-pread": Peer("ref-pread", "ref", mode="pread"),
    "ref-sendfile-w2": Peer("ref-sendfile-w2", "ref", workers=2, mode="sendfile"),
    # header and body as two transport.write calls, as a layered server tends to do
    "ref-split": Peer("ref-split", "ref", extra=("--coalesce-below", "0")),
}


def parse_variant(spec: str) -> tuple[str, list[str]]:
    """``NAME=FLAGS``: an extra edgecdn peer started with FLAGS added (for A/B runs).

    FLAGS may start with ``@DIR``: that peer runs the edgecdn of the source tree DIR (e.g. an
    exported older commit or a patched copy), so two builds are measured interleaved.
    """
    name, sep, flags = spec.partition("=")
    name = name.strip()
    if not sep or not name or name in KNOWN or "/" in name:
        raise ValueError(f"bad --variant {spec!r}: want NAME=FLAGS with a new NAME")
    return name, shlex.split(flags)


def resolve(names: list[str], variants: dict[str, list[str]] | None = None) -> list[Peer]:
    """Peers by name; ``variants`` are edgecdn peers with extra flags."""
    variants = variants or {}
    out = []
    for n in names:
        if n in variants:
            args = variants[n]
            src = None
            if args and args[0].startswith("@"):
                src, args = args[0][1:], args[1:]
                if not (Path(src) / "edgecdn" / "cli.py").is_file():
                    raise ValueError(f"variant {n}: {src} is not an edgecdn source tree")
            w = int(args[args.index("--workers") + 1]) if "--workers" in args[:-1] else 1
            out.append(Peer(n, "edgecdn", workers=w, extra=tuple(args), src=src))
        elif n in KNOWN:
            out.append(KNOWN[n])
        else:
            raise ValueError(f"unknown server {n!r}; known: {', '.join([*KNOWN, *variants])}")
    return out


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    if cpu is None:
        return cmd
    ts = shutil.which("taskset")
    if ts is None:
        raise RuntimeError("taskset (util-linux) is needed to pin processes to a core")
    return [ts, "-c", str(cpu), *cmd]


@dataclass
class Running:
    peer: Peer
    port: int
    proc: subprocess.Popen
    workdir: Path
    log: Path
    logs_read: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 2000) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            text = ""
        err = self.workdir / "error.log"
        if err.exists():
            text += err.read_text(errors="replace")
        return text[-n:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(peer: Peer, port: int, origin: str, workdir: Path, *, memory_cache: str,
            disk_cache: str, nginx_bin: str | None, edge_args: tuple[str, ...] = ()
            ) -> list[str]:
    listen = f"127.0.0.1:{port}"
    if peer.kind == "nginx":
        if nginx_bin is None:
            raise RuntimeError("nginx not found")
        conf = ngx.NginxConf(listen=listen, origin=origin, prefix=workdir,
                             workers=peer.workers, user=ngx.default_user())
        ngx.write(conf)
        return ngx.command(nginx_bin, conf)
    if peer.kind == "ref":
        return [sys.executable, "-m", "bench.refserver", "--listen", listen,
                "--origin", origin, "--mode", peer.mode, "--cache-dir", str(workdir),
                "--workers", str(peer.workers), *peer.extra]
    mem = "0" if peer.mode == "disk" else memory_cache
    return [sys.executable, "-m", "edgecdn.cli", "edge", "--listen", listen,
            "--origin", origin, "--cache-dir", str(workdir / "cache"),
            "--memory-cache", mem, "--disk-cache", disk_cache,
            "--workers", str(peer.workers), *peer.extra, *edge_args]


def start(peer: Peer, origin: str, workdir: Path, *, cpu: int | None, memory_cache: str,
          disk_cache: str, nginx_bin: str | None, edge_args: tuple[str, ...] = (),
          ready_timeout: float = 30.0) -> Running:
    """Start a peer pinned to ``cpu`` and wait until its port accepts connections."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = pinned(command(peer, port, origin, workdir, memory_cache=memory_cache,
                         disk_cache=disk_cache, nginx_bin=nginx_bin, edge_args=edge_args), cpu)
    log = workdir / "server.log"
    env = None
    cwd = Path(__file__).resolve().parent.parent
    if peer.src is not None:  # `python -m` puts the cwd first on sys.path
        cwd = Path(peer.src).resolve()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(cwd), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=cwd, env=env)
    r = Running(peer, port, proc, workdir, log)
    wait_port(r, ready_timeout)
    return r


def wait_port(r: Running, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if r.proc.poll() is not None:
            raise RuntimeError(f"{r.peer.name} exited with {r.proc.returncode}:\n{r.log_tail()}")
        try:
            socket.create_connection(("127.0.0.1", r.port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    stop(r)
    raise RuntimeError(f"{r.peer.name} did not listen on {r.port} within {timeout:.0f}s:\n"
                       f"{r.log_tail()}")


def stop(r: Running, timeout: float = 10.0) -> None:
    """SIGTERM the peer, then SIGKILL its process group if it lingers."""
    if r.proc.poll() is None:
        try:
            r.proc.send_signal(signal.SIGTERM)
            r.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(r.proc.pid, signal.SIGKILL)  # our own session: stray workers too
    except (ProcessLookupError, PermissionError):
        pass
    if r.proc.poll() is None:
        r.proc.wait(5)


def start_origin(root: Path, log: Path, timeout: float = 30.0) -> Running:
    """The bench origin (bench.serve_origin) over ``root``, unpinned: only warm-up uses it."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.serve_origin", "--listen", f"127.0.0.1:{port}",
             "--root", str(root)], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
            cwd=Path(__file__).resolve().parent.parent)
    r = Running(Peer("origin", "origin"), port, proc, root, log)
    wait_port(r, timeout)
    return r
