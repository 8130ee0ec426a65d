"""`slatestream items retire | restore` on the real broker and Redis: the new version of an
item on the items topic keeps the metadata the store holds and flips `available`."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from features import open_store
from features.base import ItemUpdate
from streams import cli, schemas
from streams.broker import ensure_topics
from streams.config import Settings

pytestmark = [pytest.mark.integration]


async def _on_store(url: str, op: str, events: list[ItemUpdate] | None = None) -> None:
    store = open_store(url)
    try:
        await (store.apply_many(events or []) if op == "apply" else store.clear())
    finally:
        await store.close()


@pytest.mark.timeout(90)
def test_retire_and_restore_publish_new_versions_with_the_metadata(
    services, topic_prefix: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in [k for k in os.environ if k.startswith("SLATESTREAM_")]:
        monkeypatch.delenv(key)
    store_url = f"{services.redis_url}?namespace={topic_prefix}"
    monkeypatch.setenv("SLATESTREAM_KAFKA_BOOTSTRAP", services.kafka_bootstrap)
    monkeypatch.setenv("SLATESTREAM_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("SLATESTREAM_STORE_URL", store_url)
    ensure_topics(Settings(kafka_bootstrap=services.kafka_bootstrap, topic_prefix=topic_prefix))
    meta = ItemUpdate("m1", "i1", int(time.time() * 1000), ("movies", "comedy"), {"year": 1995})
    asyncio.run(_on_store(store_url, "apply", [meta]))
    assert cli.main(["items", "retire", "i1"]) == 0
    assert cli.main(["items", "restore", "i1"]) == 0
    assert f"restored 1 item(s) on {topic_prefix}.items: i1" in capsys.readouterr().out
    topic = f"{topic_prefix}.items"
    consumer = KafkaConsumer(bootstrap_servers=services.kafka_bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 2 and time.monotonic() < deadline:
        for msgs in consumer.poll(timeout_ms=500).values():
            got.extend(msgs)
    consumer.close()
    events = [schemas.Item.model_validate_json(m.value) for m in got]
    assert [m.key for m in got] == [b"i1", b"i1"]
    assert [e.available for e in events] == [False, True]
    assert all(e.category_path == ["movies", "comedy"] for e in events)
    assert all(e.attributes == {"year": 1995} for e in events)
    assert events[0].ts <= events[1].ts
    asyncio.run(_on_store(store_url, "clear"))
