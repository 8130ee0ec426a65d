"""Metrics of the trainer (`slatestream_trainer_…`): feedback in, gradient steps, snapshots.

Besides the common role metrics (see `streams.metrics.common`) it measures:

- `train_events_total`: events the model learned from;
- `train_steps_total` and `train_step_seconds`: gradient/update steps and their latency;
- `loss`: the last training loss (gauge), `loss_observed` histogram of losses over time;
- `model_version`: version number of the newest snapshot written;
- `snapshot_timestamp_seconds` / `snapshot_age_seconds`: when the newest snapshot was
  written, and how long ago that is (computed at scrape time);
- `snapshots_total` and `snapshot_seconds`: snapshots written and how long each took;
- `snapshot_failures_total`: snapshots that could not be written (training goes on; retried
  after the snapshot interval);
- `freshness_seconds`: feedback event time to the model having learned it (model updated).

`instrument(handler)` records feedback freshness from the records and, after each batch,
reads the handler's `service.stats` (interactions, feedback, last_loss, steps, snapshots,
last_version and the step and snapshot durations — `streams.services.trainer_service.
TrainerStats`) into the counters, gauges and histograms. A trainer without such stats calls
instead::

    from streams.metrics import TRAINER
    with TRAINER.train_step_seconds.time():
        loss = model.learn(batch)
    TRAINER.observe_step(loss, n_events=len(batch), event_ts_ms=[fb.ts for fb in batch])
    TRAINER.observe_snapshot(version=12)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

from prometheus_client import REGISTRY, CollectorRegistry

from streams.metrics.common import FRESHNESS_BUCKETS, LATENCY_BUCKETS, RoleMetrics, num, parse
from streams.runtime import Emit, Record

LOSS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0)


def version_number(version: str | int) -> float:
    """`"v12"` / `"12"` / 12 -> 12.0; anything else -> NaN (gauges need numbers)."""
    if isinstance(version, int):
        return float(version)
    digits = str(version).lstrip("vV")
    return float(digits) if digits.isdigit() else math.nan


class TrainerMetrics(RoleMetrics):
    """The trainer's metrics."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        super().__init__("trainer", registry)
        self.train_events = self.counter("train_events", "Events the model learned from")
        self.train_steps = self.counter("train_steps", "Training (gradient/update) steps")
        self.train_step_seconds = self.histogram(
            "train_step_seconds", "Latency of one training step", buckets=LATENCY_BUCKETS
        )
        self.loss = self.gauge("loss", "Training loss of the last step")
        self.loss_observed = self.histogram(
            "loss_observed", "Training losses of steps", buckets=LOSS_BUCKETS
        )
        self.model_version = self.gauge("model_version", "Version of the newest snapshot written")
        self.snapshot_timestamp = self.gauge(
            "snapshot_timestamp_seconds", "Unix time the newest snapshot was written"
        )
        self.snapshot_age = self.gauge(
            "snapshot_age_seconds", "Seconds since the newest snapshot was written"
        )
        self.snapshot_age.set_function(self._snapshot_age)
        self.snapshots = self.counter("snapshots", "Snapshots written")
        self.snapshot_failures = self.counter(
            "snapshot_failures", "Snapshots that could not be written"
        )
        self._seen_snapshot_failures = 0
        self.snapshot_seconds = self.histogram(
            "snapshot_seconds", "Time to write one snapshot", buckets=LATENCY_BUCKETS
        )
        self.freshness = self.histogram(
            "freshness_seconds",
            "Feedback event time to the model having learned it",
            buckets=FRESHNESS_BUCKETS,
        )
        self._last_snapshot = math.nan
        self._seen_events = 0
        self._seen_snapshots = 0
        self._seen_steps = 0
        self._last_loss = math.nan

    def _snapshot_age(self) -> float:
        return time.time() - self._last_snapshot if not math.isnan(self._last_snapshot) else -1.0

    def observe_step(
        self,
        loss: float | None,
        n_events: int,
        event_ts_ms: Iterable[int] = (),
        now: float | None = None,
    ) -> None:
        """Record one training step: loss, events learned, and each event's freshness."""
        now = time.time() if now is None else now
        self.train_steps.inc()
        self.train_events.inc(n_events)
        if loss is not None and math.isfinite(loss):
            self.loss.set(loss)
            self.loss_observed.observe(loss)
        for ts in event_ts_ms:
            self.freshness.observe(max(0.0, now - ts / 1000.0))

    def observe_snapshot(
        self, version: str | int, seconds: float | None = None, at: float | None = None
    ) -> None:
        """Record a snapshot written: its version, when, and how long writing took."""
        self._last_snapshot = time.time() if at is None else at
        self.snapshot_timestamp.set(self._last_snapshot)
        self.model_version.set(version_number(version))
        self.snapshots.inc()
        if seconds is not None:
            self.snapshot_seconds.observe(seconds)

    def derive(
        self, handler: object, records: Sequence[Record], emits: Sequence[Emit], now: float
    ) -> None:
        """Feedback freshness from the records; loss, events, snapshots from `service.stats`."""
        for r in records:
            if r.topic.endswith(".feedback"):
                ts = num(parse(r.value), "ts")
                if ts is not None:
                    self.freshness.observe(max(0.0, now - ts / 1000.0))
        service = getattr(handler, "service", None)
        stats = getattr(service, "stats", None)
        if stats is None:
            return
        learned = int(getattr(stats, "interactions", 0)) + int(getattr(stats, "feedback", 0))
        if learned > self._seen_events:
            self.train_events.inc(learned - self._seen_events)
        self._seen_events = max(self._seen_events, learned)
        loss = getattr(stats, "last_loss", None)
        if isinstance(loss, float) and math.isfinite(loss) and loss != self._last_loss:
            self._last_loss = loss
            self.loss.set(loss)
            self.loss_observed.observe(loss)
        steps = int(getattr(stats, "steps", 0))
        if steps > self._seen_steps:
            self.train_steps.inc(steps - self._seen_steps)
            self._seen_steps = steps
        take = getattr(stats, "take_timings", None)
        step_s, snap_s = take() if callable(take) else ((), ())
        for s in step_s:
            self.train_step_seconds.observe(s)
        for s in snap_s:
            self.snapshot_seconds.observe(s)
        failures = int(getattr(stats, "snapshot_failures", 0))
        if failures > self._seen_snapshot_failures:
            self.snapshot_failures.inc(failures - self._seen_snapshot_failures)
            self._seen_snapshot_failures = failures
        snaps = int(getattr(stats, "snapshots", 0))
        version = getattr(stats, "last_version", None)
        if snaps > self._seen_snapshots and version is not None:
            self._seen_snapshots = snaps
            self.observe_snapshot(version, at=_created_at(service, version) or now)


def _created_at(service: object, version: object) -> float | None:
    """created_at of a snapshot from the service's registry metadata, when it has one."""
    registry = getattr(service, "registry", None)
    read_meta = getattr(registry, "read_meta", None)
    if read_meta is None or not isinstance(version, int):
        return None
    try:
        created = read_meta(version).get("created_at")
    except Exception:
        return None
    return float(created) if isinstance(created, int | float) else None


TRAINER = TrainerMetrics()
