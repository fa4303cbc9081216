"""Edge config: the example file loads, flags override it, bad values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.config import ConfigError
from edge.cli import overrides, register
from edge.config import build_config, load_config

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "configs" / "edge.example.toml"


def _args(*argv: str):
    import argparse

    p = argparse.ArgumentParser()
    register(p.add_subparsers())
    return p.parse_args(["edge", *argv])


def test_example_config_loads():
    cfg = load_config(EXAMPLE)
    assert cfg.origin.kind == "s3" and cfg.origin.bucket == "video-origin"
    assert cfg.origin.prefix == "packaged"
    assert cfg.cache.chunk_size == 2 * 1024**2 and cfg.cache.disk_bytes == 20 * 1024**3
    assert cfg.node.listen == ("127.0.0.1", 8080)


def test_flags_override_the_file():
    a = _args("--config", str(EXAMPLE), "--listen", "0.0.0.0:9000", "--origin",
              "http://o.example:8080/base/", "--cache-dir", "/tmp/c", "--memory-cache", "1GiB",
              "--disk-cache", "2GiB", "--chunk-size", "1MiB", "--policy", "lru", "--workers",
              "3", "--token-secret", "k1=abc", "--token-secret", "k2=def", "--name", "x",
              "--scrub-rate", "0")
    cfg = load_config(a.config, overrides(a))
    assert cfg.node.listen == ("0.0.0.0", 9000) and cfg.node.workers == 3
    assert cfg.origin.kind == "http" and cfg.origin.bucket == "http://o.example:8080"
    assert cfg.origin.prefix == "base"
    assert cfg.cache.memory_bytes == 1024**3 and cfg.cache.chunk_size == 1024**2
    assert cfg.cache.policy == "lru" and cfg.node.name == "x"
    assert cfg.tokens.required and cfg.tokens.secrets == {"k1": b"abc", "k2": b"def"}
    assert cfg.cache.scrub_rate == 0  # the scrub off
    # the file's values survive where no flag is given
    assert cfg.node.site == "lon" and cfg.cache.fsync is True
    assert cfg.cache.scrub_interval == 86400
    assert load_config(EXAMPLE).cache.scrub_rate == 8 * 1024**2


@pytest.mark.parametrize("doc,key", [
    ({"cache": {"disk": "lots"}}, "cache.disk"),
    ({"cache": {"chunk_size": "1KiB"}}, "cache.chunk_size"),
    ({"cache": {"policy": "fifo"}}, "cache.policy"),
    ({"cache": {"scrub_rate": "fast"}}, "cache.scrub_rate"),
    ({"cache": {"scrub_interval": 0}}, "cache.scrub_interval"),
    ({"edge": {"listen": "nohost"}}, "edge.listen"),
    ({"edge": {"workers": 0}}, "edge.workers"),
    ({"origin": {"url": "ftp://x"}}, "origin.url"),
    ({"origin": {"url": ""}}, "origin.url"),
    ({"origin": {"read_timeout": "fast"}}, "origin.read_timeout"),
    ({"tokens": {"required": True}}, "tokens.required"),
    ({"log": {"spool": "yes"}}, "log.spool"),
    ({"bogus": {}}, "bogus"),
])
def test_bad_values_name_the_key(doc, key):
    base = {"origin": {"url": "http://127.0.0.1:1"}}
    for sec, vals in doc.items():
        base.setdefault(sec, {}).update(vals)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_config(base)


def test_cli_reports_config_errors_with_exit_2(capsys):
    from edgecdn.cli import main

    assert main(["edge", "--origin", "ftp://nope", "--cache-dir", "/tmp/x"]) == 2
    assert "origin.url" in capsys.readouterr().err
