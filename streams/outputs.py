"""Checks of the paths commands write their results to, made before a long run."""

from __future__ import annotations

import tempfile
from pathlib import Path

from streams.errors import SlatestreamError


def check_writable_dir(path: Path, flag: str) -> None:
    """Raise SlatestreamError unless files can be written in directory `path` (made later if
    missing): checked up front, so a long query or evaluation is not lost to a bad path.
    A real write probe (not os.access, which root always passes) also catches read-only mounts."""
    target = path
    while not target.exists() and target.parent != target:
        target = target.parent
    if not target.is_dir():
        what = "exists and is not a directory" if target == path else f"{target} is not a directory"
        raise SlatestreamError(f"{flag} {path}: {what}")
    try:
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        raise SlatestreamError(
            f"{flag} {path}: cannot write in {target} ({exc.strerror or exc})"
        ) from None
