"""A real scorer worker does not answer a request_id that already has an answer on the
recommendations topic: one published by another scorer (what a scorer killed before it
committed leaves behind for the one taking over its partitions), or its own earlier one
(the same request delivered again)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.bench_ingest import start_worker, stop_worker, worker_env
from streams import schemas
from streams.broker import ensure_topics
from streams.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


def _request(rid: str, user: str) -> bytes:
    now = int(time.time() * 1000)
    return schemas.Request(event_id=f"e-{rid}", ts=now, request_id=rid, user_id=user, k=5).to_json()


async def test_a_request_answered_before_is_not_answered_again(
    services: Any, topic_prefix: str, uid: str, tmp_path: Path
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    boot = services.kafka_bootstrap
    ensure_topics(Settings(kafka_bootstrap=boot, topic_prefix=topic_prefix, partitions=4))
    recs_topic, reqs_topic = f"{topic_prefix}.recommendations", f"{topic_prefix}.requests"
    producer = AIOKafkaProducer(bootstrap_servers=boot, acks="all")
    consumer = AIOKafkaConsumer(recs_topic, bootstrap_servers=boot, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    # another scorer's answer, published before this one started (it is read back at start)
    earlier = schemas.Recommendation(
        event_id="rec-r-other",
        ts=int(time.time() * 1000),
        request_id="r-other",
        user_id="u1",
        slate=["i1"],
        scores=[1.0],
        propensities=[1.0],
        policy="greedy",
        model_version="v1",
        served_at=int(time.time() * 1000),
        latency_ms=1.0,
    )
    await producer.send_and_wait(recs_topic, earlier.to_json(), key=b"u1")
    env = worker_env(services, topic_prefix, f"a{uid}", str(tmp_path / "state"))
    log = tmp_path / "scorer.log"
    worker = start_worker(env, "scorer", log)
    answers: Counter[str] = Counter()

    async def receive(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                for m in msgs:
                    answers[schemas.Recommendation.model_validate_json(m.value).request_id] += 1

    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not answers["r-warm"]:
            await producer.send_and_wait(reqs_topic, _request("r-warm", "u2"), key=b"u2")
            await receive(3.0)
        assert answers["r-warm"] >= 1, log.read_text()[-3000:]
        await receive(2.0)  # the warm-up answers are read back by the worker meanwhile
        warm = answers["r-warm"]
        for rid, user in (("r-other", "u1"), ("r-warm", "u2"), ("r-new", "u3")):
            await producer.send_and_wait(reqs_topic, _request(rid, user), key=user.encode())
        await receive(6.0)
        assert answers["r-new"] == 1, answers
        assert answers["r-other"] == 1, answers  # only the other scorer's answer
        assert answers["r-warm"] == warm, answers  # not answered again
    finally:
        await producer.stop()
        await consumer.stop()
        stop_worker(worker)
    assert "Traceback" not in log.read_text(errors="replace")
