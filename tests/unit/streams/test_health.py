"""/healthz and /readyz: what makes a worker live and ready, served beside /metrics."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from streams.health import WorkerHealth, ping_once
from streams.metrics.server import serve


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _health(uses_store: bool = True) -> tuple[WorkerHealth, Clock]:
    clock = Clock()
    return WorkerHealth(["scorer"], uses_store, stall_s=30, startup_s=120, clock=clock), clock


def test_live_while_starting_then_only_with_a_recent_beat() -> None:
    h, clock = _health()
    clock.t += 119
    assert h.liveness()[0]  # still starting
    clock.t += 2
    live, details = h.liveness()
    assert not live and details["starting_for_s"] == 121.0  # never ran its loop
    h.beat()
    clock.t += 29
    assert h.liveness() == (True, {"live": True, "roles": ["scorer"], "loop_beat_age_s": 29.0})
    clock.t += 2
    assert not h.liveness()[0]  # the loop stalled for more than 30 s


def test_ready_needs_the_loop_the_group_and_the_store() -> None:
    h, _ = _health()
    h.beat()
    ready, details = h.readiness()
    assert not ready and details["joined_group"] is False and details["store"] == "not pinged yet"
    h.assigned({("p.requests", 0), ("p.requests", 1)})
    assert not h.readiness()[0]  # the store has not answered yet
    h.store_result(None)
    ready, details = h.readiness()
    assert ready and details["partitions"] == 2 and details["store"] == "ok"
    h.store_result("ConnectionError: refused")
    ready, details = h.readiness()
    assert not ready and details["store"] == "ConnectionError: refused"
    h.store_result(None)
    h.revoked({("p.requests", 0), ("p.requests", 1)})
    ready, details = h.readiness()
    assert ready and details["partitions"] == 0  # joined, with nothing assigned: still ready


def test_a_worker_without_store_roles_does_not_report_one() -> None:
    h, _ = _health(uses_store=False)
    h.beat()
    h.assigned(set())
    ready, details = h.readiness()
    assert ready and "store" not in details


def test_probes_are_served_beside_the_metrics() -> None:
    h, clock = _health()
    registry = CollectorRegistry()
    Counter("slatestream_probe_test", "a metric", registry=registry).inc()
    srv = serve("127.0.0.1", 0, registry, health=h)
    base = f"http://{srv.target}"

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    try:
        h.beat()
        status, body = get("/readyz")
        assert status == 503 and json.loads(body)["ready"] is False
        h.assigned({("p.requests", 0)})
        h.store_result(None)
        status, body = get("/readyz")
        assert status == 200 and json.loads(body)["partitions"] == 1
        assert get("/healthz")[0] == 200
        clock.t += 31
        status, body = get("/healthz")
        assert status == 503 and json.loads(body)["live"] is False
        status, body = get("/metrics")
        assert status == 200 and "slatestream_probe_test_total 1.0" in body
    finally:
        srv.close()


def test_metrics_only_without_health() -> None:
    srv = serve("127.0.0.1", 0, CollectorRegistry())
    try:
        with urllib.request.urlopen(f"http://{srv.target}/healthz", timeout=5) as resp:
            assert resp.status == 200 and "application/json" not in resp.headers["Content-Type"]
    finally:
        srv.close()


async def test_ping_once_reports_errors_and_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    async def ok() -> None:
        return None

    async def refused() -> None:
        raise ConnectionError("refused")

    async def hangs() -> None:
        await asyncio.sleep(10)

    monkeypatch.setattr("streams.health.PING_TIMEOUT_S", 0.05)
    assert await ping_once(ok) is None
    assert await ping_once(refused) == "ConnectionError: refused"
    assert await ping_once(hangs) == "TimeoutError"
