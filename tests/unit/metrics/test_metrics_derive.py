"""What instrument() reads from the public event contract (records in, emits out)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry

from streams import schemas
from streams.metrics.common import InstrumentedHandler, instrument_in_place, is_instrumented
from streams.metrics.features import FeaturesMetrics
from streams.metrics.joiner import JoinerMetrics
from streams.metrics.scorer import ScorerMetrics
from streams.metrics.trainer import TrainerMetrics
from streams.runtime import Emit, Record

pytestmark = pytest.mark.timeout(20)


def val(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    assert v is not None, f"{name}{labels} not exposed"
    return v


class Echo:
    """Emits the prepared records for each batch (a real handler, no mocking library)."""

    def __init__(self, name: str, topics: tuple[str, ...], out: list[Emit]) -> None:
        self.name = name
        self.topics = topics
        self.out = out
        self.calls = 0

    async def handle(self, records):
        self.calls += 1
        return list(self.out)


def now_ms() -> int:
    return int(time.time() * 1000)


def test_scorer_derives_ctr_inputs_from_feedback_only() -> None:
    t = now_ms()
    rec = schemas.Recommendation(
        event_id="rec-r1",
        ts=t,
        request_id="r1",
        user_id="u1",
        slate=["a", "b", "c"],
        scores=[0.3, 0.2, 0.1],
        propensities=[1.0, 1.0, 1.0],
        policy="in-slate-ts",
        model_version="v2",
        served_at=t,
        latency_ms=4.0,
    )
    fb = schemas.Feedback(
        event_id="f1",
        ts=t,
        user_id="u1",
        request_id="r0",
        slate=["a", "b"],
        policy="greedy",
        served_at=t - 100,
        clicks=[schemas.Click(position=1, item_id="b", type="click", delay_ms=900, event_id="c")],
        window_ms=1000,
    )
    no_click = fb.model_copy(update={"event_id": "f2", "clicks": []})
    reg = CollectorRegistry()
    h = InstrumentedHandler(
        Echo("scorer", ("p.requests", "p.feedback"), [Emit("p.recommendations", rec.to_json())]),
        ScorerMetrics(reg),
    )
    asyncio.run(
        h.handle([Record("p.feedback", fb.to_json()), Record("p.feedback", no_click.to_json())])
    )
    assert val(reg, "slatestream_scorer_feedback_total", policy="greedy") == 2
    assert val(reg, "slatestream_scorer_clicks_total", policy="greedy") == 1
    # serving is the handler's to record (observe_served): the wrapper does not count it twice
    assert (
        reg.get_sample_value("slatestream_scorer_recommendations_total", {"policy": "in-slate-ts"})
        is None
    )
    assert val(reg, "slatestream_scorer_events_out_total", topic="p.recommendations") == 1


@dataclass
class _Stats:
    interactions: int = 0
    feedback: int = 0
    snapshots: int = 0
    last_version: int | None = None
    last_loss: float | None = None
    steps: int = 0


@dataclass
class _Registry:
    created: dict[int, float] = field(default_factory=dict)

    def read_meta(self, version: int) -> dict[str, float]:
        return {"created_at": self.created[version]}


@dataclass
class _Service:
    stats: _Stats = field(default_factory=_Stats)
    registry: _Registry = field(default_factory=_Registry)


class Trainerish:
    """Learns by counting, like TrainerService.stats does."""

    name = "trainer"
    topics = ("p.feedback", "p.interactions")

    def __init__(self) -> None:
        self.service = _Service()

    async def handle(self, records):
        st = self.service.stats
        st.feedback += sum(r.topic == "p.feedback" for r in records)
        st.interactions += sum(r.topic == "p.interactions" for r in records)
        st.last_loss = 1.0 / (st.feedback + st.interactions)
        st.steps += 1
        if st.feedback >= 2:
            st.snapshots += 1
            st.last_version = st.snapshots
            self.service.registry.created[st.last_version] = time.time() - 5.0
        return []


def test_trainer_freshness_and_service_stats() -> None:
    reg = CollectorRegistry()
    handler = Trainerish()
    h = InstrumentedHandler(handler, TrainerMetrics(reg))
    fb = json.dumps({"ts": now_ms() - 3000, "event_id": "x"}).encode()
    asyncio.run(h.handle([Record("p.feedback", fb), Record("p.interactions", b"{}")]))
    assert val(reg, "slatestream_trainer_train_events_total") == 2
    assert val(reg, "slatestream_trainer_loss") == pytest.approx(0.5)
    assert val(reg, "slatestream_trainer_freshness_seconds_sum") == pytest.approx(3.0, abs=0.05)
    assert val(reg, "slatestream_trainer_snapshots_total") == 0
    asyncio.run(h.handle([Record("p.feedback", fb)]))
    assert val(reg, "slatestream_trainer_train_events_total") == 3
    assert val(reg, "slatestream_trainer_train_steps_total") == 2
    assert val(reg, "slatestream_trainer_snapshots_total") == 1
    assert val(reg, "slatestream_trainer_model_version") == 1
    assert 4.9 < val(reg, "slatestream_trainer_snapshot_age_seconds") < 10


def test_features_and_joiner_wrappers_add_only_common_metrics() -> None:
    # their handlers record freshness, clicks, late feedback themselves (no double counting)
    for role, cls in (("features", FeaturesMetrics), ("joiner", JoinerMetrics)):
        reg = CollectorRegistry()
        fb = json.dumps({"policy": "ts", "ts": now_ms(), "clicks": [{"delay_ms": 1}]}).encode()
        h = InstrumentedHandler(Echo(role, ("p.impressions",), [Emit("p.feedback", fb)]), cls(reg))
        imp = json.dumps({"policy": "ts", "ts": now_ms() - 5000}).encode()
        asyncio.run(h.handle([Record("p.impressions", imp)]))
        assert val(reg, f"slatestream_{role}_events_in_total", topic="p.impressions") == 1
        assert val(reg, f"slatestream_{role}_events_out_total", topic="p.feedback") == 1
        derived = [
            s.name
            for fam in reg.collect()
            for s in fam.samples
            if s.name.endswith(("freshness_seconds_count", "clicks_total", "impressions_total"))
            and s.value
        ]
        assert derived == []


def test_instrument_in_place_measures_once() -> None:
    reg = CollectorRegistry()
    m = ScorerMetrics(reg)
    handler = Echo("scorer", ("p.requests",), [])
    assert instrument_in_place(handler, m) is True
    assert is_instrumented(handler) and instrument_in_place(handler, m) is False
    with pytest.raises(ValueError):
        InstrumentedHandler(handler, m)
    asyncio.run(handler.handle([Record("p.requests", b"{}")]))
    assert handler.calls == 1
    assert val(reg, "slatestream_scorer_events_in_total", topic="p.requests") == 1
