"""Metrics of the feature worker (`slatestream_features_…`).

Besides the common role metrics (events in/out per topic, batch latency, event age, DLQ by
reason, consumer lag, errors — see `streams.metrics.common`) it measures:

- `store_op_seconds{op}`: latency of one feature-store operation (get, get_many, update, …);
- `store_ops_total{op}`: store operations, by op;
- `freshness_seconds`: event time (`ts` of the interaction/impression/item) to the moment its
  features were durably updated — "how old is what the scorer can see" (the handler
  observes the oldest and newest event of each batch);
- `updates_total{kind}`: events applied to the store, by kind (interaction, impression, item);
- `duplicates_total{kind}`: events skipped because their event_id was already applied.

Call from a handler::

    from streams.metrics import FEATURES
    with FEATURES.store_op("update"):
        await store.update(events)
    FEATURES.observe_freshness(event.ts)
    FEATURES.updates.labels(kind="interaction").inc()
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, CollectorRegistry

from streams.metrics.common import FRESHNESS_BUCKETS, LATENCY_BUCKETS, RoleMetrics


class FeaturesMetrics(RoleMetrics):
    """The feature worker's metrics."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        super().__init__("features", registry)
        self.store_op_seconds = self.histogram(
            "store_op_seconds", "Latency of one feature-store operation", ["op"], LATENCY_BUCKETS
        )
        self.store_ops = self.counter("store_ops", "Feature-store operations, by op", ["op"])
        self.freshness = self.histogram(
            "freshness_seconds",
            "Event time to features updated in the store",
            buckets=FRESHNESS_BUCKETS,
        )
        self.updates = self.counter("updates", "Events applied to the store, by kind", ["kind"])
        self.duplicates = self.counter(
            "duplicates", "Events skipped as already applied (idempotency), by kind", ["kind"]
        )

    @contextmanager
    def store_op(self, op: str) -> Iterator[None]:
        """Time one store operation (`with FEATURES.store_op("get_many"): ...`)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.store_op_seconds.labels(op=op).observe(time.perf_counter() - t0)
            self.store_ops.labels(op=op).inc()

    def observe_freshness(self, event_ts_ms: int, now: float | None = None) -> None:
        """Record event time → features updated for one event (`ts` in epoch ms)."""
        now = time.time() if now is None else now
        self.freshness.observe(max(0.0, now - event_ts_ms / 1000.0))


FEATURES = FeaturesMetrics()
