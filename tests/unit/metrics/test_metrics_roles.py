"""The role metrics: names under slatestream_<role>_, helpers record what they say."""

from __future__ import annotations

import asyncio
import json
import math
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streams.metrics import (
    FEATURES,
    JOINER,
    SCORER,
    TRAINER,
    all_sample_names,
    for_role,
    instrument,
)
from streams.metrics.common import InstrumentedHandler, dead_letter_reason
from streams.metrics.features import FeaturesMetrics
from streams.metrics.joiner import JoinerMetrics
from streams.metrics.scorer import ScorerMetrics
from streams.metrics.trainer import TrainerMetrics, version_number
from streams.runtime import Emit, Record

pytestmark = pytest.mark.timeout(20)


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    assert v is not None, f"{name}{labels} not exposed"
    return v


class FakeIngest:
    """A real Handler implementation (no mock): turns `bad` records into DLQ emits."""

    name = "features"
    topics = ("p.interactions", "p.items")

    async def handle(self, records):
        out = []
        for r in records:
            if r.value == b"bad":
                out.append(Emit("p.dlq", json.dumps({"reason": "invalid_json"}).encode()))
            else:
                out.append(Emit("p.feedback", r.value))
        return out


class Boom:
    name = "scorer"
    topics = ("p.requests",)

    async def handle(self, records):
        raise RuntimeError("nope")


def test_names_are_namespaced_per_role() -> None:
    for role, metrics in (
        ("features", FEATURES),
        ("joiner", JOINER),
        ("trainer", TRAINER),
        ("scorer", SCORER),
    ):
        names = metrics.sample_names()
        assert names and all(n.startswith(f"slatestream_{role}_") for n in names)
        for common in ("events_in_total", "events_out_total", "batch_seconds_bucket", "dlq_total"):
            assert f"slatestream_{role}_{common}" in names
        assert f"slatestream_{role}_consumer_lag" in names
    assert "slatestream_scorer_request_seconds_bucket" in all_sample_names()
    assert for_role("feature") is FEATURES and for_role("features") is FEATURES
    with pytest.raises(KeyError):
        for_role("nope")


def test_instrument_counts_topics_latency_age_and_dlq_reasons() -> None:
    reg = CollectorRegistry()
    m = FeaturesMetrics(reg)
    h = InstrumentedHandler(FakeIngest(), m)
    now_ms = int(time.time() * 1000)
    recs = [
        Record("p.interactions", b"a", timestamp_ms=now_ms - 2000),
        Record("p.interactions", b"bad", timestamp_ms=now_ms - 2000),
        Record("p.items", b"c", timestamp_ms=now_ms - 2000),
    ]
    emits = asyncio.run(h.handle(recs))
    assert len(emits) == 3 and h.name == "features" and h.topics == FakeIngest.topics
    assert value(reg, "slatestream_features_events_in_total", topic="p.interactions") == 2
    assert value(reg, "slatestream_features_events_in_total", topic="p.items") == 1
    assert value(reg, "slatestream_features_events_out_total", topic="p.feedback") == 2
    assert value(reg, "slatestream_features_dlq_total", reason="invalid_json") == 1
    assert value(reg, "slatestream_features_batch_seconds_count") == 1
    assert value(reg, "slatestream_features_batch_size_sum") == 3
    # each record was ~2 s old: all three land above the 1 s bucket, below 5 s
    assert value(reg, "slatestream_features_event_age_seconds_bucket", le="1.0") == 0
    assert value(reg, "slatestream_features_event_age_seconds_bucket", le="5.0") == 3


def test_instrument_counts_errors_and_reraises() -> None:
    reg = CollectorRegistry()
    h = InstrumentedHandler(Boom(), ScorerMetrics(reg))
    with pytest.raises(RuntimeError):
        asyncio.run(h.handle([Record("p.requests", b"x")]))
    assert value(reg, "slatestream_scorer_errors_total", kind="RuntimeError") == 1
    assert reg.get_sample_value("slatestream_scorer_batch_seconds_count") == 0


def test_instrument_default_registry_by_handler_name() -> None:
    h = instrument(FakeIngest())
    assert h.metrics is FEATURES
    before = FEATURES.registry.get_sample_value(  # type: ignore[union-attr]
        "slatestream_features_events_in_total", {"topic": "p.items"}
    )
    asyncio.run(h.handle([Record("p.items", b"x")]))
    after = FEATURES.registry.get_sample_value(  # type: ignore[union-attr]
        "slatestream_features_events_in_total", {"topic": "p.items"}
    )
    assert after == (before or 0) + 1


def test_dead_letter_reason_is_bounded() -> None:
    assert dead_letter_reason(b'{"reason": "too_large"}') == "too_large"
    assert dead_letter_reason(b"not json") == "unknown"
    assert dead_letter_reason(b"[1]") == "unknown"
    assert len(dead_letter_reason(json.dumps({"reason": "x" * 500}).encode())) == 64


def test_features_store_op_and_freshness() -> None:
    reg = CollectorRegistry()
    m = FeaturesMetrics(reg)
    with m.store_op("get_many"):
        time.sleep(0.003)
    assert value(reg, "slatestream_features_store_ops_total", op="get_many") == 1
    assert value(reg, "slatestream_features_store_op_seconds_sum", op="get_many") >= 0.003
    m.observe_freshness(event_ts_ms=1_000_000, now=1_000.25)
    assert value(reg, "slatestream_features_freshness_seconds_sum") == pytest.approx(0.25)


def test_joiner_clicks_and_late_feedback() -> None:
    reg = CollectorRegistry()
    m = JoinerMetrics(reg)
    m.impressions.labels(policy="ts").inc(4)
    m.observe_click("ts", impression_ts_ms=10_000, click_ts_ms=13_000)
    m.observe_click(None, impression_ts_ms=10_000, click_ts_ms=9_000)
    m.late_feedback.labels(reason="after_window").inc()
    assert value(reg, "slatestream_joiner_clicks_total", policy="ts") == 1
    assert value(reg, "slatestream_joiner_clicks_total", policy="external") == 1
    assert value(reg, "slatestream_joiner_click_delay_seconds_sum") == pytest.approx(3.0)
    assert value(reg, "slatestream_joiner_late_feedback_total", reason="after_window") == 1


def test_trainer_step_snapshot_and_age() -> None:
    reg = CollectorRegistry()
    m = TrainerMetrics(reg)
    assert value(reg, "slatestream_trainer_snapshot_age_seconds") == -1.0  # none yet
    m.observe_step(0.7, n_events=3, event_ts_ms=[1_000_000, 1_000_500], now=1_001.0)
    m.observe_step(float("nan"), n_events=1)
    assert value(reg, "slatestream_trainer_loss") == pytest.approx(0.7)
    assert value(reg, "slatestream_trainer_train_events_total") == 4
    assert value(reg, "slatestream_trainer_train_steps_total") == 2
    assert value(reg, "slatestream_trainer_freshness_seconds_sum") == pytest.approx(1.5)
    m.observe_snapshot("v12", seconds=0.01, at=time.time() - 30)
    assert value(reg, "slatestream_trainer_model_version") == 12
    assert 29 < value(reg, "slatestream_trainer_snapshot_age_seconds") < 40
    assert version_number(7) == 7 and math.isnan(version_number("none"))


def test_scorer_served_exploration_ctr_reload() -> None:
    reg = CollectorRegistry()
    m = ScorerMetrics(reg)
    m.observe_served("ts", 0.004, request_ts_ms=1_000_000, k=10, explored=4, now=1_000.5)
    m.observe_served("greedy", 0.002, k=10)
    m.observe_feedback("ts", clicks=1)
    m.observe_feedback("ts", clicks=0)
    assert value(reg, "slatestream_scorer_recommendations_total", policy="ts") == 1
    assert value(reg, "slatestream_scorer_slate_items_total", policy="ts") == 10
    assert value(reg, "slatestream_scorer_explored_items_total", policy="ts") == 4
    assert (
        reg.get_sample_value("slatestream_scorer_explored_items_total", {"policy": "greedy"})
        is None
    )
    assert value(reg, "slatestream_scorer_request_age_seconds_sum") == pytest.approx(0.5)
    assert value(reg, "slatestream_scorer_feedback_total", policy="ts") == 2
    assert value(reg, "slatestream_scorer_clicks_total", policy="ts") == 1
    m.observe_reload("v3", snapshot_written_at=100.0, now=102.0)
    assert value(reg, "slatestream_scorer_model_version") == 3
    assert value(reg, "slatestream_scorer_snapshot_load_seconds_sum") == pytest.approx(2.0)
    assert value(reg, "slatestream_scorer_reloads_total") == 1
    text = generate_latest(reg).decode()
    assert 'slatestream_scorer_recommendations_total{policy="greedy"} 1.0' in text
