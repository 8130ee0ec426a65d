"""Topics that exist before the workers: co-partitioning of the joined topics is checked."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from streams.broker import ensure_topics
from streams.config import Settings
from streams.errors import ConfigError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_impressions_and_interactions_with_different_partition_counts_are_refused(
    services: Any, topic_prefix: str
) -> None:
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(f"{topic_prefix}.impressions", 2, 1)])
    finally:
        admin.close()
    settings = Settings(kafka_bootstrap=services.kafka_bootstrap, topic_prefix=topic_prefix)
    with pytest.raises(ConfigError) as err:
        ensure_topics(settings)  # creates interactions with 4 partitions, then checks
    assert f"{topic_prefix}.impressions has 2" in str(err.value)
    assert f"{topic_prefix}.interactions has 4" in str(err.value)
    env = {
        **os.environ,
        "SLATESTREAM_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "SLATESTREAM_TOPIC_PREFIX": topic_prefix,
        "SLATESTREAM_REDIS_URL": services.redis_url,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "streams", "worker", "--role", "joiner"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slatestream: error: topics must have")


def test_existing_topics_with_equal_counts_pass(services: Any, topic_prefix: str) -> None:
    settings = Settings(kafka_bootstrap=services.kafka_bootstrap, topic_prefix=topic_prefix)
    assert len(ensure_topics(settings)) == 7
    assert ensure_topics(settings) == []  # all exist now, co-partitioned: checked, accepted


def test_a_replication_factor_above_the_brokers_is_one_line_naming_the_setting(
    services: Any, topic_prefix: str
) -> None:
    settings = Settings(
        kafka_bootstrap=services.kafka_bootstrap, topic_prefix=topic_prefix, replication_factor=3
    )
    with pytest.raises(ConfigError) as err:
        ensure_topics(settings)  # the local stack has one broker
    msg = str(err.value)
    assert msg.startswith("SLATESTREAM_REPLICATION_FACTOR: ") and "3" in msg
    assert "Request" not in msg and "\n" not in msg


def test_created_topics_carry_their_configs(services: Any, topic_prefix: str) -> None:
    """The catalogue is compacted; SLATESTREAM_EVENT_RETENTION_MS reaches the event log."""
    from kafka.admin import ConfigResource, ConfigResourceType

    settings = Settings(
        kafka_bootstrap=services.kafka_bootstrap, topic_prefix=topic_prefix, event_retention_ms=-1
    )
    ensure_topics(settings)
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    try:
        names = [f"{topic_prefix}.{t}" for t in ("items", "interactions", "requests")]
        got = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    finally:
        admin.close()
    modified = {  # only the configs set on the topic ('modified' filter)
        name: {k: v["value"] for k, v in cfg.items()} for name, cfg in got["topic"].items()
    }
    assert modified == {
        f"{topic_prefix}.items": {"cleanup.policy": "compact"},
        f"{topic_prefix}.interactions": {"retention.ms": "-1"},
        f"{topic_prefix}.requests": {},
    }
