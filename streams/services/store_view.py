"""The scorer's read view of a FeatureStore (the reads of `ScorerFeatures`, nothing else)."""

from __future__ import annotations

from collections.abc import Sequence

from features.base import FeatureStore
from streams.services.scorer_service import UserView


class StoreView:
    """Adapts a `features.base.FeatureStore` to the scorer's `ScorerFeatures` protocol."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    async def user_views(self, user_ids: Sequence[str]) -> dict[str, UserView]:
        """Recent items (oldest first) and decayed category affinities per user."""
        read = await self.store.recent_and_affinity(list(user_ids))
        return {u: UserView(u, recent, aff) for u, (recent, aff) in read.items()}

    async def popular(self, n: int) -> list[tuple[str, float]]:
        """The n most popular items now, best first."""
        return await self.store.popular(n)

    async def fresh(self, n: int) -> list[str]:
        """The n newest catalogue items."""
        return await self.store.fresh(n)

    async def categories(self, item_ids: Sequence[str]) -> dict[str, str]:
        """Category path per known item."""
        return await self.store.categories(item_ids)

    async def retired(self, since_ms: int = 0) -> dict[str, int]:
        """Retired items -> when retired (ms), those at `since_ms` or later."""
        return await self.store.retired(since_ms)

    async def restored(self, since_ms: int = 0) -> dict[str, int]:
        """Items brought back -> when (ms), those at `since_ms` or later."""
        return await self.store.restored(since_ms)
