"""Offline data sets: MovieLens-100k (from the recbole wheel) and the FINN.no slate format.

MovieLens-100k is read straight out of the ``recbole==1.2.1`` wheel (a zip) fetched with
``pip download --no-deps`` into the cache dir (``SLATESTREAM_DATA_DIR``, default
``~/.cache/slatestream/datasets``); recbole itself is never imported.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.base import SlateFeedback

RECBOLE_VERSION = "1.2.1"
ML100K_PREFIX = "recbole/dataset_example/ml-100k/ml-100k"


class DatasetError(Exception):
    """A data set cannot be found, fetched or parsed; the message says what to do."""


def data_dir() -> Path:
    """Cache directory for data sets (env SLATESTREAM_DATA_DIR)."""
    env = os.environ.get("SLATESTREAM_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "slatestream" / "datasets"


@dataclass
class InteractionData:
    """Interactions as parallel arrays plus item categories (category path per item)."""

    name: str
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    item_categories: dict[str, str] = field(default_factory=dict)
    item_genres: dict[str, list[str]] = field(default_factory=dict)
    item_titles: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.users.size)

    def time_order(self) -> np.ndarray:
        """Indices sorted by timestamp (stable: file order breaks ties)."""
        return np.argsort(self.timestamps, kind="stable")

    def user_sequences(self) -> dict[str, list[tuple[str, int]]]:
        """Per user, (item, ts) in time order (stable on ties)."""
        out: dict[str, list[tuple[str, int]]] = {}
        for i in self.time_order():
            out.setdefault(str(self.users[i]), []).append(
                (str(self.items[i]), int(self.timestamps[i]))
            )
        return out

    def all_items(self) -> list[str]:
        """Every item id (interacted or listed), numerically sorted when ids are numeric."""
        ids = set(map(str, np.unique(self.items))) | set(self.item_categories)
        return sorted(ids, key=lambda s: (0, int(s), s) if s.isdigit() else (1, 0, s))


def find_recbole_wheel(cache_dir: Path | None = None, download: bool = True) -> Path:
    """Path to the cached recbole wheel, downloading it with pip if allowed."""
    cache = Path(cache_dir) if cache_dir else data_dir()
    found = sorted(cache.glob(f"recbole-{RECBOLE_VERSION}-*.whl"))
    if found:
        return found[0]
    if not download:
        raise DatasetError(f"recbole-{RECBOLE_VERSION} wheel not in {cache}")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(
            f"data set cache {cache} is not a usable directory ({exc.strerror or exc}); "
            "check SLATESTREAM_DATA_DIR"
        ) from None
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q"]
    cmd += [f"recbole=={RECBOLE_VERSION}", "-d", str(cache)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(cache.glob(f"recbole-{RECBOLE_VERSION}-*.whl"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DatasetError(f"pip download recbole=={RECBOLE_VERSION} failed: {tail[0]}")
    return found[0]


def parse_ml100k(inter_text: str, item_text: str) -> InteractionData:
    """Parse RecBole atomic files (.inter, .item) of ml-100k."""
    lines = inter_text.splitlines()
    header = lines[0].split("\t")
    cols = {name.split(":")[0]: j for j, name in enumerate(header)}
    for need in ("user_id", "item_id", "rating", "timestamp"):
        if need not in cols:
            raise DatasetError(f".inter lacks column {need}")
    rows = [ln.split("\t") for ln in lines[1:] if ln.strip()]
    users = np.asarray([r[cols["user_id"]] for r in rows])
    items = np.asarray([r[cols["item_id"]] for r in rows])
    ratings = np.asarray([float(r[cols["rating"]]) for r in rows], np.float32)
    ts = np.asarray([int(float(r[cols["timestamp"]])) for r in rows], np.int64)
    cats: dict[str, str] = {}
    genres: dict[str, list[str]] = {}
    titles: dict[str, str] = {}
    ilines = item_text.splitlines()
    icols = {name.split(":")[0]: j for j, name in enumerate(ilines[0].split("\t"))}
    for ln in ilines[1:]:
        parts = ln.split("\t")
        if len(parts) < len(icols):
            continue
        iid = parts[icols["item_id"]]
        g = parts[icols["class"]].split() if "class" in icols else []
        genres[iid] = g
        cats[iid] = "movies/" + (g[0] if g else "unknown")
        if "movie_title" in icols:
            titles[iid] = parts[icols["movie_title"]]
    return InteractionData("ml-100k", users, items, ratings, ts, cats, genres, titles)


def load_movielens_100k(cache_dir: Path | None = None, download: bool = True) -> InteractionData:
    """MovieLens-100k (943 users, 1,682 items, 100,000 ratings) from the recbole wheel.

    The category path of an item is ``movies/<first listed genre>``; all genres are in
    `item_genres`.
    """
    wheel = find_recbole_wheel(cache_dir, download)
    try:
        with zipfile.ZipFile(wheel) as zf:
            inter = zf.read(f"{ML100K_PREFIX}.inter").decode("latin-1")
            item = zf.read(f"{ML100K_PREFIX}.item").decode("latin-1")
    except (KeyError, OSError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{wheel} has no readable ml-100k files ({exc})") from exc
    return parse_ml100k(inter, item)


# --- FINN.no slate data set --------------------------------------------------------------------
NO_CLICK_ITEM = 1  # FINN.no convention: item 0 = padding, item 1 = "no click"
_FINN_ARRAYS = ("slate", "click", "click_idx", "slate_lengths", "interaction_type")


@dataclass
class SlateData:
    """FINN.no slate arrays: per user u and step t, the slate shown and what was clicked."""

    slate: np.ndarray  # (U, T, K) item ids, 0 = padding
    click: np.ndarray  # (U, T) clicked item id (1 = no click, 0 = padding step)
    click_idx: np.ndarray  # (U, T) clicked position in slate
    slate_lengths: np.ndarray  # (U, T)
    interaction_type: np.ndarray  # (U, T) e.g. 1 = search, 2 = recommendation
    category: np.ndarray | None = None  # (n_items,) group id per item

    def __post_init__(self) -> None:
        arrays = {f: getattr(self, f) for f in _FINN_ARRAYS}
        if self.category is not None:
            arrays["category"] = self.category
        for name, arr in arrays.items():
            # integer arrays are finite by type: only float ones are scanned
            if arr.dtype.kind not in "biuf" or (
                arr.dtype.kind == "f" and not np.isfinite(arr).all()
            ):
                raise DatasetError(f"{name} must hold finite numbers (got {arr.dtype} data)")
        if self.click.ndim != 2:
            raise DatasetError(f"click must be 2-D (users, steps), not shape {self.click.shape}")
        if self.category is not None and self.category.ndim != 1:
            raise DatasetError(f"category must be 1-D (items), not shape {self.category.shape}")
        u, t = self.click.shape
        if self.slate.ndim != 3 or self.slate.shape[:2] != (u, t):
            raise DatasetError(f"slate shape {self.slate.shape} does not match click {(u, t)}")
        for name in ("click_idx", "slate_lengths", "interaction_type"):
            if getattr(self, name).shape != (u, t):
                raise DatasetError(f"{name} shape {getattr(self, name).shape} != {(u, t)}")
        if (self.slate_lengths > self.slate.shape[2]).any():
            raise DatasetError("slate_lengths exceed the slate width")
        if (self.slate_lengths < 0).any():
            raise DatasetError("slate_lengths must be >= 0")

    def category_path(self, item: int) -> str | None:
        """Category path for an item id ("finn/<category>"), if categories are known."""
        if self.category is None or not 0 <= item < self.category.size:
            return None
        return f"finn/{int(self.category[item])}"

    def feedback(self, max_users: int | None = None) -> Iterator[SlateFeedback]:
        """Time-ordered `SlateFeedback` records per user (history = earlier clicks)."""
        n_users = self.click.shape[0] if max_users is None else min(max_users, self.click.shape[0])
        for u in range(n_users):
            history: list[str] = []
            for t in range(self.click.shape[1]):
                length = int(self.slate_lengths[u, t])
                clicked_item = int(self.click[u, t])
                if length == 0 or clicked_item == 0:
                    continue
                slate = [str(int(i)) for i in self.slate[u, t, :length]]
                pos = int(self.click_idx[u, t])
                clicked = [pos] if clicked_item != NO_CLICK_ITEM and 0 <= pos < length else []
                yield SlateFeedback(str(u), slate, clicked, history=list(history), ts=t)
                if clicked:
                    history.append(slate[pos])


def load_finn_slates(data_path: str | Path, itemattr_path: str | Path | None = None) -> SlateData:
    """Load FINN.no `data.npz` (+ optional `itemattr.npz` with `category`)."""
    need = _FINN_ARRAYS
    for path in (data_path, itemattr_path):
        if path is not None and Path(path).is_file() and not zipfile.is_zipfile(path):
            raise DatasetError(
                f"{path} is not an .npz archive (empty, truncated or another format)"
            )
    try:
        with np.load(Path(data_path), allow_pickle=False) as npz:
            missing = [k for k in need if k not in npz.files]
            if missing:
                raise DatasetError(f"{data_path} lacks arrays {missing}")
            arrays = {k: np.asarray(npz[k]) for k in need}
        category = None
        if itemattr_path is not None:
            with np.load(Path(itemattr_path), allow_pickle=False) as attr:
                if "category" not in attr.files:
                    raise DatasetError(f"{itemattr_path} lacks array 'category'")
                category = np.asarray(attr["category"])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"cannot read FINN.no data: {exc}") from exc
    return SlateData(category=category, **arrays)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """Serialise arrays as an .npz (helper for tests and tools)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()
