"""Online feature store: interface (`features.base`), memory and Redis backends, by URL.

`open_store("memory://")` or `open_store("redis://host:port/0?namespace=ss")`; the
`namespace` query parameter prefixes every key so several stores can share one database.
"""

from __future__ import annotations

from urllib.parse import urlparse

from features.base import (
    ALL,
    IMPRESSIONS,
    ApplyResult,
    FeatureEvent,
    FeatureStore,
    ImpressionUpdate,
    InteractionUpdate,
    ItemFeatures,
    ItemUpdate,
    RecentEvent,
    StoreConfig,
    StoreUnavailable,
    UserFeatures,
)
from features.join import JoinState, MemoryJoinState, join_state_for, open_join_state


class StoreURLError(ValueError):
    """The feature-store URL has an unknown scheme."""


def open_store(url: str, config: StoreConfig | None = None) -> FeatureStore:
    """A FeatureStore for `memory://` or `redis://…` / `rediss://…` / `unix://…`."""
    scheme = urlparse(url).scheme
    if scheme == "memory":
        from features.memory import MemoryFeatureStore

        return MemoryFeatureStore(config)
    if scheme in ("redis", "rediss", "unix"):
        from features.redis_store import RedisFeatureStore

        return RedisFeatureStore(url, config)
    raise StoreURLError(f"unknown feature store URL {url!r} (memory:// or redis://host:port/db)")


__all__ = [
    "ALL",
    "IMPRESSIONS",
    "ApplyResult",
    "FeatureEvent",
    "FeatureStore",
    "ImpressionUpdate",
    "InteractionUpdate",
    "ItemFeatures",
    "ItemUpdate",
    "JoinState",
    "MemoryJoinState",
    "RecentEvent",
    "StoreConfig",
    "StoreURLError",
    "StoreUnavailable",
    "UserFeatures",
    "join_state_for",
    "open_join_state",
    "open_store",
]
