"""Metrics of the scorer (`slatestream_scorer_…`): requests in, slates out, model hot-reloads.

Besides the common role metrics (see `streams.metrics.common`) it measures:

- `request_seconds`: a request's time in the scorer: its batch's feature reads and the
  ranking of the whole batch, which is ranked together (what `latency_ms` reports);
- `request_age_seconds`: request event time to recommendation published (end to end);
- `recommendations_total{policy}`: slates served, by policy (A/B arm);
- `slate_items_total{policy}` / `explored_items_total{policy}`: slate positions served and
  those that differ from the greedy (posterior-mean) ranking — exploration share is their
  ratio;
- `clicks_total{policy}` / `feedback_total{policy}`: feedback records of the partitions the
  scorer owns and their clicks — CTR by policy is `clicks / feedback` (or / recommendations);
- `feedback_learned_total`: feedback records this process's CTR posterior learned from; on
  Kafka every scorer learns from every partition's feedback (`streams.broadcast`), so
  each process counts all of them (redeliveries and late records not included);
- `shadow_ctr{policy}`: IPS estimate of clicks per slate for shadow policies;
- `request_errors_total{reason}`: requests answered with an error (`no_candidates`, or
  `expired`: older than their timeout when reached, answered without a slate);
- `already_answered_total`: requests skipped because some scorer had already published an
  answer to their request_id (delivered again after a failover, or sent twice);
- `other_scorer_groups`: other consumer groups of this topic prefix with a scorer reading the
  requests (checked every `SLATESTREAM_SCORER_GROUP_CHECK_S`, default a minute; each of
  them answers every request too: should be 0;
  found twice in a row, every group but the first by name stops its worker);
- `retired_items`: retired catalogue items (`available` false) this scorer knows of and never
  serves;
- `store_unavailable_total{read}`: feature reads that failed (store unavailable) and were
  served without (`user_views`: as new users; `lists`: the last popular/fresh lists;
  `categories`: uncategorised);
- `store_op_seconds{op}`: latency of the feature reads that succeeded (`user_views` once per
  batch, `lists` every `lists_ttl_s`, `categories` for items not cached);
- `model_version`, `snapshot_timestamp_seconds`, `snapshot_age_seconds`: the loaded model;
- `reloads_total` and `snapshot_load_seconds`: hot reloads, and freshness "snapshot written
  → loaded by the scorer".

The scorer handler records serving and reloads itself::

    from streams.metrics import SCORER
    SCORER.observe_served(policy, latency_s, request_ts_ms, k=len(slate), explored=n_explored)
    SCORER.observe_reload(version="v3", snapshot_written_at=ts)

and `instrument(handler)` adds, besides the common metrics, feedback and clicks by policy
from the feedback records consumed (the public contract; the handler must not call
`observe_feedback` as well) and shadow CTRs from `service.shadow_stats`.
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
    parse,
)
from streams.metrics.trainer import version_number
from streams.runtime import Emit, Record


class ScorerMetrics(RoleMetrics):
    """The scorer's metrics."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        super().__init__("scorer", registry)
        self.request_seconds = self.histogram(
            "request_seconds",
            "A request's time in the scorer (its batch's reads and ranking)",
            buckets=LATENCY_BUCKETS,
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
        self.feedback = self.counter("feedback", "Feedback records consumed", ["policy"])
        self.clicks = self.counter("clicks", "Clicks in feedback records", ["policy"])
        self.feedback_learned = self.counter(
            "feedback_learned", "Feedback records the CTR posterior learned from, all partitions"
        )
        self.shadow_ctr = self.gauge(
            "shadow_ctr", "IPS estimate of clicks per slate of a shadow policy", ["policy"]
        )
        self.request_errors = self.counter(
            "request_errors", "Requests answered with an error, by reason", ["reason"]
        )
        self.store_op_seconds = self.histogram(
            "store_op_seconds", "Latency of feature reads", ["op"], LATENCY_BUCKETS
        )
        self.already_answered = self.counter(
            "already_answered",
            "Requests not answered again: a scorer had published an answer to their request_id",
        )
        self.other_scorer_groups = self.gauge(
            "other_scorer_groups",
            "Other consumer groups with a scorer reading the requests (each answers them too)",
        )
        self.store_unavailable = self.counter(
            "store_unavailable", "Feature reads that failed and were served without", ["read"]
        )
        self.retired_items = self.gauge(
            "retired_items", "Retired catalogue items this scorer knows of (never served)"
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
        """CTR inputs from the feedback consumed; shadow CTRs from `service.shadow_stats`."""
        for r in records:
            if r.topic.endswith(".feedback"):
                fb = parse(r.value)
                clicks = fb.get("clicks")
                self.observe_feedback(
                    label(fb, "policy"), len(clicks) if isinstance(clicks, list) else 0
                )
        shadows = getattr(getattr(handler, "service", None), "shadow_stats", None)
        if isinstance(shadows, dict):
            for name, st in shadows.items():
                ctr = getattr(st, "ctr", None)
                if isinstance(ctr, float | int):
                    self.shadow_ctr.labels(policy=str(name)[:64]).set(float(ctr))


SCORER = ScorerMetrics()
