"""Subcommands of the `slatestream` CLI; each module exposes `register(subparsers)`."""

from __future__ import annotations

import argparse

from streams.errors import SlatestreamError


def with_actions(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    helptext: str,
    actions: tuple[str, ...],
) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    """Add command `name` whose ACTIONs the caller adds to the returned subparsers; the
    command without an ACTION is a usage error that names them."""

    def no_action(args: argparse.Namespace) -> int:
        raise SlatestreamError(
            f"{name} needs an ACTION: {' or '.join(actions)} (see `slatestream {name} --help`)"
        )

    p = sub.add_parser(name, help=helptext)
    p.set_defaults(func=no_action)
    return p.add_subparsers(dest=f"{name}_command", metavar="ACTION")
