"""The `slatestream` command: discovers subcommands in `streams.commands` and runs them.

Every subcommand module exposes `register(subparsers)`; errors of slatestream are printed
as one line (`slatestream: error: …`) with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from features.base import StoreUnavailable
from streams import __version__, commands
from streams.config import ENV_PREFIX, LOG_LEVELS
from streams.errors import SlatestreamError


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other slatestream error."""

    def error(self, message: str) -> NoReturn:
        """Print `slatestream: error: …` (pointing at --help) on stderr and exit with code 2."""
        self.exit(2, f"slatestream: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every discovered subcommand registered."""
    parser = _Parser(
        prog="slatestream",
        description="Streaming online-learning slate recommender on Kafka.",
    )
    parser.add_argument("--version", action="version", version=f"slatestream {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = os.environ.get(f"{ENV_PREFIX}LOG_LEVEL", "WARNING").strip().upper()
    if level not in LOG_LEVELS:
        print(
            f"slatestream: error: {ENV_PREFIX}LOG_LEVEL: unknown log level {level!r} "
            f"({', '.join(LOG_LEVELS)})",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        print("slatestream: error: no COMMAND given (see `slatestream --help`)", file=sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except SlatestreamError as exc:
        print(f"slatestream: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable --out, a full disk, a missing file
        where = f": {exc.filename}" if exc.filename else ""
        print(f"slatestream: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:  # a command that needs Redis, which does not answer
        print(
            f"slatestream: error: feature store unavailable ({exc}); check "
            "SLATESTREAM_STORE_URL / SLATESTREAM_REDIS_URL and that Redis is running",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("slatestream: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line, the traceback with -v
        if args.verbose:
            raise
        print(
            f"slatestream: error: unexpected {type(exc).__name__}: {exc} (run with -v for the "
            "traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
