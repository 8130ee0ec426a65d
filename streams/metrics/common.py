"""Metrics every worker role shares, and a Handler wrapper that records them automatically.

Each role module (`features`, `joiner`, `trainer`, `scorer`) builds one `RoleMetrics`
subclass under the namespace `slatestream_<role>_`. The common part measures:

- `events_in_total{topic}` / `events_out_total{topic}`: records consumed / emitted;
- `batch_seconds`: time `handle()` took for one batch (processing latency);
- `batch_size`: records per batch;
- `event_age_seconds`: record timestamp (Kafka append time) to processed (end-to-end lag in
  time, the per-event view of consumer lag);
- `dlq_total{reason}`: records sent to the dead-letter topic, by reason;
- `consumer_lag{topic,partition}`: committed offset vs end offset (set by
  `streams.metrics.server.LagMonitor`);
- `errors_total{kind}`: batches that raised, by exception class.

`instrument(handler)` wraps any `streams.runtime.Handler` so that all of the above (except
lag) is recorded without the handler knowing; role-specific metrics are recorded by the
handlers themselves through the role objects (`FEATURES`, `JOINER`, `TRAINER`, `SCORER`).
"""

from __future__ import annotations

import json
import time
from collections import Counter as _Tally
from collections.abc import Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from streams.runtime import Emit, Handler, Record

NAMESPACE = "slatestream"

#: seconds; from 0.25 ms (a Redis pipeline on loopback) to 10 s (a stalled batch)
LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: seconds; freshness and ages span ms (in-process) to an hour (a stuck pipeline)
FRESHNESS_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class RoleMetrics:
    """The metrics one worker role exposes; subclasses add role-specific objects."""

    def __init__(self, role: str, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.role = role
        self.registry = registry
        self.events_in = self.counter("events_in", "Records consumed, by source topic", ["topic"])
        self.events_out = self.counter("events_out", "Records emitted, by topic", ["topic"])
        self.batch_seconds = self.histogram(
            "batch_seconds", "Processing time of one batch (handle())", buckets=LATENCY_BUCKETS
        )
        self.batch_size = self.histogram(
            "batch_size", "Records per processed batch", buckets=BATCH_SIZE_BUCKETS
        )
        self.event_age = self.histogram(
            "event_age_seconds",
            "Record timestamp (broker append time) to processed",
            buckets=FRESHNESS_BUCKETS,
        )
        self.dlq = self.counter(
            "dlq", "Records sent to the dead-letter topic, by reason", ["reason"]
        )
        self.consumer_lag = self.gauge(
            "consumer_lag",
            "Records behind: end offset minus committed offset of the group",
            ["topic", "partition"],
        )
        self.errors = self.counter("errors", "Batches whose handler raised, by kind", ["kind"])

    # --- constructors under this role's namespace ----------------------------------------------
    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        """A Counter `slatestream_<role>_<name>_total`."""
        return Counter(
            name,
            doc,
            list(labels),
            namespace=NAMESPACE,
            subsystem=self.role,
            registry=self.registry,
        )

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        """A Gauge `slatestream_<role>_<name>`."""
        return Gauge(
            name,
            doc,
            list(labels),
            namespace=NAMESPACE,
            subsystem=self.role,
            registry=self.registry,
        )

    def histogram(
        self,
        name: str,
        doc: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        """A Histogram `slatestream_<role>_<name>` (+ _bucket/_sum/_count)."""
        return Histogram(
            name,
            doc,
            list(labels),
            namespace=NAMESPACE,
            subsystem=self.role,
            registry=self.registry,
            buckets=tuple(buckets),
        )

    # --- helpers handlers call ---------------------------------------------------------------
    def observe_batch(
        self,
        records: Sequence[Record],
        emits: Sequence[Emit],
        seconds: float,
        dlq_topic_suffix: str = ".dlq",
        now: float | None = None,
    ) -> None:
        """Record one processed batch: counts per topic, latency, event ages, DLQ reasons."""
        now = time.time() if now is None else now
        for topic, n in _Tally(r.topic for r in records).items():
            self.events_in.labels(topic=topic).inc(n)
        for topic, n in _Tally(e.topic for e in emits).items():
            self.events_out.labels(topic=topic).inc(n)
        self.batch_seconds.observe(seconds)
        self.batch_size.observe(len(records))
        for r in records:
            if r.timestamp_ms > 0:
                self.event_age.observe(max(0.0, now - r.timestamp_ms / 1000.0))
        for e in emits:
            if e.topic.endswith(dlq_topic_suffix):
                self.dlq.labels(reason=dead_letter_reason(e.value)).inc()

    def sample_names(self) -> set[str]:
        """Every sample name this role exposes (`…_total`, `…_bucket`, …), for config checks."""
        names: set[str] = set()
        for value in vars(self).values():
            base = getattr(value, "_name", None)
            if isinstance(value, Counter):
                names |= {f"{base}_total", f"{base}_created"}
            elif isinstance(value, Histogram):
                names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"}
            elif isinstance(value, Gauge):
                names.add(str(base))
        return names


def dead_letter_reason(value: bytes) -> str:
    """The `reason` of a dead-letter record, or `unknown` (bounded label values)."""
    try:
        reason = json.loads(value).get("reason", "unknown")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return "unknown"
    return str(reason)[:64] if reason else "unknown"


class InstrumentedHandler:
    """Wraps a Handler: same name/topics/behaviour, plus the common role metrics per batch."""

    def __init__(self, inner: Handler, metrics: RoleMetrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.name = inner.name
        self.topics = inner.topics

    async def handle(self, records: Sequence[Record]) -> list[Emit]:
        """Run the inner handler, timing it and counting what went in and out."""
        t0 = time.perf_counter()
        try:
            emits = await self.inner.handle(records)
        except Exception as exc:
            self.metrics.errors.labels(kind=type(exc).__name__).inc()
            raise
        self.metrics.observe_batch(records, emits, time.perf_counter() - t0)
        return emits

    def __getattr__(self, item: str) -> object:
        # anything else (service, counters, close()) is the inner handler's
        return getattr(self.inner, item)
