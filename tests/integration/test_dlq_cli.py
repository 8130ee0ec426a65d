"""`slatestream dlq show | redrive` against the real broker: dead letters a feature service
wrote are counted by reason, and after the settings change the records they now accept are
published again to their topic, original bytes and keys, in order; the rest stay put."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from features.memory import MemoryFeatureStore
from streams import cli, schemas
from streams.broker import ensure_topics
from streams.config import Settings
from streams.runtime import Record
from streams.services.feature_service import FeatureService

pytestmark = [pytest.mark.integration]

WEIGHTS = {"view": 0.2, "click": 1.0, "share": 0.5}


def _interaction(eid: str, user: str, type_: str) -> bytes:
    ev = {**schemas.example("interaction"), "event_id": eid, "user_id": user, "type": type_}
    return json.dumps({**ev, "ts": int(time.time() * 1000)}).encode()


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    code = cli.main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def read_all(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes]]:
    """(key, value) of every record of `topic`, by partition and offset."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    got: list[tuple[int, int, bytes | None, bytes]] = []
    deadline = time.monotonic() + 20
    while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
        for msgs in consumer.poll(timeout_ms=500).values():
            got.extend((m.partition, m.offset, m.key, m.value) for m in msgs)
    consumer.close()
    return [(k, v) for _, _, k, v in sorted(got)]


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("cli_env")
def test_show_counts_and_redrive_publishes_what_is_valid_now(
    services, topic_prefix: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = Settings(kafka_bootstrap=services.kafka_bootstrap, topic_prefix=topic_prefix)
    ensure_topics(before)
    interactions = f"{topic_prefix}.interactions"
    # what a feature worker on the old settings dead-letters: three 'share' interactions (a
    # type without a weight then), two that no setting makes valid; one good event
    shares = [(f"u{i % 2}".encode(), _interaction(f"s{i}", f"u{i % 2}", "share")) for i in range(3)]
    broken = [(b"u5", b'{"event_id": "x'), (b"u6", b"[1, 2]")]
    records = [
        Record(interactions, v, k, partition=0, offset=i)
        for i, (k, v) in enumerate([*shares, *broken, (b"u1", _interaction("ok", "u1", "click"))])
    ]
    service = FeatureService(before, MemoryFeatureStore(), worker="features")
    batch = asyncio.run(service.process(records))
    assert sum(batch.applied.values()) == 1 and len(batch.emits) == 5
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
    for e in batch.emits:
        producer.send(e.topic, e.value, key=e.key)
    producer.flush()
    producer.close()

    out = _cli(["dlq", "show"], capsys)
    assert f"# {topic_prefix}.dlq: 5 records read (5 held), 5 selected" in out
    rows = {tuple(line.split()[:3]) for line in out.splitlines()}
    assert (interactions, "unknown_interaction_type", "3") in rows
    assert (interactions, "malformed_json", "1") in rows
    assert (interactions, "not_an_object", "1") in rows
    lines = _cli(["dlq", "show", "--json", "--reason", "malformed_json"], capsys).splitlines()
    assert [json.loads(x)["original"] for x in lines] == ['{"event_id": "x']

    out = _cli(["dlq", "redrive", "--dry-run"], capsys)
    assert "would republish 0 (none); 5 still invalid" in out
    assert read_all(services.kafka_bootstrap, interactions) == []

    monkeypatch.setenv("SLATESTREAM_EVENT_WEIGHTS", json.dumps(WEIGHTS))
    out = _cli(["dlq", "redrive"], capsys)
    assert f"republished 3 ({interactions} 3); 2 still invalid" in out, out
    assert "malformed_json 1, not_an_object 1" in out
    got = read_all(services.kafka_bootstrap, interactions)
    assert sorted(got) == sorted(shares)
    for user in (b"u0", b"u1"):  # a user's records keep their order (same key, same partition)
        assert [v for k, v in got if k == user] == [v for k, v in shares if k == user]
    # and a worker on the new settings now takes them
    after = Settings(
        kafka_bootstrap=services.kafka_bootstrap, topic_prefix=topic_prefix, event_weights=WEIGHTS
    )
    redriven = [Record(interactions, v, k) for k, v in got]
    again = asyncio.run(FeatureService(after, MemoryFeatureStore()).process(redriven))
    assert sum(again.applied.values()) == 3 and not again.emits
