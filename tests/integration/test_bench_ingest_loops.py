"""The ingest benchmark's reference loops on the real broker and Redis: each bare loop
consumes every record of the topic, and the Redis floor writes then removes its keys."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.bench_ingest import bare_loop, generate_events, produce, redis_floor
from streams.broker import ensure_topics
from streams.config import Settings

pytestmark = [pytest.mark.integration]


@pytest.mark.timeout(120)
def test_both_bare_loops_consume_every_record(services: Any, topic_prefix: str) -> None:
    ensure_topics(Settings(kafka_bootstrap=services.kafka_bootstrap, topic_prefix=topic_prefix))
    gen = generate_events(
        1_500, users=50, duplicate_rate=0.0, malformed_rate=0.0, catalogue=0, impressions_rate=0.0
    )
    asyncio.run(produce(services.kafka_bootstrap, topic_prefix, gen.records))
    topic = f"{topic_prefix}.interactions"
    for per_message in (False, True):
        seen, seconds = asyncio.run(
            bare_loop(services.kafka_bootstrap, topic, gen.n_interactions, 60, per_message)
        )
        assert seen == gen.n_interactions == 1_500
        assert seconds > 0


@pytest.mark.timeout(60)
def test_the_redis_floor_measures_and_cleans_up(services: Any, redis_client: Any, uid: str) -> None:
    gen = generate_events(
        800, users=20, duplicate_rate=0.0, malformed_rate=0.0, catalogue=0, impressions_rate=0.0
    )
    ns = f"floor{uid}"
    us = asyncio.run(redis_floor(services.redis_url, gen, ns))
    assert us > 0
    assert list(redis_client.scan_iter(f"{ns}*")) == []
