"""`slatestream model list | rollback VERSION`: inspect and roll back the model registry."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `model` subcommand."""
    p = sub.add_parser("model", help="list model snapshots or roll back to one")
    p.add_argument("action", choices=["list", "rollback"])
    p.add_argument("version", nargs="?", default=None, help="rollback: the version to restore")
    p.add_argument("--registry", default=None, help="registry directory (default: settings)")
    p.set_defaults(func=run)


def _err(msg: str) -> int:
    print(f"slatestream: error: {msg}", file=sys.stderr)
    return 2


def _registry_path(arg: str | None) -> str:
    if arg:
        return arg
    from streams.config import load_settings

    return load_settings().effective_registry


def run(args: argparse.Namespace) -> int:
    """List snapshots as JSON lines, or republish VERSION as the newest snapshot."""
    from models.registry import ModelRegistry, SnapshotError

    path = _registry_path(args.registry)
    if path.startswith("redis://"):
        return _err("the Redis registry backend is not implemented; use a directory path")
    if not Path(path).is_dir():
        return _err(f"no model registry at {path}")
    registry = ModelRegistry(path, keep=None)
    if args.action == "list":
        if args.version is not None:
            return _err("model list takes no VERSION")
        infos = registry.list()
        for info in infos:
            print(json.dumps(info.to_json()))
        if not infos:
            print(f"slatestream: note: no model snapshots in {path}", file=sys.stderr)
        return 0
    if args.version is None:
        return _err("model rollback needs a VERSION (see `slatestream model list`)")
    try:
        version = int(str(args.version).lstrip("v"))
    except ValueError:
        return _err(f"VERSION must be an integer, not {args.version!r}")
    if version not in registry.versions():
        return _err(f"no snapshot version {version} in {path}")
    try:
        new = registry.rollback(version)
    except SnapshotError as exc:
        return _err(f"cannot roll back: {exc}")
    print(json.dumps({"rolled_back_to": version, "new_version": new, "registry": path}))
    return 0
