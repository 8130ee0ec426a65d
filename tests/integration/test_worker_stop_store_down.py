"""A features worker whose Redis is gone retries its write forever; SIGTERM must still stop
it within an orchestrator's grace period, and nothing it had not written may be committed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.bench_ingest import (
    generate_events,
    produce,
    sigterm_and_wait,
    start_worker,
    stop_worker,
    worker_env,
)
from features import ALL, open_store
from streams.broker import ensure_topics
from streams.config import Settings
from tests.integration.private_redis import free_port, start_redis, stop_redis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Kubernetes' default grace period is 30 s; Faust's own wait for the streams never ended
STOP_DEADLINE_S = 25.0


@pytest.mark.timeout(180)
async def test_sigterm_stops_a_worker_stuck_on_a_dead_redis(
    services: object, topic_prefix: str, tmp_path: Path
) -> None:
    boot = services.kafka_bootstrap  # type: ignore[attr-defined]
    ensure_topics(Settings(kafka_bootstrap=boot, topic_prefix=topic_prefix, partitions=4))
    gen = generate_events(4000, users=100, max_bytes=4096, seed=5, catalogue=20)
    half = len(gen.records) // 2
    await produce(boot, topic_prefix, gen.records[:half])
    port = free_port()
    redis = start_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    env = worker_env(
        SimpleNamespace(kafka_bootstrap=boot, redis_url=url),
        topic_prefix,
        "stop",
        str(tmp_path / "w"),
        SLATESTREAM_METRICS_PORT="0",
    )
    log = tmp_path / "worker.log"
    worker = start_worker(env, "features", log, loglevel="info")
    store = open_store(f"{url}?namespace=stop")
    try:
        deadline = time.monotonic() + 90
        while (await store.global_counts()).get(ALL, 0) < 1000:
            assert worker.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the worker never wrote"
            await asyncio.sleep(0.1)
        await store.close()
        stop_redis(redis)
        await produce(boot, topic_prefix, gen.records[half:])  # a batch now retries forever
        await asyncio.sleep(3)
        took = sigterm_and_wait(worker, STOP_DEADLINE_S)
        assert took is not None, f"no exit {STOP_DEADLINE_S:.0f} s after SIGTERM with Redis down"
        text = log.read_text(errors="replace")
        assert "store unavailable" in text  # it was stuck retrying when stopped
        assert "records still in flight after" in text
        print(f"stopped {took:.1f} s after SIGTERM, rc {worker.returncode}")
    finally:
        stop_worker(worker)
        if redis.poll() is None:
            stop_redis(redis)
