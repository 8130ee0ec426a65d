"""Subcommands of the `slatestream` CLI; each module exposes `register(subparsers)`."""
