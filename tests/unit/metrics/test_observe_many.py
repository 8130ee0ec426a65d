"""The feature worker's per-batch histogram filling gives what per-value observe gives."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, Histogram

from streams.errors import SchemaError
from streams.metrics.common import FRESHNESS_BUCKETS, RoleMetrics
from streams.metrics.features import FeaturesMetrics, observe_many
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


def test_feature_batch_metrics_equal_the_common_ones() -> None:
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
    a, b = CollectorRegistry(), CollectorRegistry()
    RoleMetrics("features", a).observe_batch(records, emits, 0.2, now=now)
    FeaturesMetrics(b).observe_batch(records, emits, 0.2, now=now)
    sa = {k: v for k, v in _samples(a).items() if not k[0].startswith("slatestream_features_store")}
    sb = {k: v for k, v in _samples(b).items() if k[0] in {n for n, _ in sa}}
    assert sa.keys() == sb.keys() and len(sa) > 20
    for k in sa:
        assert sb[k] == pytest.approx(sa[k], rel=1e-12), k
