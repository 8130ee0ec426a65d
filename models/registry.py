"""Model registry: versioned, checksummed snapshots in a shared directory, and hot reload.

Layout: ``<root>/v00000012/{model.safetensors, state.json, meta.json}``. ``meta.json``
holds version, created_at, events_seen, last_event_ts, kind, config and the sha256 of
the other two files. Publishing writes into a temporary directory and renames it, so
readers never see half a snapshot; a snapshot whose checksum does not match is rejected
with a reason. No pickle anywhere: tensors go through safetensors, the rest is JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from models.base import OnlineModel
from models.baselines import PopularityModel
from models.gru import BayesGRUModel, GRUModel
from models.river_models import RiverFMModel, RiverLogRegModel

log = logging.getLogger(__name__)

MODEL_KINDS: dict[str, type[OnlineModel]] = {
    cls.kind: cls
    for cls in (GRUModel, BayesGRUModel, PopularityModel, RiverLogRegModel, RiverFMModel)
}
TENSORS, STATE, META = "model.safetensors", "state.json", "meta.json"


class SnapshotError(Exception):
    """A snapshot is missing, unreadable or fails its checksum; `reason` says which."""

    def __init__(self, version: int | None, reason: str) -> None:
        self.version = version
        self.reason = reason
        super().__init__(f"snapshot {version}: {reason}")


@dataclass(frozen=True)
class SnapshotInfo:
    """One registry entry as listed by `ModelRegistry.list`."""

    version: int
    path: str
    kind: str | None
    created_at: float | None
    events_seen: int | None
    last_event_ts: int | None
    valid: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form (for the CLI)."""
        return dict(self.__dict__)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dirname(version: int) -> str:
    return f"v{version:08d}"


class ModelRegistry:
    """Versioned snapshot store in a directory shared by the trainer and every scorer."""

    def __init__(self, root: str | os.PathLike[str], keep: int | None = 20) -> None:
        if keep is not None and keep < 1:
            raise ValueError("keep must be >= 1 or None")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = keep

    # --- listing ------------------------------------------------------------------------
    def versions(self) -> list[int]:
        """Published versions, ascending (cheap: directory names only)."""
        out = []
        for p in self.root.iterdir():
            if p.is_dir() and p.name.startswith("v") and p.name[1:].isdigit():
                out.append(int(p.name[1:]))
        return sorted(out)

    def latest_version(self) -> int | None:
        """Highest published version, valid or not."""
        vs = self.versions()
        return vs[-1] if vs else None

    def path(self, version: int) -> Path:
        """Directory of `version`."""
        return self.root / _dirname(version)

    def read_meta(self, version: int) -> dict[str, Any]:
        """Metadata of `version` (raises SnapshotError if missing/unreadable)."""
        try:
            meta = json.loads((self.path(version) / META).read_text())
        except FileNotFoundError as exc:
            raise SnapshotError(version, "missing meta.json") from exc
        except (OSError, ValueError) as exc:
            raise SnapshotError(version, f"unreadable meta.json ({exc})") from exc
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), dict):
            raise SnapshotError(version, "meta.json lacks sha256")
        return meta

    def verify(self, version: int) -> dict[str, Any]:
        """Check both checksums; returns the metadata or raises SnapshotError(reason)."""
        meta = self.read_meta(version)
        for name in (TENSORS, STATE):
            path = self.path(version) / name
            if not path.exists():
                raise SnapshotError(version, f"missing {name}")
            digest = _sha256(path)
            if digest != meta["sha256"].get(name):
                raise SnapshotError(version, f"checksum mismatch in {name} (sha256 {digest[:12]}…)")
        return meta

    def list(self) -> list[SnapshotInfo]:
        """Every version with its metadata and validity (checksums verified)."""
        out = []
        for v in self.versions():
            meta: dict[str, Any] = {}
            try:
                meta = self.verify(v)
                valid, reason = True, "ok"
            except SnapshotError as exc:
                valid, reason = False, exc.reason
                with contextlib.suppress(SnapshotError):
                    meta = self.read_meta(v)
            out.append(
                SnapshotInfo(
                    version=v,
                    path=str(self.path(v)),
                    kind=meta.get("kind"),
                    created_at=meta.get("created_at"),
                    events_seen=meta.get("events_seen"),
                    last_event_ts=meta.get("last_event_ts"),
                    valid=valid,
                    reason=reason,
                )
            )
        return out

    # --- writing ---------------------------------------------------------------------------
    def publish(self, model: OnlineModel, extra: dict[str, Any] | None = None) -> int:
        """Write `model` as the next version (atomic rename); returns the version."""
        tensors, state = model.state()
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
            save_file(arrays, str(tmp / TENSORS))
            (tmp / STATE).write_text(json.dumps(state))
            meta: dict[str, Any] = {
                "kind": model.kind,
                "created_at": time.time(),
                "events_seen": int(model.events_seen),
                "last_event_ts": int(model.last_event_ts),
                "n_items": len(model.items),
                "config": state.get("config", {}),
                "sha256": {n: _sha256(tmp / n) for n in (TENSORS, STATE)},
            }
            meta.update(extra or {})
            for _ in range(100):
                version = (self.latest_version() or 0) + 1
                meta["version"] = version
                (tmp / META).write_text(json.dumps(meta, indent=1))
                try:
                    os.rename(tmp, self.path(version))
                except OSError:  # another publisher took this version: try the next
                    continue
                self._prune()
                return version
            raise SnapshotError(None, "could not allocate a version")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _prune(self) -> None:
        if self.keep is None:
            return
        for v in self.versions()[: -self.keep]:
            shutil.rmtree(self.path(v), ignore_errors=True)

    # --- reading -----------------------------------------------------------------------------
    def load(self, version: int) -> OnlineModel:
        """Verify and load `version` (raises SnapshotError with the reason)."""
        meta = self.verify(version)
        kind = meta.get("kind")
        cls = MODEL_KINDS.get(str(kind))
        if cls is None:
            raise SnapshotError(version, f"unknown model kind {kind!r}")
        try:
            tensors = load_file(str(self.path(version) / TENSORS))
            state = json.loads((self.path(version) / STATE).read_text())
            model = cls.from_state(tensors, state)
        except SnapshotError:
            raise
        except Exception as exc:  # a valid checksum over a bad file: still reject it
            raise SnapshotError(version, f"cannot restore ({type(exc).__name__}: {exc})") from exc
        model.snapshot_version = version  # type: ignore[attr-defined]
        return model

    def latest_valid(self, newer_than: int | None = None) -> tuple[int, OnlineModel] | None:
        """Newest loadable snapshot (skipping corrupt ones, logged with their reason)."""
        self.rejected: dict[int, str] = {}
        for v in reversed(self.versions()):
            if newer_than is not None and v <= newer_than:
                break
            try:
                return v, self.load(v)
            except SnapshotError as exc:
                self.rejected[v] = exc.reason
                log.warning("rejecting snapshot %s: %s", v, exc.reason)
        return None

    def rollback(self, version: int) -> int:
        """Republish a valid older `version` as the newest one; returns the new version."""
        model = self.load(version)
        return self.publish(model, extra={"rollback_of": version})


class SnapshotWatcher:
    """Hot-reload helper for scorers: poll `maybe_reload()`; corrupt snapshots are skipped.

    Keeps serving the current model when the newest snapshot is corrupt, and never retries
    a rejected version (its reason is in `rejected`).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        min_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.model: OnlineModel | None = None
        self.version: int | None = None
        self.rejected: dict[int, str] = {}
        self._last_poll: float | None = None

    def maybe_reload(self) -> OnlineModel | None:
        """Load the newest valid snapshot newer than the current one; None if nothing new."""
        now = self.clock()
        if self._last_poll is not None and now - self._last_poll < self.min_interval_s:
            return None
        self._last_poll = now
        latest = self.registry.latest_version()
        if latest is None or (self.version is not None and latest <= self.version):
            return None
        for v in reversed(self.registry.versions()):
            if self.version is not None and v <= self.version:
                break
            if v in self.rejected:
                continue
            try:
                model = self.registry.load(v)
            except SnapshotError as exc:
                self.rejected[v] = exc.reason
                log.warning(
                    "keeping version %s; rejected snapshot %s: %s", self.version, v, exc.reason
                )
                continue
            self.model, self.version = model, v
            return model
        return None
