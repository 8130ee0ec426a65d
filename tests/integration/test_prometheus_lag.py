"""The consumer-lag reader against a real broker: end offset minus the group's commit."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import CoordinatorNotAvailableError
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from streams.kafka_access import KafkaAccess
from streams.metrics.scorer import ScorerMetrics
from streams.metrics.server import LagMonitor, read_lag

pytestmark = [pytest.mark.integration]


def _first_read(access: KafkaAccess, group: str, topics: list[str]) -> dict:
    """read_lag, once the group coordinator exists: a broker that has never had a group
    creates its offsets topic on the first lookup and answers "not available" meanwhile."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return read_lag(access, group, topics)
        except CoordinatorNotAvailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.timeout(60)
def test_lag_per_partition_matches_commits(services, uid) -> None:
    topic, other, group = f"lag-{uid}", f"lag2-{uid}", f"g-{uid}"
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1), NewTopic(other, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap)
    for i in range(30):
        producer.send(topic, value=b"x", partition=i % 2)  # 15 per partition
    for _ in range(7):
        producer.send(other, value=b"y", partition=0)
    producer.flush()
    producer.close()
    # nothing committed yet: the whole log is lag
    assert _first_read(KafkaAccess(services.kafka_bootstrap), group, [topic, other]) == {
        (topic, 0): 15,
        (topic, 1): 15,
        (other, 0): 7,
    }
    consumer = KafkaConsumer(
        bootstrap_servers=services.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(10, "", -1)})
    consumer.close()
    assert read_lag(KafkaAccess(services.kafka_bootstrap), group, [topic]) == {
        (topic, 0): 5,
        (topic, 1): 15,
    }

    reg = CollectorRegistry()
    metrics = ScorerMetrics(reg)
    mon = LagMonitor(
        KafkaAccess(services.kafka_bootstrap), group, [(metrics, [topic])], interval_s=0.2
    )
    try:
        mon.refresh()
        lag = reg.get_sample_value
        assert lag("slatestream_scorer_consumer_lag", {"topic": topic, "partition": "0"}) == 5
        assert lag("slatestream_scorer_consumer_lag", {"topic": topic, "partition": "1"}) == 15
        assert lag("slatestream_scorer_consumer_lag", {"topic": other, "partition": "0"}) is None
    finally:
        mon.stop()
