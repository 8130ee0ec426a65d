"""Item id -> table row map with on-the-fly admission, LRU eviction and category groups.

Item ids are strings in the event contract; models keep dense tables indexed by row.
Row 0 is reserved for padding. Category paths ("movies/comedy") map to hierarchical
group ids (one per path prefix: "movies", "movies/comedy") used by the group prior.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any

import numpy as np

PAD = 0


class CategoryVocab:
    """Category-path vocabulary: each path prefix gets a group id (0 = padding)."""

    def __init__(self, max_depth: int = 4, sep: str = "/") -> None:
        if max_depth < 1:
            raise ValueError("max_depth must be >= 1")
        self.max_depth = max_depth
        self.sep = sep
        self._ids: dict[str, int] = {}
        self._names: list[str] = [""]

    def __len__(self) -> int:
        return len(self._names)

    def prefixes(self, path: str) -> list[str]:
        """Normalised path prefixes, most general first, at most `max_depth`."""
        parts = [p.strip() for p in path.strip().strip(self.sep).split(self.sep) if p.strip()]
        parts = parts[: self.max_depth]
        return [self.sep.join(parts[: i + 1]) for i in range(len(parts))]

    def path_ids(self, path: str | None, admit: bool = True) -> list[int]:
        """Group ids of every prefix of `path` (unknown prefixes admitted unless admit=False)."""
        if not path:
            return []
        out: list[int] = []
        for prefix in self.prefixes(path):
            gid = self._ids.get(prefix)
            if gid is None:
                if not admit:
                    continue
                gid = len(self._names)
                self._ids[prefix] = gid
                self._names.append(prefix)
            out.append(gid)
        return out

    def name(self, gid: int) -> str:
        """The path prefix of group `gid`."""
        return self._names[gid]

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {"max_depth": self.max_depth, "sep": self.sep, "names": self._names[1:]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CategoryVocab:
        """Inverse of `to_json`."""
        vocab = cls(max_depth=int(data["max_depth"]), sep=str(data["sep"]))
        for name in data["names"]:
            vocab._ids[name] = len(vocab._names)
            vocab._names.append(name)
        return vocab


class ItemIndex:
    """Maps item ids to rows; admits new ids at once and evicts least-recently-used ones.

    With ``max_items`` set, admitting past the limit evicts the least recently touched
    item and reuses its row (models reset that row). ``version`` changes on every
    mutation so callers can cache derived matrices.
    """

    def __init__(self, max_items: int | None = None, max_depth: int = 4) -> None:
        if max_items is not None and max_items < 1:
            raise ValueError("max_items must be >= 1 or None")
        self.max_items = max_items
        self.categories = CategoryVocab(max_depth=max_depth)
        self._row: dict[str, int] = {}
        self._ids: list[str | None] = [None]
        self._cats: list[str | None] = [None]
        self._groups = np.zeros((16, max_depth), dtype=np.int64)
        self._free: list[int] = []
        self._lru: OrderedDict[str, None] = OrderedDict()
        self.version = 0
        self.evicted_rows: list[int] = []

    # --- sizes -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row

    @property
    def n_rows(self) -> int:
        """High-water mark of rows in use (including padding row 0)."""
        return len(self._ids)

    # --- admission / lookup --------------------------------------------------------
    def admit(self, item_id: str, category: str | None = None) -> int:
        """Row of `item_id`, admitting it (and its category path) if new."""
        row = self._row.get(item_id)
        if row is not None:
            if category and self._cats[row] != category:
                self._set_category(row, category)
                self.version += 1
            if self.max_items is not None:
                self._lru.move_to_end(item_id)
            return row
        if self.max_items is not None and len(self._row) >= self.max_items:
            self._evict_lru()
        if self._free:
            row = self._free.pop()
            self._ids[row] = item_id
            self._cats[row] = None
        else:
            row = len(self._ids)
            self._ids.append(item_id)
            self._cats.append(None)
            if row >= self._groups.shape[0]:
                grown = np.zeros((2 * self._groups.shape[0], self._groups.shape[1]), np.int64)
                grown[: self._groups.shape[0]] = self._groups
                self._groups = grown
        self._groups[row] = 0
        self._row[item_id] = row
        if category:
            self._set_category(row, category)
        if self.max_items is not None:
            self._lru[item_id] = None
        self.version += 1
        return row

    def _set_category(self, row: int, category: str) -> None:
        ids = self.categories.path_ids(category)
        self._groups[row] = 0
        self._groups[row, : len(ids)] = ids
        self._cats[row] = category

    def _evict_lru(self) -> None:
        victim, _ = self._lru.popitem(last=False)
        self.evict(victim)

    def evict(self, item_id: str) -> int | None:
        """Remove `item_id`; its row goes to the free list. Returns the freed row."""
        row = self._row.pop(item_id, None)
        if row is None:
            return None
        self._lru.pop(item_id, None)
        self._ids[row] = None
        self._cats[row] = None
        self._groups[row] = 0
        self._free.append(row)
        self.evicted_rows.append(row)
        self.version += 1
        return row

    def touch(self, item_id: str) -> None:
        """Mark `item_id` as recently used (LRU eviction order)."""
        if self.max_items is not None and item_id in self._lru:
            self._lru.move_to_end(item_id)

    def row(self, item_id: str) -> int | None:
        """Row of a known item, else None."""
        return self._row.get(item_id)

    def rows(self, item_ids: Iterable[str], admit: bool = False) -> np.ndarray:
        """Rows of `item_ids` (unknown ids map to PAD=0 unless admit=True)."""
        if admit:
            return np.fromiter((self.admit(i) for i in item_ids), dtype=np.int64)
        return np.fromiter(map(self._row.get, item_ids, repeat(PAD)), dtype=np.int64)

    def known_rows(self, item_ids: Iterable[str]) -> np.ndarray:
        """Rows of the known ids among `item_ids`, unknown ones dropped (order kept)."""
        get = self._row.get
        return np.asarray([r for r in (get(i) for i in item_ids) if r is not None], np.int64)

    def item_id(self, row: int) -> str | None:
        """Item id at `row` (None for padding/free rows)."""
        return self._ids[row] if 0 <= row < len(self._ids) else None

    def ids(self, rows: Sequence[int] | np.ndarray) -> list[str | None]:
        """Item ids of `rows`."""
        ids = self._ids
        return [ids[r] for r in np.asarray(rows, dtype=np.int64).tolist()]

    def category(self, item_id: str) -> str | None:
        """Category path of a known item."""
        row = self._row.get(item_id)
        return None if row is None else self._cats[row]

    def active_rows(self) -> np.ndarray:
        """Rows currently holding an item, ascending."""
        return np.asarray(sorted(self._row.values()), dtype=np.int64)

    def active_mask(self) -> np.ndarray:
        """Boolean mask over rows [0, n_rows): True where the row holds an item."""
        mask = np.zeros(self.n_rows, dtype=bool)
        if self._row:
            mask[np.fromiter(self._row.values(), np.int64)] = True
        return mask

    def group_matrix(self) -> np.ndarray:
        """(n_rows, max_depth) group ids per row (0 = none)."""
        return self._groups[: self.n_rows]

    # --- persistence ------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable state (ids by row, categories, free rows, LRU order)."""
        return {
            "max_items": self.max_items,
            "categories": self.categories.to_json(),
            "ids": self._ids[1:],
            "cats": self._cats[1:],
            "free": list(self._free),
            "lru": list(self._lru.keys()),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ItemIndex:
        """Inverse of `to_json`; rows are preserved exactly."""
        vocab = CategoryVocab.from_json(data["categories"])
        index = cls(max_items=data.get("max_items"), max_depth=vocab.max_depth)
        index.categories = vocab
        ids: list[str | None] = [None, *data["ids"]]
        cats: list[str | None] = [None, *data["cats"]]
        index._ids = ids
        index._cats = cats
        size = max(16, len(ids))
        index._groups = np.zeros((size, vocab.max_depth), dtype=np.int64)
        for row, (item_id, cat) in enumerate(zip(ids, cats, strict=True)):
            if item_id is None:
                continue
            index._row[item_id] = row
            if cat:
                gids = vocab.path_ids(cat, admit=False)
                index._groups[row, : len(gids)] = gids
        index._free = [int(r) for r in data.get("free", [])]
        for item_id in data.get("lru", []):
            index._lru[item_id] = None
        return index
