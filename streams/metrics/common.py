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

import contextlib
import json
import logging
import time
from bisect import bisect_left
from collections import Counter as _Tally
from collections.abc import Awaitable, Callable, Iterable, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from streams.runtime import Emit, Handler, Record

log = logging.getLogger(__name__)

NAMESPACE = "slatestream"

#: seconds; from 0.25 ms (a Redis pipeline on loopback) to 60 s (a stalled batch)
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
    30.0,
    60.0,
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


def observe_many(histogram: Histogram, values: Iterable[float]) -> None:
    """`histogram.observe(v)` for every value, with one increment per bucket touched.

    Same resulting buckets, count and sum as observing one by one (the sum up to float
    rounding), for a few µs per batch instead of ~1 µs per value: the bucket of each value
    is found with `bisect` (the first upper bound >= value, as `Histogram.observe` does).
    Falls back to plain `observe` on a prometheus_client without those internals.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for v in values:
            histogram.observe(v)
        return
    hits: dict[int, int] = {}
    acc = 0.0
    for v in values:
        i = bisect_left(bounds, v)
        hits[i] = hits.get(i, 0) + 1
        acc += v
    if not hits:
        return
    total.inc(acc)
    for i, n in hits.items():
        buckets[i].inc(n)


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
        # one increment per bucket touched: a feature worker batch holds thousands of records
        observe_many(
            self.event_age,
            (max(0.0, now - r.timestamp_ms / 1000.0) for r in records if r.timestamp_ms > 0),
        )
        for e in emits:
            if e.topic.endswith(dlq_topic_suffix):
                self.dlq.labels(reason=dead_letter_reason(e.value)).inc()

    def derive(
        self, handler: object, records: Sequence[Record], emits: Sequence[Emit], now: float
    ) -> None:
        """Role-specific figures read from the public event contract after a batch.

        Subclasses override; `InstrumentedHandler` calls it and never lets it fail a batch.
        """

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


def parse(value: bytes) -> dict[str, object]:
    """A record's JSON object, or {} (metrics read the public contract, leniently)."""
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return {}
    return obj if isinstance(obj, dict) else {}


def num(obj: dict[str, object], key: str) -> float | None:
    """obj[key] as a float when it is a number, else None."""
    v = obj.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def label(obj: dict[str, object], key: str, default: str = "external") -> str:
    """obj[key] as a short label value (bounded length), or `default`."""
    v = obj.get(key)
    return str(v)[:64] if isinstance(v, str) and v else default


def dead_letter_reason(value: bytes) -> str:
    """The `reason` of a dead-letter record, or `unknown` (bounded label values)."""
    try:
        reason = json.loads(value).get("reason", "unknown")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return "unknown"
    return str(reason)[:64] if reason else "unknown"


async def measured(
    handle: Callable[[Sequence[Record]], Awaitable[list[Emit]]],
    handler: object,
    metrics: RoleMetrics,
    records: Sequence[Record],
) -> list[Emit]:
    """Run `handle(records)` and record the batch's common and derived metrics."""
    t0 = time.perf_counter()
    try:
        emits = await handle(records)
    except Exception as exc:
        metrics.errors.labels(kind=type(exc).__name__).inc()
        raise
    metrics.observe_batch(records, emits, time.perf_counter() - t0)
    try:
        metrics.derive(handler, records, emits, time.time())
    except Exception:  # metrics must never fail a batch
        log.debug("deriving %s metrics failed", metrics.role, exc_info=True)
    return emits


def _mark(handler: object) -> None:
    with contextlib.suppress(AttributeError, TypeError):
        handler._slatestream_instrumented = True  # type: ignore[attr-defined]


def is_instrumented(handler: object) -> bool:
    """True when the handler's batches are already measured (never measure twice)."""
    return isinstance(handler, InstrumentedHandler) or bool(
        getattr(handler, "_slatestream_instrumented", False)
    )


class InstrumentedHandler:
    """Wraps a Handler: same name/topics/behaviour, plus the role metrics per batch."""

    def __init__(self, inner: Handler, metrics: RoleMetrics) -> None:
        if is_instrumented(inner):
            raise ValueError(f"handler {inner.name!r} is already instrumented")
        _mark(inner)
        self.inner = inner
        self.metrics = metrics
        self.name = inner.name
        self.topics = inner.topics

    async def handle(self, records: Sequence[Record]) -> list[Emit]:
        """Run the inner handler, timing it and counting what went in and out."""
        return await measured(self.inner.handle, self.inner, self.metrics, records)

    def __getattr__(self, item: str) -> object:
        # anything else (service, counters, tick(), close()) is the inner handler's
        return getattr(self.inner, item)


def instrument_in_place(handler: Handler, metrics: RoleMetrics) -> bool:
    """Measure an already-bound handler by replacing `handle` on the instance.

    For drivers that already hold the handler object (a Faust agent looks `handle` up per
    batch). Returns False, changing nothing, when the handler is already instrumented.
    """
    if is_instrumented(handler):
        return False
    inner_handle = handler.handle

    async def handle(records: Sequence[Record]) -> list[Emit]:
        return await measured(inner_handle, handler, metrics, records)

    handler.handle = handle  # type: ignore[method-assign]
    _mark(handler)
    return True
