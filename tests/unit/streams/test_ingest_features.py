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


async def test_an_item_record_with_available_false_retires_it() -> None:
    s = settings()
    store = open_store("memory://")
    h = FeatureHandler(s, store)
    log = MemoryLog()
    items = topic_name(s, "items")
    for i in ("i1", "i2"):
        log.publish(items, json.dumps({"event_id": i, "ts": NOW, "item_id": i}).encode())
    off = {"event_id": "off", "ts": NOW + 1, "item_id": "i1", "available": False}
    log.publish(items, json.dumps(off).encode())
    bad = {"event_id": "bad", "ts": NOW + 2, "item_id": "i2", "available": "no"}
    log.publish(items, json.dumps(bad).encode())
    assert await drain(log, h) == 4
    assert list(await store.retired()) == ["i1"] and await store.fresh(5) == ["i2"]
    dead = [
        schemas.DeadLetter.model_validate_json(r.value) for r in log.topics[topic_name(s, "dlq")]
    ]
    assert [(d.reason, d.detail.split(":")[0]) for d in dead] == [("wrong_type", "available")]


async def test_an_item_twice_in_one_slate_counts_one_impression() -> None:
    s = settings()
    store = open_store("memory://")
    h = FeatureHandler(s, store)
    imp = {"event_id": "s1", "ts": NOW, "user_id": "u1", "request_id": "r1"}
    imp["slate"] = ["i1", "i2", "i1"]
    await h.handle([Record(topic_name(s, "impressions"), json.dumps(imp).encode())])
    assert (await store.item("i1")).counts == {"impressions": 1}
    assert (await store.item("i2")).counts == {"impressions": 1}


async def test_an_event_time_far_ahead_of_the_clock_counts_as_a_minute_ahead() -> None:
    s = settings()
    store = open_store("memory://")
    h = FeatureHandler(s, store)
    now = int(time.time() * 1000)
    ahead = now + 12 * 3600_000  # valid: within the 24 h clock skew
    fast = {"event_id": "f", "ts": ahead, "user_id": "u1", "item_id": "x", "type": "click"}
    current = {**fast, "event_id": "b", "ts": now, "item_id": "y"}
    topic = topic_name(s, "interactions")
    emits = await h.handle(
        [Record(topic, json.dumps(fast).encode()), Record(topic, json.dumps(current).encode())]
    )
    assert emits == []
    top = dict(await store.popular(5))
    # 12 h ahead with a 1 h half-life would weigh 2^12 clicks; capped it weighs about one
    assert top["y"] <= top["x"] <= 1.05 * top["y"]
    recent = (await store.get("u1")).recent
    assert recent[-1].item_id == "x" and recent[-1].ts <= int(time.time() * 1000) + 60_000

    def item(eid: str, ts: int, cat: str) -> Record:
        ev = {"event_id": eid, "ts": ts, "item_id": "i9", "category_path": [cat]}
        return Record(topic_name(s, "items"), json.dumps(ev).encode())

    await h.handle([item("m1", ahead, "books")])
    # a later version a few minutes ahead wins: the fast clock's day-ahead one does not hold
    await h.handle([item("m2", int(time.time() * 1000) + 300_000, "games")])
    assert (await store.item("i9")).category == "games"


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


def _variants() -> list[bytes]:
    """Valid and subtly invalid interactions: the fast path must agree with the contract."""
    base = {"event_id": "e", "ts": NOW, "user_id": "u", "item_id": "i", "type": "click"}
    out: list[dict[str, object]] = [dict(base)]
    changes: list[tuple[str, object]] = [
        ("event_id", ""),
        ("event_id", 7),
        ("event_id", "x" * 257),
        ("event_id", None),
        ("user_id", True),
        ("user_id", ["u"]),
        ("item_id", 3.5),
        ("ts", float(NOW)),
        ("ts", True),
        ("ts", str(NOW)),
        ("ts", 5),
        ("ts", NOW + 10 * 86_400_000),
        ("type", "Click"),
        ("type", "teleport"),
        ("type", 1),
        ("schema_version", 1),
        ("schema_version", 2),
        ("schema_version", True),
        ("schema_version", "1"),
        ("request_id", "r1"),
        ("request_id", None),
        ("request_id", ""),
        ("position", 3),
        ("position", -1),
        ("value", 4.5),
        ("value", "high"),
        ("extra", {"ignored": True}),
    ]
    for key, value in changes:
        v = dict(base)
        v[key] = value
        out.append(v)
    for key in base:
        v = dict(base)
        del v[key]
        out.append(v)
    raws = [json.dumps(v).encode() for v in out]
    plain = raws[0]
    unusual = [
        b" " + plain,  # whitespace around the object: json.loads accepts it
        plain + b"\n",
        b"\xef\xbb\xbf" + plain,  # UTF-8 BOM
        plain.decode().encode("utf-16"),
        plain[:-1] + b', "ts": 5}',  # duplicate key: the last one wins
        plain[:-1] + b', "user_id": "u2"}',
        plain + plain,  # two objects
        plain.replace(b'"u"', b'"\\u0075"'),  # an escaped id decodes to the same
    ]
    return [*raws, *unusual, b"[]", b"null", b"{", b'{"event_id": "\\ud800"}', b"\xff\xfe"]


@pytest.mark.parametrize("raw", _variants())
def test_fast_path_agrees_with_the_contract(raw: bytes) -> None:
    from streams.errors import SchemaError
    from streams.services.feature_service import fast_interaction, to_update

    s = settings()
    now = int(time.time() * 1000)
    fast = fast_interaction(raw, s.event_weights, now, s.max_event_bytes, s.max_clock_skew_ms)
    try:
        ev = schemas.decode(schemas.Interaction, raw, now_ms=now)
        if ev.type not in s.event_weights:
            raise SchemaError("unknown_interaction_type")
        full = to_update(ev, s.event_weights)
    except SchemaError:
        full = None
    if fast is not None:  # whatever the fast path accepts, the contract accepts identically
        assert full == fast
    if raw == _variants()[0]:
        assert fast is not None  # the plain case takes the fast path


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "persistent store"),
        ({"SLATESTREAM_STORE_URL": "redis://127.0.0.1:1/0"}, "SLATESTREAM_KAFKA_BOOTSTRAP"),
    ],
)
def test_rebuild_cli_errors_are_one_line(
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from streams.cli import main

    for k in ("SLATESTREAM_STORE_URL", "SLATESTREAM_REDIS_URL", "SLATESTREAM_KAFKA_BOOTSTRAP"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["features", "rebuild"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


async def test_worker_waits_for_an_unavailable_store_and_counts_once() -> None:
    from features import StoreUnavailable
    from features.memory import MemoryFeatureStore

    class Flaky(MemoryFeatureStore):
        """Fails like a Redis restart: the first two writes raise after applying."""

        fails = 2

        async def apply_many(self, events):  # type: ignore[no-untyped-def]
            res = await super().apply_many(events)
            if self.fails:
                self.fails -= 1
                raise StoreUnavailable("connection reset")
            return res

    s = settings()
    store = Flaky()
    h = FeatureHandler(s, store)
    topic = topic_name(s, "interactions")
    await h.handle([Record(topic, interaction("a")), Record(topic, interaction("b"))])
    assert (await store.get("u1")).counts == {"click": 2, ALL: 2}


async def test_redis_store_reports_unavailable() -> None:
    from features import InteractionUpdate, StoreUnavailable

    store = open_store("redis://127.0.0.1:1/0?socket_connect_timeout=0.5")
    with pytest.raises(StoreUnavailable):
        await store.update(InteractionUpdate("e", "u", "i", "click", NOW))
    await store.close()


def test_features_show_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli import main

    assert main(["features", "show", "--store", "memory://", "--user", "x", "--popular", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["users"]["x"]["recent"] == [] and out["popular"] == [] and out["global"] == {}


async def test_overlapping_batches_write_at_once_and_succeed_in_call_order() -> None:
    """Batch N+1 decodes and writes while N's write runs (the store never waits for the
    worker's loop); its call returns only after N's write succeeded, and raises when N's
    failed (the driver then acks neither; redelivered, the landed events change nothing)."""
    import asyncio

    from features.memory import MemoryFeatureStore
    from streams.services.feature_service import PreviousBatchFailed

    class Slow(MemoryFeatureStore):
        """Each write waits for the test's go-ahead; records the order writes begin."""

        def __init__(self) -> None:
            super().__init__()
            self.started: list[str] = []
            self.go: dict[str, asyncio.Future[bool]] = {}

        async def apply_many(self, events):  # type: ignore[no-untyped-def]
            first = events[0].event_id
            self.started.append(first)
            if not await self.go.setdefault(first, asyncio.get_running_loop().create_future()):
                raise RuntimeError("write failed")
            return await super().apply_many(events)

    s = settings()
    store = Slow()
    h = FeatureHandler(s, store)
    topic = topic_name(s, "interactions")
    loop = asyncio.get_running_loop()
    first = asyncio.ensure_future(h.handle([Record(topic, interaction("a"))]))
    second = asyncio.ensure_future(h.handle([Record(topic, interaction("b"))]))
    await asyncio.sleep(0.01)
    assert store.started == ["a", "b"]  # b's write goes out while a's runs
    store.go["b"].set_result(True)
    await asyncio.sleep(0.01)
    # b has landed but does not report success before a's write did
    assert (await store.get("u1")).counts == {"click": 1, ALL: 1}
    assert not second.done()
    store.go["a"].set_result(True)
    await asyncio.gather(first, second)
    assert (await store.get("u1")).counts == {"click": 2, ALL: 2}

    third_rec, fourth_rec = Record(topic, interaction("c")), Record(topic, interaction("d"))
    third = asyncio.ensure_future(h.handle([third_rec]))
    fourth = asyncio.ensure_future(h.handle([fourth_rec]))
    await asyncio.sleep(0.01)
    store.go["d"].set_result(True)
    store.go["c"].set_result(False)
    with pytest.raises(RuntimeError, match="write failed"):
        await third
    with pytest.raises(PreviousBatchFailed):
        await fourth
    assert store.started == ["a", "b", "c", "d"]
    # neither was acked: both come again (the restarted agent's batches); d's event, which
    # landed, is a duplicate now and c's is applied
    store.go["c"] = loop.create_future()
    store.go["c"].set_result(True)
    await h.handle([third_rec, fourth_rec])
    assert (await store.get("u1")).counts == {"click": 4, ALL: 4}
