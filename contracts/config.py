"""TOML config loading with flag overrides: one place that says how a file becomes settings."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config file or flag is wrong; the message says which key and why."""


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {p}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: {e}") from e


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge; an override of None means "not given" and keeps the base value."""
    out: dict[str, Any] = dict(base)
    for k, v in overrides.items():
        if v is None:
            continue
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def split_hostport(value: str, default_port: int | None = None) -> tuple[str, int]:
    """"127.0.0.1:8080", "[::1]:8080", ":8080" -> (host, port)."""
    v = value.strip()
    if v.startswith("["):
        host, sep, rest = v[1:].partition("]")
        port_s = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_s = v.rpartition(":")
        if not sep:
            host, port_s = v, ""
    host = host or "127.0.0.1"
    if not port_s:
        if default_port is None:
            raise ConfigError(f"listen address needs a port: {value!r}")
        return host, default_port
    try:
        port = int(port_s)
    except ValueError as e:
        raise ConfigError(f"bad port in {value!r}") from e
    if not 0 <= port <= 65535:
        raise ConfigError(f"port out of range in {value!r}")
    return host, port
