"""``edgecdn`` command: each component registers its own subcommands.

Components are imported lazily, so ``edgecdn edge`` never imports steering and vice versa.
A component module exposes ``register(subparsers)``; each parser sets ``func`` taking the
parsed args and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module providing register(subparsers)
COMPONENTS = {
    "edge": "edge.cli",
    "steer": "steering.cli",
    "origin": "origin.cli",
    "fill": "origin.fill_cli",
    "bench": "bench.cli",
    "demo": "bench.demo_cli",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgecdn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in COMPONENTS else None
    for name, module in COMPONENTS.items():
        if wanted and name != wanted:
            sub.add_parser(name)
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):
                sub.add_parser(name, help="(not built yet)")
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
