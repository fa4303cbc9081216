"""The bench's origin: a tiny aiohttp static server over generated segments and objects.

Only the warm-up touches it (the measured phase is all hits), so it favours being obviously
correct (Range, ETag, Last-Modified from aiohttp's FileResponse) over being fast.
Run as ``python -m bench.serve_origin --listen 127.0.0.1:PORT --root DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path

CACHE_CONTROL = "public, max-age=86400"


@dataclass(frozen=True)
class SizeClass:
    """One kind of content: ``count`` files of ``size`` bytes under /bench/<name>/."""

    name: str
    size: int
    count: int

    def paths(self) -> list[str]:
        return [f"/bench/{self.name}/{self.name}_{i:05d}.bin" for i in range(self.count)]


def content(path: str, size: int) -> bytes:
    """Deterministic bytes for a path, so any server's reply can be checked."""
    block = hashlib.sha256(path.encode()).digest() * 2048  # 64 KiB
    reps = size // len(block) + 1
    return (block * reps)[:size]


def write_tree(root: Path, classes: list[SizeClass]) -> None:
    """Write every file the origin serves under root (url path == file path)."""
    for sc in classes:
        for p in sc.paths():
            f = root / p.lstrip("/")
            f.parent.mkdir(parents=True, exist_ok=True)
            if not f.exists() or f.stat().st_size != sc.size:
                f.write_bytes(content(p, sc.size))


def make_app(root: Path):
    from aiohttp import web

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Cache-Control"] = CACHE_CONTROL

    app = web.Application()
    app.router.add_static("/", root, show_index=False, follow_symlinks=False)
    app.on_response_prepare.append(add_headers)
    return app


def main(argv: list[str] | None = None) -> int:
    from aiohttp import web

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT")
    ap.add_argument("--root", required=True, type=Path)
    a = ap.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    web.run_app(make_app(a.root), host=host, port=int(port), print=None,
                access_log=None, handle_signals=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
