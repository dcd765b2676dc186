"""Command-line entry point ``xai-pool``.

Each subcommand lives in its own module under :mod:`xai_pool.commands` and exposes
``register(subparsers)`` (which adds its parser and sets ``func``); this file only
discovers them, so adding a command never touches this file. Command modules import
torch lazily inside their run function so ``xai-pool --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

from ._version import __version__


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(
        prog="xai-pool",
        description="CA-Stream attention pooling for interpretable CNN classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"xai-pool {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``xai-pool``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, TypeError, RuntimeError) as exc:
        # Library errors are written to be read by people: show the message, not a traceback.
        if getattr(args, "debug", False):
            raise
        print(f"xai-pool {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
