"""A real worker's probes: /readyz turns 503 while its Redis is down and 200 when it is back,
while /healthz (restart me) stays 200: a store outage is not cured by restarting workers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.bench_ingest import start_worker, stop_worker, worker_env
from tests.integration.private_redis import free_port, start_redis, stop_redis
from tests.integration.worker_probe import get_probe, wait_for_probe

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(200)
def test_readiness_follows_the_store_liveness_does_not(
    services: Any, topic_prefix: str, tmp_path: Path
) -> None:
    port, metrics_port = free_port(), free_port()
    redis = start_redis(port)
    env = worker_env(
        SimpleNamespace(
            kafka_bootstrap=services.kafka_bootstrap, redis_url=f"redis://127.0.0.1:{port}/0"
        ),
        topic_prefix,
        "health",
        str(tmp_path / "w"),
        SLATESTREAM_METRICS_PORT=str(metrics_port),
    )
    log = tmp_path / "worker.log"
    worker = start_worker(env, "features,scorer", log)
    base = f"http://127.0.0.1:{metrics_port}"
    try:
        ready = wait_for_probe(f"{base}/readyz", 200, 120, log)
        assert ready["joined_group"] and ready["store"] == "ok"
        assert ready["roles"] == ["features", "scorer"] and ready["partitions"] >= 8
        stop_redis(redis)
        down = wait_for_probe(f"{base}/readyz", 503, 20, log)
        assert down["store"] != "ok" and down["live"] is True
        assert get_probe(f"{base}/healthz")[0] == 200
        redis = start_redis(port)
        wait_for_probe(f"{base}/readyz", 200, 30, log)
        assert worker.poll() is None
    finally:
        stop_worker(worker)
        if redis.poll() is None:
            stop_redis(redis)
    assert "Traceback" not in log.read_text(errors="replace")
