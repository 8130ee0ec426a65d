"""The real scorer worker on the real broker while its Redis goes away and comes back: every
request is answered exactly once, during the outage too (from the lists read before it),
and the worker neither crashes nor drops the requests of the batch that hit the outage."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.bench_ingest import start_worker, stop_worker, worker_env
from features import InteractionUpdate, ItemUpdate, open_store
from streams import schemas
from streams.broker import ensure_topics
from streams.config import Settings
from tests.integration.private_redis import free_port, start_redis

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _catalogue(url: str) -> None:
    """Items in two categories and some clicks: the popular-now list the scorer serves from."""
    store = open_store(url)
    now = int(time.time() * 1000)
    events: list[object] = [
        ItemUpdate(f"it{i}", f"i{i}", now, ("c", str(i % 2))) for i in range(20)
    ]
    events += [
        InteractionUpdate(f"x{j}", f"bg{j % 5}", f"i{j % 20}", "click", now, 1.0) for j in range(60)
    ]
    await store.apply_many(events)  # type: ignore[arg-type]
    await store.close()


@pytest.mark.timeout(240)
async def test_scorer_answers_every_request_through_a_redis_outage(
    services: object, topic_prefix: str, tmp_path: Path
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    boot = services.kafka_bootstrap  # type: ignore[attr-defined]
    ensure_topics(Settings(kafka_bootstrap=boot, topic_prefix=topic_prefix))
    port = free_port()
    redis = start_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    await _catalogue(f"{url}?namespace={topic_prefix}")
    env = worker_env(
        SimpleNamespace(kafka_bootstrap=boot, redis_url=url),
        topic_prefix,
        topic_prefix,
        str(tmp_path / "state"),
        SLATESTREAM_REGISTRY_URL=str(tmp_path / "registry"),
    )
    log_path = tmp_path / "scorer.log"
    worker = start_worker(env, "scorer", log_path)
    producer = AIOKafkaProducer(bootstrap_servers=boot, acks="all")
    consumer = AIOKafkaConsumer(
        f"{topic_prefix}.recommendations", bootstrap_servers=boot, auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    answers: list[schemas.Recommendation] = []

    async def ask(rids: list[str], timeout_s: float) -> set[str]:
        for rid in rids:
            req = schemas.Request(
                event_id=f"e-{rid}", ts=int(time.time() * 1000), request_id=rid, user_id="u1", k=5
            )
            await producer.send_and_wait(f"{topic_prefix}.requests", req.to_json(), key=b"u1")
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not set(rids) <= {a.request_id for a in answers}:
            batch = await consumer.getmany(timeout_ms=200)
            answers.extend(
                schemas.Recommendation.model_validate_json(m.value)
                for ms in batch.values()
                for m in ms
            )
        return set(rids) & {a.request_id for a in answers}

    try:
        probe = 0
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not await ask([f"probe-{probe}"], 2.0):
            probe += 1
        assert answers, f"the scorer never answered:\n{log_path.read_text()[-3000:]}"
        up = [f"up-{j}" for j in range(10)]
        assert await ask(up, 30) == set(up)

        redis.terminate()
        redis.wait(10)
        down = [f"down-{j}" for j in range(10)]
        assert await ask(down, 30) == set(down)

        redis = start_redis(port)  # back, empty: the catalogue is written again
        await _catalogue(f"{url}?namespace={topic_prefix}")
        back = [f"back-{j}" for j in range(10)]
        assert await ask(back, 30) == set(back)
        await asyncio.sleep(1.0)  # a duplicate answer would arrive now
        batch = await consumer.getmany(timeout_ms=500)
        answers.extend(
            schemas.Recommendation.model_validate_json(m.value) for ms in batch.values() for m in ms
        )
    finally:
        await producer.stop()
        await consumer.stop()
        stop_worker(worker)
        redis.terminate()
        redis.wait(10)
    counts = Counter(a.request_id for a in answers)
    assert all(counts[rid] == 1 for rid in up + down + back), counts
    by_id = {a.request_id: a for a in answers}
    for rid in up + down + back:  # from the popular list (during the outage: the last one read)
        assert len(by_id[rid].slate) == 5 and by_id[rid].error is None, by_id[rid]
    log_text = log_path.read_text(errors="replace")
    assert "Traceback" not in log_text, log_text[-3000:]
    assert "feature store unavailable" in log_text
