"""Metrics of the scorer (`slatestream_scorer_…`): requests in, slates out, model hot-reloads.

Besides the common role metrics (see `streams.metrics.common`) it measures:

- `request_seconds`: scoring latency of one request (what `latency_ms` reports);
- `request_age_seconds`: request event time to recommendation published (end to end);
- `recommendations_total{policy}`: slates served, by policy (A/B arm);
- `slate_items_total{policy}` / `explored_items_total{policy}`: slate positions served and
  those that differ from the greedy (posterior-mean) ranking — exploration share is their
  ratio;
- `clicks_total{policy}` / `feedback_total{policy}`: feedback records the scorer learned from
  and their clicks — CTR by policy is `clicks / feedback` (or / recommendations);
- `shadow_ctr{policy}`: IPS estimate of clicks per slate for shadow policies;
- `request_errors_total{reason}`: requests answered with an error;
- `store_op_seconds{op}`: latency of the feature reads of a batch;
- `model_version`, `snapshot_timestamp_seconds`, `snapshot_age_seconds`: the loaded model;
- `reloads_total` and `snapshot_load_seconds`: hot reloads, and freshness "snapshot written
  → loaded by the scorer".

`instrument(handler)` derives from the contract, per batch: request latency (`latency_ms`),
request age (request `ts` → `served_at`), recommendations / slate items / errors by policy
from the recommendations emitted, feedback and clicks by policy from the feedback
consumed, and reloads / model version / snapshot → loaded from `service.model_version` and
the registry's `created_at`; shadow CTRs from `service.shadow_stats`. The scorer itself
only adds what it alone knows, the exploration::

    from streams.metrics import SCORER
    SCORER.explored_items.labels(policy=arm).inc(n_positions_not_greedy)

Without `instrument()`, `observe_served`, `observe_feedback`, `observe_reload` do it all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from prometheus_client import REGISTRY, CollectorRegistry

from streams.metrics.common import (
    FRESHNESS_BUCKETS,
    LATENCY_BUCKETS,
    RoleMetrics,
    label,
    num,
    parse,
)
from streams.metrics.trainer import version_number
from streams.runtime import Emit, Record


class ScorerMetrics(RoleMetrics):
    """The scorer's metrics."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        super().__init__("scorer", registry)
        self.request_seconds = self.histogram(
            "request_seconds", "Scoring latency of one request", buckets=LATENCY_BUCKETS
        )
        self.request_age = self.histogram(
            "request_age_seconds",
            "Request event time to recommendation published",
            buckets=FRESHNESS_BUCKETS,
        )
        self.recommendations = self.counter(
            "recommendations", "Slates served, by policy", ["policy"]
        )
        self.slate_items = self.counter("slate_items", "Slate positions served", ["policy"])
        self.explored_items = self.counter(
            "explored_items", "Served positions that differ from the greedy ranking", ["policy"]
        )
        self.feedback = self.counter("feedback", "Feedback records learned from", ["policy"])
        self.clicks = self.counter("clicks", "Clicks in feedback records", ["policy"])
        self.shadow_ctr = self.gauge(
            "shadow_ctr", "IPS estimate of clicks per slate of a shadow policy", ["policy"]
        )
        self.request_errors = self.counter(
            "request_errors", "Requests answered with an error, by reason", ["reason"]
        )
        self.store_op_seconds = self.histogram(
            "store_op_seconds", "Latency of feature reads", ["op"], LATENCY_BUCKETS
        )
        self.model_version = self.gauge("model_version", "Version of the loaded model snapshot")
        self.snapshot_timestamp = self.gauge(
            "snapshot_timestamp_seconds", "Unix time the loaded snapshot was written"
        )
        self.snapshot_age = self.gauge(
            "snapshot_age_seconds", "Seconds since the loaded snapshot was written"
        )
        self.snapshot_age.set_function(self._snapshot_age)
        self.reloads = self.counter("reloads", "Model snapshots hot-reloaded")
        self.snapshot_load = self.histogram(
            "snapshot_load_seconds",
            "Snapshot written to loaded by the scorer",
            buckets=FRESHNESS_BUCKETS,
        )
        self._snapshot_at = math.nan
        self._seen_version = "none"

    def _snapshot_age(self) -> float:
        return time.time() - self._snapshot_at if not math.isnan(self._snapshot_at) else -1.0

    def observe_served(
        self,
        policy: str,
        latency_s: float,
        request_ts_ms: int | None = None,
        k: int = 0,
        explored: int = 0,
        now: float | None = None,
    ) -> None:
        """Record one served slate: latency, end-to-end age, positions and explored ones."""
        now = time.time() if now is None else now
        self.request_seconds.observe(latency_s)
        if request_ts_ms:
            self.request_age.observe(max(0.0, now - request_ts_ms / 1000.0))
        self.recommendations.labels(policy=policy).inc()
        if k:
            self.slate_items.labels(policy=policy).inc(k)
        if explored:
            self.explored_items.labels(policy=policy).inc(explored)

    def observe_feedback(self, policy: str | None, clicks: int) -> None:
        """Record one feedback record (a closed impression) and how many clicks it had."""
        p = policy or "external"
        self.feedback.labels(policy=p).inc()
        if clicks:
            self.clicks.labels(policy=p).inc(clicks)

    def observe_reload(
        self, version: str | int, snapshot_written_at: float | None, now: float | None = None
    ) -> None:
        """Record a hot reload: the version now served and snapshot → loaded freshness."""
        now = time.time() if now is None else now
        self.reloads.inc()
        self.model_version.set(version_number(version))
        if snapshot_written_at is not None:
            self._snapshot_at = snapshot_written_at
            self.snapshot_timestamp.set(snapshot_written_at)
            self.snapshot_load.observe(max(0.0, now - snapshot_written_at))

    def derive(
        self, handler: object, records: Sequence[Record], emits: Sequence[Emit], now: float
    ) -> None:
        """Served slates from the recommendations out; CTR from feedback in; model reloads."""
        request_ts: dict[str, float] = {}
        for r in records:
            if r.topic.endswith(".requests"):
                req = parse(r.value)
                ts = num(req, "ts")
                if ts is not None and isinstance(req.get("request_id"), str | int):
                    request_ts[str(req["request_id"])] = ts
            elif r.topic.endswith(".feedback"):
                fb = parse(r.value)
                clicks = fb.get("clicks")
                self.observe_feedback(
                    label(fb, "policy"), len(clicks) if isinstance(clicks, list) else 0
                )
        for e in emits:
            if not e.topic.endswith(".recommendations"):
                continue
            rec = parse(e.value)
            error = rec.get("error")
            if isinstance(error, str) and error:
                self.request_errors.labels(reason=error[:64]).inc()
            latency = num(rec, "latency_ms")
            slate = rec.get("slate")
            served_at = num(rec, "served_at")
            rts = request_ts.get(str(rec.get("request_id")))
            policy = label(rec, "policy", "unknown")
            self.request_seconds.observe((latency or 0.0) / 1000.0)
            if rts is not None:
                end = served_at / 1000.0 if served_at is not None else now
                self.request_age.observe(max(0.0, end - rts / 1000.0))
            if not error:
                self.recommendations.labels(policy=policy).inc()
                if isinstance(slate, list) and slate:
                    self.slate_items.labels(policy=policy).inc(len(slate))
        self._bridge_service(getattr(handler, "service", None), now)

    def _bridge_service(self, service: object, now: float) -> None:
        """Model version changes (hot reloads) and shadow CTRs of a ScorerService."""
        if service is None:
            return
        version = getattr(service, "model_version", None)
        if isinstance(version, str) and version != self._seen_version:
            self._seen_version = version
            number = version_number(version)
            if not math.isnan(number):
                written = _created_at(getattr(service, "watcher", None), int(number))
                self.observe_reload(version, written, now)
        shadows = getattr(service, "shadow_stats", None)
        if isinstance(shadows, dict):
            for name, st in shadows.items():
                ctr = getattr(st, "ctr", None)
                if isinstance(ctr, float | int):
                    self.shadow_ctr.labels(policy=str(name)[:64]).set(float(ctr))


def _created_at(watcher: object, version: int) -> float | None:
    """created_at of a snapshot from the watcher's registry metadata, when it has one."""
    read_meta = getattr(getattr(watcher, "registry", None), "read_meta", None)
    if read_meta is None:
        return None
    try:
        created = read_meta(version).get("created_at")
    except Exception:
        return None
    return float(created) if isinstance(created, int | float) else None


SCORER = ScorerMetrics()
