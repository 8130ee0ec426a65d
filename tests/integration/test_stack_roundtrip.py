"""The launcher's broker and Redis are real: round-trips with plain clients."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

pytestmark = [pytest.mark.integration]


@pytest.mark.timeout(120)
def test_kafka_10k_events_consumed_exactly_once_in_a_group(services, uid) -> None:
    topic, group = f"roundtrip-{uid}", f"group-{uid}"
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all", linger_ms=5)
    n = 10_000
    for i in range(n):
        producer.send(topic, key=f"u{i % 97}".encode(), value=f"{i}".encode())
    producer.flush()
    producer.close()

    seen: list[int] = []
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=services.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=15000,
    )
    for msg in consumer:
        seen.append(int(msg.value))
        if len(seen) >= n:
            break
    consumer.commit()
    parts = [TopicPartition(topic, p) for p in range(3)]
    committed = sum(consumer.committed(tp) or 0 for tp in parts)
    consumer.close()
    assert len(seen) == n
    assert sorted(seen) == list(range(n))
    assert committed == n


@pytest.mark.timeout(30)
def test_redis_write_and_read(redis_client, uid) -> None:
    key = f"test:{uid}"
    redis_client.hset(key, mapping={"a": 1, "b": "two"})
    redis_client.expire(key, 60)
    assert redis_client.hgetall(key) == {b"a": b"1", b"b": b"two"}
    assert redis_client.ttl(key) > 0
    info = redis_client.info("persistence")
    assert info["aof_enabled"] == 1
