"""Metrics of the joiner (`slatestream_joiner_…`): impressions ⋈ later clicks → feedback.

Besides the common role metrics (see `streams.metrics.common`) it measures:

- `impressions_total{policy}`: impressions (served slates) entered into the join;
- `clicks_total{policy}`: clicks attributed to an impression within the window;
- `feedback_total{policy}`: feedback records emitted (one per closed impression);
- `late_feedback_total{reason}`: feedback that came late — `late` (a feedback record the
  joiner flagged `late`, counted by `instrument()`), and clicks the handler could not
  attribute: `after_window`, `unknown_impression`, `out_of_order`;
- `click_delay_seconds`: impression time to click time of attributed clicks;
- `open_impressions`: impressions waiting for clicks (join state size).

CTR per policy in PromQL: `rate(slatestream_joiner_clicks_total[5m]) /
rate(slatestream_joiner_impressions_total[5m])`.

`instrument(handler)` derives impressions, clicks, feedback, click delays and `late` from
the records in and out (the public contract). The handler itself only adds what it alone
knows::

    from streams.metrics import JOINER
    JOINER.late_feedback.labels(reason="after_window").inc()
    JOINER.open_impressions.set(len(state))
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import REGISTRY, CollectorRegistry

from streams.metrics.common import FRESHNESS_BUCKETS, RoleMetrics, label, num, parse
from streams.runtime import Emit, Record

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

    def derive(
        self, handler: object, records: Sequence[Record], emits: Sequence[Emit], now: float
    ) -> None:
        """Impressions in, feedback out (policy, clicks, click delays, late flag)."""
        for r in records:
            if r.topic.endswith(".impressions"):
                self.impressions.labels(policy=label(parse(r.value), "policy")).inc()
        for e in emits:
            if not e.topic.endswith(".feedback"):
                continue
            fb = parse(e.value)
            policy = label(fb, "policy")
            self.feedback.labels(policy=policy).inc()
            clicks = fb.get("clicks")
            if isinstance(clicks, list) and clicks:
                self.clicks.labels(policy=policy).inc(len(clicks))
                for c in clicks:
                    delay = num(c, "delay_ms") if isinstance(c, dict) else None
                    if delay is not None:
                        self.click_delay.observe(max(0.0, delay / 1000.0))
            if fb.get("late") is True:
                self.late_feedback.labels(reason="late").inc()


JOINER = JoinerMetrics()
