"""Metrics of the joiner (`slatestream_joiner_…`): impressions ⋈ later clicks → feedback.

Besides the common role metrics (see `streams.metrics.common`) it measures:

- `impressions_total{policy}`: impressions (served slates) entered into the join;
- `clicks_total{policy}`: clicks attributed to an impression within the window;
- `feedback_total{policy}`: feedback records emitted (one per closed impression);
- `late_feedback_total{reason}`: clicks that came late or could not be attributed, by
  reason (e.g. `after_window`, `unknown_impression`, `out_of_order`);
- `click_delay_seconds`: impression time to click time of attributed clicks;
- `open_impressions`: impressions waiting for clicks (join state size).

CTR per policy in PromQL: `rate(slatestream_joiner_clicks_total[5m]) /
rate(slatestream_joiner_impressions_total[5m])`.

The joiner handler records these itself (`instrument()` adds only the common metrics)::

    from streams.metrics import JOINER
    JOINER.impressions.labels(policy=imp.policy or "external").inc()
    JOINER.observe_click(policy, impression_ts_ms, click_ts_ms)
    JOINER.feedback.labels(policy=policy).inc()
    JOINER.late_feedback.labels(reason="after_window").inc()
    JOINER.open_impressions.set(len(state))
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry

from streams.metrics.common import FRESHNESS_BUCKETS, RoleMetrics

LATE_REASONS = ("after_window", "unknown_impression", "out_of_order")


class JoinerMetrics(RoleMetrics):
    """The joiner's metrics."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        super().__init__("joiner", registry)
        self.impressions = self.counter("impressions", "Impressions joined, by policy", ["policy"])
        self.clicks = self.counter("clicks", "Clicks attributed to an impression", ["policy"])
        self.feedback = self.counter("feedback", "Feedback records emitted", ["policy"])
        self.late_feedback = self.counter(
            "late_feedback", "Clicks that could not be attributed, by reason", ["reason"]
        )
        self.click_delay = self.histogram(
            "click_delay_seconds", "Impression to attributed click", buckets=FRESHNESS_BUCKETS
        )
        self.open_impressions = self.gauge("open_impressions", "Impressions waiting for clicks")

    def observe_click(self, policy: str | None, impression_ts_ms: int, click_ts_ms: int) -> None:
        """Count one attributed click and its delay after the impression."""
        self.clicks.labels(policy=policy or "external").inc()
        self.click_delay.observe(max(0.0, (click_ts_ms - impression_ts_ms) / 1000.0))


JOINER = JoinerMetrics()
