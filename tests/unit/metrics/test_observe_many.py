"""Per-batch histogram filling (`observe_many`, used by every role's `observe_batch`) gives
what per-value observe gives."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, Histogram

from streams.errors import SchemaError
from streams.metrics.common import FRESHNESS_BUCKETS, RoleMetrics, observe_many
from streams.runtime import Emit, Record
from streams.schemas import DeadLetter


def _samples(reg: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for m in reg.collect()
        for s in m.samples
        if not s.name.endswith("_created")
    }


def test_observe_many_matches_observe_including_bounds_and_overflow() -> None:
    values = [0.0, 0.005, 0.0051, 1.0, 2.5, 7.0, 3600.0, 3600.5, 1e9, 0.3, 0.3]
    a, b = CollectorRegistry(), CollectorRegistry()
    ha = Histogram("h", "h", registry=a, buckets=FRESHNESS_BUCKETS)
    hb = Histogram("h", "h", registry=b, buckets=FRESHNESS_BUCKETS)
    for v in values:
        ha.observe(v)
    observe_many(hb, iter(values))
    observe_many(hb, [])  # nothing changes
    sa, sb = _samples(a), _samples(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sb[k] == pytest.approx(sa[k], rel=1e-12), k


def test_observe_many_falls_back_without_the_internals() -> None:
    got: list[float] = []

    class Plain:
        def observe(self, v: float) -> None:
            got.append(v)

    observe_many(Plain(), [1.0, 2.0])  # type: ignore[arg-type]
    assert got == [1.0, 2.0]


def test_batch_event_ages_equal_per_record_observe() -> None:
    now = time.time()
    topic = "p.interactions"
    records = [Record(topic, b"x", b"k", 0, i, int(now * 1000) - 45 * i) for i in range(500)]
    records.append(Record("p.items", b"x", None, 0, 1, 0))  # no timestamp: no age
    dead = DeadLetter.of(
        b"x",
        SchemaError("malformed_json", "x"),
        topic=topic,
        partition=0,
        offset=1,
        key=None,
        worker="features",
    )
    emits = [Emit("p.dlq", dead.to_json(), None)]
    reg = CollectorRegistry()
    RoleMetrics("features", reg).observe_batch(records, emits, 0.2, now=now)
    # reference: the same ages observed one by one into a histogram with the same buckets
    ref_reg = CollectorRegistry()
    ref = Histogram(
        "event_age_seconds",
        "ref",
        namespace="slatestream",
        subsystem="features",
        registry=ref_reg,
        buckets=RoleMetrics("features", CollectorRegistry()).event_age._upper_bounds[:-1],
    )
    for r in records[:-1]:
        ref.observe(max(0.0, now - r.timestamp_ms / 1000.0))
    got, want = _samples(reg), _samples(ref_reg)
    assert want and all(k in got for k in want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-12), k
    assert got[("slatestream_features_events_in_total", (("topic", topic),))] == 500
    assert got[("slatestream_features_dlq_total", (("reason", "malformed_json"),))] == 1
