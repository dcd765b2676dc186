"""Command-line entry point ``xai-pool``.

Each subcommand lives in its own module under :mod:`xai_pool.commands` and exposes
``register(subparsers)`` (which adds its parser and sets ``func``); this file only
discovers them, so adding a command never touches this file. Command modules import
torch lazily inside their run function so ``xai-pool --help`` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import pkgutil
import sys
from collections.abc import Sequence

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
    except (ValueError, TypeError, RuntimeError, OSError, ImportError) as exc:
        # Library errors are written to be read by people: show the message, not a traceback
        # (ImportError: a missing optional dependency, named with its pip command). Anything
        # else is a bug and keeps its traceback for the report.
        if getattr(args, "debug", False):
            raise
        text = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        print(f"xai-pool {args.command}: error: {text}", file=sys.stderr)
        return 2


# What to do about an operating-system error, by errno (the path and the reason come first).
_OS_HINTS = {
    errno.EACCES: "check its permissions, or choose another location",
    errno.EPERM: "check its permissions, or choose another location",
    errno.EROFS: "the file system is read-only; choose another location",
    errno.ENOSPC: "free some disk space, or choose another location",
    getattr(errno, "EDQUOT", -1): "free some space in your quota, or choose another location",
    errno.EEXIST: "remove it, or choose another name",
    errno.EISDIR: "it is a folder; give a file name",
    errno.ENOTDIR: "part of the path is a file, not a folder; fix the path",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EMFILE: "too many open files; lower the number of workers or raise the limit (ulimit -n)",
}
# Errors that can only come from writing (others may come from reading too).
_WRITE_ERRORS = {errno.EROFS, errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EEXIST}


def describe_os_error(exc: OSError) -> str:
    """One line for an ``OSError``: ``cannot write '<path>': <reason>; <what to do>``.

    Errors raised by xai_pool with a complete sentence (one argument, no ``strerror``) are
    shown as they are.
    """
    if exc.strerror is None:
        return str(exc)
    path = exc.filename if exc.filename is not None else "?"
    if exc.filename2 is not None:
        path = f"{exc.filename}' -> '{exc.filename2}"
    verb = "cannot write" if exc.errno in _WRITE_ERRORS else "cannot access"
    hint = _OS_HINTS.get(exc.errno, "check the path and try again")
    return f"{verb} '{path}': {exc.strerror}; {hint}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
