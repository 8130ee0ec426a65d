"""In-memory FeatureStore: the embedded mode's store and the unit tests' reference."""

from __future__ import annotations

import heapq
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

from features.base import (
    ALL,
    IMPRESSIONS,
    RESTORED_KEEP_MS,
    ApplyResult,
    FeatureEvent,
    FeatureStore,
    ImpressionUpdate,
    InteractionUpdate,
    ItemFeatures,
    ItemUpdate,
    RecentEvent,
    StoreConfig,
    UserFeatures,
    category_prefixes,
    decayed_log2,
    kind_of,
    log2_add,
    value_now,
)


class _Item:
    __slots__ = ("added_ts", "attributes", "available", "category_path", "text", "updated_ts")

    def __init__(self, u: ItemUpdate, added_ts: int) -> None:
        self.category_path = tuple(u.category_path)
        self.attributes = dict(u.attributes)
        self.text = u.text
        self.available = u.available
        self.added_ts = added_ts
        self.updated_ts = u.ts  # the version held: an older one arriving late does not win


def _insert_by_ts(seq: deque[RecentEvent], entry: RecentEvent) -> None:
    """Put `entry` into a capped list kept in ts order, after entries of the same ts (ties
    keep arrival order); one older than every entry of a full list stays out."""
    if not seq or entry.ts >= seq[-1].ts:
        seq.append(entry)  # the common case: in order
        return
    full = len(seq) == seq.maxlen
    if full and entry.ts < seq[0].ts:
        return  # it would be trimmed at once
    pos = len(seq) - 1
    while pos > 0 and seq[pos - 1].ts > entry.ts:
        pos -= 1
    if full:
        seq.popleft()  # pos >= 1 here: seq[0].ts <= entry.ts
        pos -= 1
    seq.insert(pos, entry)


class MemoryFeatureStore(FeatureStore):
    """Dicts in this process; same semantics as the Redis store (the contract suite checks)."""

    def __init__(self, config: StoreConfig | None = None) -> None:
        self.config = config or StoreConfig()
        self.clock = time.time  # seconds; replaceable in tests (dedupe expiry)
        self._seen: dict[str, float] = {}
        self._seen_expiry: deque[tuple[float, str]] = deque()
        self._seq: dict[str, deque[RecentEvent]] = {}
        self._ucounts: dict[str, dict[str, int]] = defaultdict(dict)
        self._aff: dict[str, dict[str, float]] = defaultdict(dict)
        self._icounts: dict[str, dict[str, int]] = defaultdict(dict)
        self._pop: dict[str, float] = {}
        self._items: dict[str, _Item] = {}
        self._retired: dict[str, int] = {}  # item -> when retired (ms, this store's clock)
        self._restored: dict[str, int] = {}  # item -> when brought back (ms, same clock)
        self._cats: dict[str, set[str]] = defaultdict(set)
        self._global: dict[str, int] = defaultdict(int)

    # --- writes ---------------------------------------------------------------------------
    def _fresh_id(self, event_id: str, now: float) -> bool:
        while self._seen_expiry and self._seen_expiry[0][0] <= now:
            exp, eid = self._seen_expiry.popleft()
            if self._seen.get(eid) == exp:
                del self._seen[eid]
        if event_id in self._seen:
            return False
        exp = now + self.config.dedupe_ttl_s
        self._seen[event_id] = exp
        self._seen_expiry.append((exp, event_id))
        return True

    async def apply_many(self, events: Sequence[FeatureEvent]) -> ApplyResult:
        """Apply in order, skipping already-applied event_ids."""
        res = ApplyResult()
        now = self.clock()
        for ev in events:
            kind = kind_of(ev)
            if not self._fresh_id(ev.event_id, now):
                res.duplicates[kind] = res.duplicates.get(kind, 0) + 1
                continue
            res.applied[kind] = res.applied.get(kind, 0) + 1
            if isinstance(ev, InteractionUpdate):
                self._interaction(ev)
            elif isinstance(ev, ImpressionUpdate):
                for item in ev.slate:
                    c = self._icounts[item]
                    c[IMPRESSIONS] = c.get(IMPRESSIONS, 0) + 1
                self._global[IMPRESSIONS] += 1
            else:
                self._item(ev)
        return res

    def _interaction(self, ev: InteractionUpdate) -> None:
        cfg = self.config
        seq = self._seq.get(ev.user_id)
        if seq is None:
            seq = self._seq[ev.user_id] = deque(maxlen=cfg.sequence_length)
        _insert_by_ts(seq, RecentEvent(ev.item_id, ev.type, ev.ts))
        uc = self._ucounts[ev.user_id]
        uc[ev.type] = uc.get(ev.type, 0) + 1
        uc[ALL] = uc.get(ALL, 0) + 1
        if uc[ALL] == 1:
            self._global["users"] += 1
        ic = self._icounts[ev.item_id]
        ic[ev.type] = ic.get(ev.type, 0) + 1
        ic[ALL] = ic.get(ALL, 0) + 1
        self._global[ev.type] += 1
        self._global[ALL] += 1
        if ev.weight > 0:
            if ev.item_id not in self._retired:
                self._pop[ev.item_id] = log2_add(
                    self._pop.get(ev.item_id),
                    decayed_log2(ev.weight, ev.ts, cfg.popularity_half_life_s),
                )
            meta = self._items.get(ev.item_id)
            if meta is not None and meta.category_path:
                cat = "/".join(meta.category_path)
                aff = self._aff[ev.user_id]
                aff[cat] = log2_add(
                    aff.get(cat), decayed_log2(ev.weight, ev.ts, cfg.affinity_half_life_s)
                )

    def _item(self, ev: ItemUpdate) -> None:
        old = self._items.get(ev.item_id)
        if old is not None and ev.ts < old.updated_ts:  # a stale version: only first-seen moves
            old.added_ts = min(old.added_ts, ev.ts)
            return
        if old is not None and old.available:
            for p in category_prefixes(old.category_path):
                members = self._cats.get(p)
                if members is not None:
                    members.discard(ev.item_id)
                    if not members:
                        del self._cats[p]
        else:
            self._global["items"] += 1
        added = ev.ts if old is None else min(old.added_ts, ev.ts)
        self._items[ev.item_id] = _Item(ev, added)
        now_ms = int(self.clock() * 1000)
        if not ev.available:  # retired: out of the lists and listings, metadata kept
            self._retired.setdefault(ev.item_id, now_ms)
            self._restored.pop(ev.item_id, None)
            self._pop.pop(ev.item_id, None)
            return
        if self._retired.pop(ev.item_id, None) is not None:
            self._restored[ev.item_id] = now_ms
            cutoff = now_ms - RESTORED_KEEP_MS
            self._restored = {i: t for i, t in self._restored.items() if t >= cutoff}
        for p in category_prefixes(ev.category_path):
            self._cats[p].add(ev.item_id)

    # --- reads ----------------------------------------------------------------------------
    async def get_many(self, user_ids: Sequence[str]) -> dict[str, UserFeatures]:
        """Copies of each user's features."""
        now_ms = self.clock() * 1000.0
        hl = self.config.affinity_half_life_s
        out: dict[str, UserFeatures] = {}
        for u in user_ids:
            out[u] = UserFeatures(
                user_id=u,
                recent=list(self._seq.get(u, ())),
                counts=dict(self._ucounts.get(u, {})),
                affinity={c: value_now(s, now_ms, hl) for c, s in self._aff.get(u, {}).items()},
            )
        return out

    async def items_many(self, item_ids: Sequence[str]) -> dict[str, ItemFeatures]:
        """Copies of each item's metadata and counters."""
        now_ms = self.clock() * 1000.0
        out: dict[str, ItemFeatures] = {}
        for i in item_ids:
            meta = self._items.get(i)
            score = self._pop.get(i)
            hl = self.config.popularity_half_life_s
            pop = value_now(score, now_ms, hl) if score is not None else 0.0
            kw: dict[str, Any] = {}
            if meta is not None:
                kw = {
                    "known": True,
                    "category_path": meta.category_path,
                    "attributes": dict(meta.attributes),
                    "text": meta.text,
                    "added_ts": meta.added_ts,
                    "available": meta.available,
                }
            out[i] = ItemFeatures(
                item_id=i, counts=dict(self._icounts.get(i, {})), popularity=pop, **kw
            )
        return out

    async def categories(self, item_ids: Sequence[str]) -> dict[str, str]:
        """Category of each known item."""
        out: dict[str, str] = {}
        for i in item_ids:
            meta = self._items.get(i)
            if meta is not None:
                out[i] = "/".join(meta.category_path)
        return out

    async def popular(self, n: int, now_ms: float | None = None) -> list[tuple[str, float]]:
        """Top n by decayed weighted popularity (ties: larger item id first, like Redis)."""
        now = self.clock() * 1000.0 if now_ms is None else now_ms
        hl = self.config.popularity_half_life_s
        top = heapq.nlargest(max(n, 0), self._pop.items(), key=lambda kv: (kv[1], kv[0]))
        return [(i, value_now(s, now, hl)) for i, s in top]

    async def fresh(self, n: int) -> list[str]:
        """Newest catalogue items first (ties: larger item id first, like Redis)."""
        live = ((i, m) for i, m in self._items.items() if m.available)
        top = heapq.nlargest(max(n, 0), live, key=lambda kv: (kv[1].added_ts, kv[0]))
        return [i for i, _ in top]

    async def retired(self, since_ms: int = 0) -> dict[str, int]:
        """Retired items -> when retired, those at `since_ms` or later."""
        return {i: t for i, t in self._retired.items() if t >= since_ms}

    async def restored(self, since_ms: int = 0) -> dict[str, int]:
        """Items brought back -> when, those at `since_ms` or later."""
        return {i: t for i, t in self._restored.items() if t >= since_ms}

    async def items(self, category: str | None = None) -> list[str]:
        """Catalogue items, optionally under a category prefix."""
        if category is None:
            return sorted(i for i, m in self._items.items() if m.available)
        return sorted(self._cats.get(category.strip("/"), ()))

    async def category_list(self) -> list[str]:
        """Category prefixes in use."""
        return sorted(self._cats)

    async def global_counts(self) -> dict[str, int]:
        """Global counters."""
        return {k: v for k, v in self._global.items() if v}

    async def is_empty(self) -> bool:
        """Nothing applied yet."""
        return not self._seen and not self._items and not self._ucounts and not self._global

    async def clear(self) -> None:
        """Forget everything (keeps config and clock)."""
        clock = self.clock
        self.__init__(self.config)  # type: ignore[misc]
        self.clock = clock
