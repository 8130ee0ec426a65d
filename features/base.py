"""The FeatureStore interface, its input events and its read models.

`features/` knows nothing of Kafka or of the event contract: the feature service in
`streams/` converts validated schema events into the small dataclasses below and hands a
batch of them to `FeatureStore.apply_many`. Every update is keyed by `event_id`; a store
applies each id at most once within `dedupe_ttl_s` (the dedupe mark is written atomically
with the update), so at-least-once delivery counts every event exactly once.

Decayed scores are kept in log2 space relative to the epoch, which makes them
order-independent (a replay in another order gives the same numbers up to rounding) and
keeps ranking correct at any "now": ``value(now) = 2 ** (score - now_s / half_life_s)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: raw-count field of an item counting how often it was shown in a slate
IMPRESSIONS = "impressions"
#: hash field of per-user / global counters holding the sum over all interaction types
ALL = "_all"
#: how long a store lists an item as restored (readers poll far more often; a reader that
#: starts reads the whole retired set instead)
RESTORED_KEEP_MS = 3_600_000


class StoreUnavailable(Exception):
    """The backend did not answer; a write may or may not have happened. Retrying is safe
    (updates are idempotent by event_id), and what a stream worker should do."""


@dataclass(frozen=True)
class StoreConfig:
    """How the store aggregates: sequence cap, decay half-lives, dedupe window."""

    sequence_length: int = 50
    popularity_half_life_s: float = 3600.0
    affinity_half_life_s: float = 7 * 86400.0
    dedupe_ttl_s: int = 7 * 86400

    def __post_init__(self) -> None:
        if self.sequence_length < 1:
            raise ValueError("sequence_length must be >= 1")
        if self.popularity_half_life_s <= 0 or self.affinity_half_life_s <= 0:
            raise ValueError("half-lives must be > 0")
        if self.dedupe_ttl_s < 1:
            raise ValueError("dedupe_ttl_s must be >= 1")


class InteractionUpdate(NamedTuple):
    """A user interacted with an item; `weight` is the configured weight of `type`. A named
    tuple (one per event on the hot path: ~3x cheaper to build than a frozen dataclass)."""

    event_id: str
    user_id: str
    item_id: str
    type: str
    ts: int
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class ImpressionUpdate:
    """A slate was shown to a user (counts impressions per item)."""

    event_id: str
    user_id: str
    request_id: str
    slate: tuple[str, ...]
    ts: int


@dataclass(frozen=True, slots=True)
class ItemUpdate:
    """Catalogue metadata of an item (new items are recommendable at once by category)."""

    event_id: str
    item_id: str
    ts: int
    category_path: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    text: str | None = None
    # False retires the item (sold, expired, out of stock): it leaves the popular and fresh
    # lists and the category listings, and is never recommended until a newer version with
    # True brings it back; its metadata stays (past interactions keep their category)
    available: bool = True

    @property
    def category(self) -> str:
        """The category path joined with '/', '' when unknown."""
        return "/".join(self.category_path)


FeatureEvent = InteractionUpdate | ImpressionUpdate | ItemUpdate


@dataclass(frozen=True, slots=True)
class RecentEvent:
    """One entry of a user's recent sequence."""

    item_id: str
    type: str
    ts: int


@dataclass(frozen=True)
class UserFeatures:
    """Everything the store knows of a user (empty for an unknown user)."""

    user_id: str
    recent: list[RecentEvent] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    affinity: dict[str, float] = field(default_factory=dict)

    @property
    def recent_items(self) -> list[str]:
        """Item ids of the recent sequence in event-time order (newest last)."""
        return [e.item_id for e in self.recent]

    @property
    def total(self) -> int:
        """Number of interactions of the user (all types)."""
        return self.counts.get(ALL, 0)


@dataclass(frozen=True)
class ItemFeatures:
    """Metadata and counters of an item (`known` is False when no item event was seen)."""

    item_id: str
    known: bool = False
    category_path: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    added_ts: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    popularity: float = 0.0
    available: bool = True

    @property
    def category(self) -> str:
        """The category path joined with '/'."""
        return "/".join(self.category_path)


@dataclass
class ApplyResult:
    """What one `apply_many` did: events applied and skipped as duplicates, by kind."""

    applied: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)

    @property
    def n_applied(self) -> int:
        """Events applied in total."""
        return sum(self.applied.values())

    @property
    def n_duplicates(self) -> int:
        """Events skipped in total."""
        return sum(self.duplicates.values())


def kind_of(event: FeatureEvent) -> str:
    """`interaction`, `impression` or `item`."""
    if isinstance(event, InteractionUpdate):
        return "interaction"
    if isinstance(event, ImpressionUpdate):
        return "impression"
    return "item"


def log2_add(a: float | None, b: float) -> float:
    """log2(2**a + 2**b) without overflow (a None = empty sum)."""
    if a is None or a == -math.inf:
        return b
    if a >= b:
        return a + math.log2(1.0 + 2.0 ** (b - a))
    return b + math.log2(1.0 + 2.0 ** (a - b))


def decayed_log2(weight: float, ts_ms: int, half_life_s: float) -> float:
    """log2 of one event's contribution referenced to the epoch: log2(w) + t / half-life."""
    return math.log2(weight) + ts_ms / 1000.0 / half_life_s


def value_now(score: float, now_ms: float, half_life_s: float) -> float:
    """A log2 epoch-referenced score as a decayed value at `now_ms`."""
    exp = score - now_ms / 1000.0 / half_life_s
    return 0.0 if exp < -1000 else 2.0**exp


def category_prefixes(path: Sequence[str]) -> list[str]:
    """['a', 'b', 'c'] → ['a', 'a/b', 'a/b/c'] (an item belongs to every prefix)."""
    return ["/".join(path[: i + 1]) for i in range(len(path))]


class FeatureStore(ABC):
    """Online features of users and items; async, batched, idempotent by event_id.

    Writers call `apply_many` (one round trip per batch on Redis); it returns only once
    the batch is durable in the backend. Readers use the query methods.
    """

    config: StoreConfig

    def configure(self, config: StoreConfig) -> None:
        """Set how updates aggregate (the writer's settings; readers keep the defaults)."""
        self.config = config

    # --- writes ---------------------------------------------------------------------------
    @abstractmethod
    async def apply_many(self, events: Sequence[FeatureEvent]) -> ApplyResult:
        """Apply a batch in order, skipping event_ids already applied; durable on return."""

    async def update(self, event: FeatureEvent) -> bool:
        """Apply one event; False if its event_id was already applied."""
        return (await self.apply_many([event])).n_applied == 1

    # --- user reads -----------------------------------------------------------------------
    @abstractmethod
    async def get_many(self, user_ids: Sequence[str]) -> dict[str, UserFeatures]:
        """Features of each user (an empty UserFeatures for unknown users)."""

    async def get(self, user_id: str) -> UserFeatures:
        """Features of one user."""
        return (await self.get_many([user_id]))[user_id]

    async def recent_and_affinity(
        self, user_ids: Sequence[str]
    ) -> dict[str, tuple[list[str], dict[str, float]]]:
        """Recent item ids (oldest first) and decayed category affinities of each user: the
        scorer's read, per request batch. Derived from `get_many` here; a store may override
        it with a lighter read (no counts, no event types or timestamps parsed)."""
        feats = await self.get_many(user_ids)
        return {u: (f.recent_items, dict(f.affinity)) for u, f in feats.items()}

    # --- item reads -----------------------------------------------------------------------
    @abstractmethod
    async def items_many(self, item_ids: Sequence[str]) -> dict[str, ItemFeatures]:
        """Metadata, raw counts and decayed popularity of each item."""

    async def item(self, item_id: str) -> ItemFeatures:
        """Features of one item."""
        return (await self.items_many([item_id]))[item_id]

    @abstractmethod
    async def categories(self, item_ids: Sequence[str]) -> dict[str, str]:
        """Category path ('a/b') of each catalogue item among `item_ids` (unknown ones left out)."""

    @abstractmethod
    async def popular(self, n: int, now_ms: float | None = None) -> list[tuple[str, float]]:
        """The n most popular items now (weighted, time-decayed), best first; retired items
        are left out (their interactions while retired add no popularity)."""

    @abstractmethod
    async def fresh(self, n: int) -> list[str]:
        """The n newest catalogue items (by first item-event time), newest first, not retired."""

    @abstractmethod
    async def retired(self, since_ms: int = 0) -> dict[str, int]:
        """Items retired now (`available` false in their latest version) -> when the store
        retired them (epoch ms, the store's clock), those retired at `since_ms` or later: a
        reader polls the new ones (and `restored` for those brought back)."""

    @abstractmethod
    async def restored(self, since_ms: int = 0) -> dict[str, int]:
        """Items brought back (a version with `available` true after a retirement) and not
        retired again -> when (epoch ms, the store's clock), those at `since_ms` or later; a
        store keeps at least the last RESTORED_KEEP_MS of them (older ones may be dropped)."""

    @abstractmethod
    async def items(self, category: str | None = None) -> list[str]:
        """Every catalogue item, or those under a category path prefix ('a' or 'a/b'), sorted;
        retired items are left out."""

    @abstractmethod
    async def category_list(self) -> list[str]:
        """Every category path prefix with at least one item, sorted."""

    @abstractmethod
    async def global_counts(self) -> dict[str, int]:
        """Counters over everything: per interaction type, `_all`, impressions, items, users."""

    # --- lifecycle ------------------------------------------------------------------------
    @abstractmethod
    async def is_empty(self) -> bool:
        """True when nothing was ever applied (what `features rebuild` requires)."""

    @abstractmethod
    async def clear(self) -> None:
        """Delete every feature and dedupe mark of this store (its namespace only)."""

    async def durability_warnings(self) -> list[str]:
        """What in the backend's configuration can lose applied updates or count an event
        twice (eviction, no persistence); empty when nothing is known to."""
        return []

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""
