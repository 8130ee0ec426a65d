"""Two real scorer workers on the real broker: each learns its CTR posterior from every
partition's feedback (not only its group share), a restarted one relearns the recent window,
and a malformed feedback record is dead-lettered once, by the partition's owner."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bench.bench_ingest import start_worker, stop_worker, worker_env
from streams import schemas
from streams.broker import ensure_topics
from streams.config import Settings
from tests.integration.private_redis import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]
LEARNED = re.compile(r"^slatestream_scorer_feedback_learned_total (\S+)$", re.M)


def _feedback(i: int) -> tuple[bytes, bytes]:
    user = f"u{i % 40}"  # keys spread over the four partitions
    slate = [f"i{(i + j) % 7}" for j in range(3)]
    click = {
        "item_id": slate[0],
        "position": 0,
        "type": "click",
        "delay_ms": 500,
        "event_id": f"c{i}",
    }
    clicks = [schemas.Click.model_validate(click)]
    fb = schemas.Feedback(
        event_id=f"fb{i}",
        ts=int(time.time() * 1000),
        user_id=user,
        request_id=f"r{i}",
        slate=slate,
        served_at=int(time.time() * 1000),
        clicks=clicks if i % 3 == 0 else [],
        window_ms=60_000,
    )
    return user.encode(), fb.to_json()


def _learned(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            m = LEARNED.search(r.read().decode())
    except OSError:
        return -1.0
    return float(m.group(1)) if m else -1.0


async def _wait_learned(ports: list[int], want: float, timeout_s: float = 120) -> list[float]:
    deadline = time.monotonic() + timeout_s
    seen = [_learned(p) for p in ports]
    while time.monotonic() < deadline and any(v != want for v in seen):
        await asyncio.sleep(0.5)
        seen = [_learned(p) for p in ports]
    return seen


async def test_every_scorer_learns_from_all_feedback_and_relearns_it_after_a_restart(
    services: Any, topic_prefix: str, uid: str, tmp_path: Path
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    boot = services.kafka_bootstrap
    ensure_topics(Settings(kafka_bootstrap=boot, topic_prefix=topic_prefix, partitions=4))
    topic = f"{topic_prefix}.feedback"
    producer = AIOKafkaProducer(bootstrap_servers=boot, acks="all")
    await producer.start()
    for i in range(100):
        key, value = _feedback(i)
        await producer.send(topic, value, key=key)
    await producer.send(topic, b'{"event_id": "bad", "ts": 1}', key=b"u1")  # malformed
    await producer.flush()
    ports = [free_port(), free_port()]
    envs = [
        worker_env(
            services,
            topic_prefix,
            f"b{uid}",
            str(tmp_path / f"state{n}"),
            SLATESTREAM_REGISTRY_URL=str(tmp_path / "registry"),
            SLATESTREAM_METRICS_PORT=str(port),
            SLATESTREAM_FEEDBACK_REPLAY_S="600",
        )
        for n, port in enumerate(ports)
    ]
    logs = [tmp_path / "scorer0.log", tmp_path / "scorer1.log"]
    workers = [start_worker(env, "scorer", log) for env, log in zip(envs, logs, strict=True)]
    try:
        # published before either started: both relearn all 100 (the bad one is not learned)
        seen = await _wait_learned(ports, 100)
        assert seen == [100, 100], (seen, [p.read_text()[-1500:] for p in logs])
        for i in range(100, 150):
            key, value = _feedback(i)
            await producer.send(topic, value, key=key)
        await producer.flush()
        assert await _wait_learned(ports, 150) == [150, 150]
        stop_worker(workers[1])
        workers[1] = start_worker(envs[1], "scorer", logs[1])
        assert await _wait_learned(ports[1:], 150) == [150]
        # the malformed record was dead-lettered once, by the member owning its partition
        consumer = AIOKafkaConsumer(
            f"{topic_prefix}.dlq", bootstrap_servers=boot, auto_offset_reset="earliest"
        )
        await consumer.start()
        letters: list[schemas.DeadLetter] = []
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not letters:
                batch = await consumer.getmany(timeout_ms=500)
                for msgs in batch.values():
                    letters += [schemas.DeadLetter.model_validate_json(m.value) for m in msgs]
            await asyncio.sleep(2)  # a second letter (a second member) would arrive by now
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                letters += [schemas.DeadLetter.model_validate_json(m.value) for m in msgs]
        finally:
            await consumer.stop()
        assert [(d.topic, d.reason) for d in letters] == [(topic, "missing_field")]
    finally:
        await producer.stop()
        for w in workers:
            stop_worker(w)
