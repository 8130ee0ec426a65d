"""Ingest handlers (streams.runtime.Handler): the feature worker and the joiner.

Thin shells over the pure services: they run a batch through the service, record the
role's Prometheus metrics (`streams.metrics.features` / `.joiner`) and return what to
publish (dead letters, feedback). Both return only after their store writes executed,
so the driver's offset commit follows durable state.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from features import FeatureStore, JoinState, join_state_for
from streams.config import Settings
from streams.metrics.features import FEATURES
from streams.metrics.joiner import JOINER
from streams.runtime import Emit, Record
from streams.services.feature_service import FeatureService, open_feature_store
from streams.services.joiner_service import JoinerConfig, JoinerService


class FeatureHandler:
    """Consumes interactions, impressions and items; updates the feature store; DLQs bad input."""

    name = "features"
    # the Faust driver may hand this handler whole fetches (streams.app.BatchLane), and the
    # next fetch while this one's store write runs (FeatureService orders the writes)
    direct_batches = True
    overlap_batches = True

    def __init__(self, settings: Settings, store: FeatureStore | None = None) -> None:
        self.settings = settings
        self.store = store if store is not None else open_feature_store(settings)
        self.service = FeatureService(settings, self.store, worker=self.name)
        self.topics = self.service.topics

    @property
    def stats(self) -> object:
        """Running totals of the service (records, applied, duplicates, dead, batches)."""
        return self.service.stats

    async def handle(self, records: Sequence[Record]) -> list[Emit]:
        """Validate and apply one batch; return its dead-letter records."""
        batch = await self.service.process(records)
        m = FEATURES
        if batch.applied or batch.duplicates:
            m.store_op_seconds.labels(op="apply_many").observe(batch.store_seconds)
            m.store_ops.labels(op="apply_many").inc()
        for kind, n in batch.applied.items():
            m.updates.labels(kind=kind).inc(n)
        for kind, n in batch.duplicates.items():
            m.duplicates.labels(kind=kind).inc(n)
        if batch.event_ts:
            now = time.time()
            # freshness of the newest and oldest event of the batch (bounded cost per batch)
            m.observe_freshness(max(batch.event_ts), now)
            m.observe_freshness(min(batch.event_ts), now)
        return batch.emits

    async def close(self) -> None:
        """Close the store's connections."""
        await self.store.close()


def _late(reason: str, n: int) -> None:
    JOINER.late_feedback.labels(reason=reason).inc(n)


class JoinerHandler:
    """Consumes impressions and interactions; emits Feedback (on time and late)."""

    name = "joiner"
    # whole fetches too: with the feature worker in one process, both share the topics'
    # chunks (streams.app.BatchLane); otherwise it would send both back to take_events
    direct_batches = True

    def __init__(
        self,
        settings: Settings,
        store: FeatureStore | None = None,
        state: JoinState | None = None,
        config: JoinerConfig | None = None,
    ) -> None:
        self.settings = settings
        if state is None:
            state = join_state_for(store if store is not None else open_feature_store(settings))
        self.service = JoinerService(
            settings,
            state,
            config,
            worker=self.name,
            on_click=JOINER.observe_click,
            on_impression=lambda policy: JOINER.impressions.labels(
                policy=policy or "external"
            ).inc(),
            on_feedback=lambda policy: JOINER.feedback.labels(policy=policy or "external").inc(),
            on_late=_late,
        )
        self.topics = self.service.topics

    @property
    def stats(self) -> object:
        """Running totals of the service (impressions, clicks, feedback, late, ...)."""
        return self.service.stats

    async def handle(self, records: Sequence[Record]) -> list[Emit]:
        """Join one batch; return the feedback records that closed or came late."""
        emits = await self.service.process(records)
        JOINER.open_impressions.set(self.service.open_impressions())
        return emits

    async def on_partitions_revoked(self, tps: set[tuple[str, int]]) -> None:
        """Forget the state of revoked partitions (wired by streams.app.bind_handler)."""
        await self.service.forget({p for t, p in tps if t in self.topics})

    async def tick(self) -> list[Emit]:
        """Close impressions of idle partitions (driven by the app's timer)."""
        emits = await self.service.tick()
        JOINER.open_impressions.set(self.service.open_impressions())
        return emits
