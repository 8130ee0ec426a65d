"""The benchmark runner: discovery, figures from each module's result, BENCHMARKS.md."""

from __future__ import annotations

import os

import pytest

from bench.runner import (
    Outcome,
    _run_params,
    discover,
    figures_of,
    machine_info,
    peak_rss_mb,
    render_markdown,
)

pytestmark = pytest.mark.timeout(20)


def test_discover_and_run_params() -> None:
    names = discover()
    assert "bench_store_ops" in names and "bench_rss" in names
    assert all(n.startswith("bench_") for n in names)
    assert discover(["store_ops"]) == ["bench_store_ops"]
    with pytest.raises(SystemExit):
        discover(["nope"])
    assert _run_params("bench_store_ops") == ["quick", "services"]


def test_figures_standard_adapted_and_raw() -> None:
    std = {"figures": [{"name": "w", "value": 2.0, "baseline": 4.0, "ratio": 0.5}]}
    assert figures_of("bench_x", std) == std["figures"]
    ingest = {
        "worker_events_per_s": 1500,
        "bare_aiokafka_events_per_s": 3000,
        "worker_peak_rss_mb": 90.0,
        "targets": {"rss_mb": 300},
    }
    figs = figures_of("bench_ingest", ingest)
    assert figs[0]["ratio"] == 0.5 and figs[0]["baseline_name"] == "bare aiokafka consume loop"
    # RSS beside the target is not a measured baseline: bench_rss reports RSS, not this
    assert all(f["unit"] != "MB" for f in figs)
    ingest |= {"worker_cpu_us_per_event": 60.0, "bare_cpu_us_per_event": 6.0}
    cpu = [f for f in figures_of("bench_ingest", ingest) if f["unit"] == "µs"]
    assert cpu[0]["ratio"] == 10.0 and cpu[0]["higher_is_better"] is False
    raw = figures_of("bench_other", {"a": {"b": 3}, "quick": True, "name": "x"})
    assert [(f["name"], f["value"]) for f in raw] == [("a.b", 3.0)]


def test_markdown_has_machine_versions_command_and_table() -> None:
    ok = Outcome("bench_a", 3.0, result={"x": 1})
    ok.figures = [
        {"name": "fig", "value": 1234.5, "unit": "ops/s", "baseline_name": "raw",
         "baseline": 2469.0, "ratio": 0.5}
    ]  # fmt: skip
    bad = Outcome("bench_b", 1.0, error="exit 1: boom")
    md = render_markdown(
        [ok, bad], machine_info(), {"python": "3.11", "torch": "2"}, "python -m bench", 0.0
    )
    assert "python -m bench" in md and "| torch | 2 |" in md
    assert "| a | fig | 1,234 | ops/s | raw | 2,469 | 0.5 |" in md
    assert "| b | **failed**: exit 1: boom |" in md
    assert f"{os.cpu_count()} cores" in md


def test_peak_rss_of_this_process() -> None:
    assert peak_rss_mb(os.getpid()) > 10
    assert peak_rss_mb(2**22 + 12345) == 0.0


def test_bandits_figures_carry_the_machine_noise_floor() -> None:
    sel = {"greedy, 10% warm": {"cpu": {"p99": 0.4}}, "in-slate-ts, 10% warm": {"cpu": {"p99": 1}}}
    floor = {"cpu": {"p50": 1.0, "p99": 5.0}, "wall": {"p50": 1.0, "p99": 5.2}}
    figs = figures_of("bench_bandits", {"select_ms": sel, "noise_floor_ms": floor})
    noise = [f for f in figs if "noise" in f["name"]]
    assert len(noise) == 1 and noise[0]["value"] == 5.0 and noise[0]["baseline"] == 1.0
    assert any(f["name"].endswith("in-slate-ts, 10% warm") for f in figs)
