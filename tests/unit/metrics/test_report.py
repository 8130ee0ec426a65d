"""The report: panel figures from the in-process registry, PNG rendering, CLI parsing."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from prometheus_client import CollectorRegistry

from streams.cli import build_parser
from streams.commands.report import (
    SEP,
    RegistrySampler,
    _quantile,
    fetch_series,
    parse_duration,
    render_panels,
)
from streams.errors import SlatestreamError
from streams.metrics.common import InstrumentedHandler
from streams.metrics.scorer import ScorerMetrics
from streams.runtime import Emit, Record

pytestmark = pytest.mark.timeout(30)


def test_quantile_matches_prometheus_interpolation() -> None:
    # 10 obs <= 0.1, 10 more <= 0.2: the median is the 0.1 bound, p75 halfway in (0.1, 0.2]
    buckets = [(0.1, 10.0), (0.2, 20.0), (float("inf"), 20.0)]
    assert _quantile(0.5, buckets) == pytest.approx(0.1)
    assert _quantile(0.75, buckets) == pytest.approx(0.15)
    assert _quantile(0.99, [(0.1, 0.0), (float("inf"), 5.0)]) == pytest.approx(0.1)
    assert _quantile(0.5, [(0.1, 0.0)]) != _quantile(0.5, [(0.1, 0.0)])  # NaN without data


def test_parse_duration() -> None:
    assert parse_duration("15m") == 900
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == 90
    with pytest.raises(SlatestreamError):
        parse_duration("15 minutes")


class Scoring:
    """Answers each request with a 2-item slate; the first half took 2 ms, the rest 40 ms.

    Records serving like the real scorer handler does (observe_served).
    """

    name = "scorer"
    topics = ("p.requests",)

    def __init__(self, metrics: ScorerMetrics) -> None:
        self.n = 0
        self.metrics = metrics

    async def handle(self, records):
        out = []
        for _ in records:
            self.n += 1
            rec = {
                "request_id": f"r{self.n}",
                "policy": "ts",
                "slate": ["a", "b"],
                "latency_ms": 2.0 if self.n <= 50 else 40.0,
                "served_at": int(time.time() * 1000),
            }
            self.metrics.observe_served("ts", rec["latency_ms"] / 1000.0, k=2)
            out.append(Emit("p.recommendations", json.dumps(rec).encode()))
        return out


def test_sampler_derives_rates_and_quantiles(tmp_path) -> None:
    reg = CollectorRegistry()
    metrics = ScorerMetrics(reg)
    h = InstrumentedHandler(Scoring(metrics), metrics)
    clock = [1000.0]
    sampler = RegistrySampler(reg, window_s=5.0, clock=lambda: clock[0])
    sampler.sample()
    for _ in range(10):
        asyncio.run(h.handle([Record("p.requests", b"{}")] * 10))
        clock[0] += 1.0
        sampler.sample()
    series = sampler.series()
    rate = series[f"Events in{SEP}scorer"]
    assert len(rate) == 10 and all(v == pytest.approx(10.0) for _, v in rate)
    p99 = dict(series[f"Scorer request latency{SEP}p99"])
    p50 = dict(series[f"Scorer request latency{SEP}p50"])
    assert p99[1.0] <= 0.0025  # first second: only 2 ms requests
    assert 0.025 < p99[10.0] <= 0.05  # last window: only 40 ms requests
    assert p50[10.0] <= p99[10.0]
    two = {k: v for k, v in series.items() if k.startswith(("Events in", "Scorer request"))}
    paths = render_panels(two, tmp_path / "out", title="test")
    assert [p.name for p in paths] == [
        "panels.png",
        "panel_events_in.png",
        "panel_scorer_request_latency.png",
    ]
    assert all(p.stat().st_size > 5000 for p in paths)
    assert f"Events in{SEP}features" in series  # every role is charted, idle ones at 0


def test_render_without_data_and_unreachable_prometheus(tmp_path) -> None:
    paths = render_panels({}, tmp_path, per_panel=False)
    assert paths == [tmp_path / "panels.png"] and paths[0].stat().st_size > 5000
    with pytest.raises(SlatestreamError, match="no answer"):
        fetch_series("http://127.0.0.1:9", 60)
    args = build_parser().parse_args(["report", "--prometheus", "http://x:9090", "--range", "5m"])
    assert args.range_ == "5m" and args.prometheus == "http://x:9090"
