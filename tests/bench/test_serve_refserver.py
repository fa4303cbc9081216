"""The reference server answers hits, misses, unknown paths and garbage the same in every mode."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import serve as sv
from bench import serve_servers as srv
from bench.serve_origin import SizeClass, content, write_tree

ROOT = Path(__file__).resolve().parents[2]
BIG = SizeClass("segment", 300_000, 1)  # above the coalescing limit: separate body write


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("origin")
    write_tree(root, [BIG, SizeClass("object", 1000, 1)])
    r = srv.start_origin(root, tmp_path_factory.mktemp("log") / "origin.log")
    yield r.url
    srv.stop(r)


@pytest.mark.parametrize("peer", ["ref", "ref-sendfile", "ref-pread", "ref-split"])
def test_refserver_miss_then_hit_with_exact_bytes(origin: str, peer: str, tmp_path: Path) -> None:
    r = srv.start(srv.KNOWN[peer], origin, tmp_path, cpu=None, memory_cache="",
                  disk_cache="", nginx_bin=None)
    try:
        for path, size in ((BIG.paths()[0], BIG.size), ("/bench/object/object_00000.bin", 1000)):
            _, h1, b1 = sv.http_get(r.port, path)
            _, h2, b2 = sv.http_get(r.port, path)
            assert b1 == b2 == content(path, size)
            assert not srv.is_hit("ref", h1["cache-status"])
            assert srv.is_hit("ref", h2["cache-status"])
        status, _, _ = sv.http_get(r.port, "/bench/nope.bin")
        assert status == 404
        with socket.create_connection(("127.0.0.1", r.port), timeout=5) as s:
            s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 400")
    finally:
        srv.stop(r)
