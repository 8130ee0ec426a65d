"""Feature service + handler over the memory store and the in-memory log (no broker)."""

from __future__ import annotations

import json
import time

import pytest

from features import ALL, open_store
from streams import schemas
from streams.config import Settings
from streams.handlers.ingest import FeatureHandler
from streams.runtime import MemoryLog, Record, drain
from streams.topics import topic_name

pytestmark = pytest.mark.timeout(30)
NOW = int(time.time() * 1000)


def settings() -> Settings:
    return Settings(topic_prefix="u", sequence_length=3)


def interaction(eid: str, user: str = "u1", item: str = "i1", type: str = "click") -> bytes:
    return json.dumps(
        {"event_id": eid, "ts": NOW, "user_id": user, "item_id": item, "type": type}
    ).encode()


BAD = {
    b"{not json": "malformed_json",
    b"[1, 2]": "not_an_object",
    json.dumps({"event_id": "x", "ts": NOW, "user_id": "u", "type": "click"}).encode(): (
        "missing_field"
    ),
    json.dumps(
        {"event_id": "x", "ts": "soon", "user_id": "u", "item_id": "i", "type": "click"}
    ).encode(): "wrong_type",
    json.dumps(
        {
            "event_id": "x",
            "ts": NOW,
            "user_id": "u",
            "item_id": "i",
            "type": "click",
            "schema_version": 9,
        }
    ).encode(): "unknown_schema_version",
    json.dumps(
        {"event_id": "x", "ts": 1234, "user_id": "u", "item_id": "i", "type": "click"}
    ).encode(): "bad_timestamp",
    json.dumps(
        {"event_id": "x", "ts": NOW * 10, "user_id": "u", "item_id": "i", "type": "click"}
    ).encode(): "bad_timestamp",
    interaction("x", type="teleport"): "unknown_interaction_type",
    b'{"event_id": "x", "pad": "' + b"a" * 70_000 + b'"}': "oversized",
}


async def test_bad_records_go_to_the_dlq_with_reason_and_origin() -> None:
    s = settings()
    h = FeatureHandler(s, open_store("memory://"))
    topic = topic_name(s, "interactions")
    recs = [Record(topic, raw, b"k", 2, off) for off, raw in enumerate(BAD)]
    recs.append(Record(topic, interaction("good"), b"u1", 2, 99))
    emits = await h.handle(recs)
    assert [e.topic for e in emits] == [topic_name(s, "dlq")] * len(BAD)
    for e, (raw, reason) in zip(emits, BAD.items(), strict=True):
        dl = schemas.DeadLetter.model_validate_json(e.value)
        assert dl.reason == reason
        assert dl.original == raw and dl.topic == topic and dl.partition == 2
        assert dl.key == "k" and dl.worker == "features"
    assert (await h.store.get("u1")).counts == {"click": 1, ALL: 1}


async def test_all_three_topics_update_the_store_through_the_memory_log() -> None:
    s = settings()
    store = open_store("memory://")
    h = FeatureHandler(s, store)
    log = MemoryLog()
    item = {"event_id": "m1", "ts": NOW, "item_id": "i1", "category_path": ["a", "b"]}
    log.publish(topic_name(s, "items"), json.dumps(item).encode())
    imp = {"event_id": "s1", "ts": NOW, "user_id": "u1", "request_id": "r1", "slate": ["i1"]}
    log.publish(topic_name(s, "impressions"), json.dumps(imp).encode())
    for k in range(5):
        log.publish(topic_name(s, "interactions"), interaction(f"e{k}", item=f"i{k % 2}"))
    log.publish(topic_name(s, "interactions"), interaction("e0"))  # redelivered
    assert await drain(log, h) == 8
    u = await store.get("u1")
    assert u.counts == {"click": 5, ALL: 5}
    assert u.recent_items == ["i0", "i1", "i0"]  # capped at sequence_length=3
    assert "a/b" in u.affinity
    assert (await store.item("i1")).counts == {"click": 2, ALL: 2, "impressions": 1}
    st = h.service.stats
    assert (st.records, st.applied, st.duplicates, st.dead) == (8, 7, 1, 0)
    assert log.topics[topic_name(s, "dlq")] == []


async def test_settings_weights_and_sequence_reach_the_store() -> None:
    s = Settings(topic_prefix="u", event_weights={"click": 1.0, "buy": 5.0})
    store = open_store("memory://")
    h = FeatureHandler(s, store)
    topic = topic_name(s, "interactions")
    await h.handle(
        [
            Record(topic, interaction("a", item="x", type="buy")),
            Record(topic, interaction("b", item="y")),
            Record(topic, interaction("c", item="z", type="purchase")),  # not configured
        ]
    )
    top = dict(await store.popular(5))
    assert top["x"] == pytest.approx(5 * top["y"], rel=1e-3)
    assert "z" not in top
