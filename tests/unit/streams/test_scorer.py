"""Scorer service and handler on the in-memory store: slates, fallbacks, reloads, errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from features.base import InteractionUpdate, ItemUpdate, StoreUnavailable
from features.memory import MemoryFeatureStore
from models.gru import BayesGRUModel, GRUConfig
from models.registry import ModelRegistry, SnapshotWatcher
from streams import schemas
from streams.config import load_settings
from streams.handlers.scorer import ScorerHandler
from streams.metrics import SCORER
from streams.runtime import MemoryLog, Record, drain
from streams.services.scorer_service import ScorerConfig, ScorerService, arm_for
from streams.services.store_view import StoreView

NOW = int(time.time() * 1000)
CATS = {"a": ("movies", "comedy"), "b": ("movies", "drama"), "c": ("books", "poetry")}


def item_id(cat: str, i: int) -> str:
    return f"{cat}{i}"


async def catalogue(store: MemoryFeatureStore, per_cat: int = 30) -> None:
    events = [
        ItemUpdate(f"it-{c}{i}", item_id(c, i), NOW - 1000, CATS[c])
        for c in CATS
        for i in range(per_cat)
    ]
    # some background popularity spread over every category
    rng = np.random.default_rng(0)
    for j in range(300):
        c = "abc"[j % 3]
        events.append(
            InteractionUpdate(
                f"bg-{j}",
                f"bg{j % 50}",
                item_id(c, int(rng.integers(per_cat))),
                "view",
                NOW - 5000 + j,
                0.2,
            )
        )
    await store.apply_many(events)


def request(rid: str, user: str, k: int = 5, **kw: object) -> schemas.Request:
    return schemas.Request(event_id=f"e-{rid}", ts=NOW, request_id=rid, user_id=user, k=k, **kw)


def service(
    store: MemoryFeatureStore, watcher: SnapshotWatcher | None = None, **cfg: object
) -> ScorerService:
    return ScorerService(
        StoreView(store),
        watcher,
        ScorerConfig(reload_interval_s=0.0, reload_in_background=False, **cfg),
    )  # type: ignore[arg-type]


def publish_catalogue_model(tmp_path: Path) -> tuple[ModelRegistry, BayesGRUModel]:
    """A registry with one snapshot of an untrained Bayesian GRU that knows the catalogue."""
    registry = ModelRegistry(tmp_path / "reg")
    model = BayesGRUModel(GRUConfig(dim=16, hidden=16))
    for c in CATS:
        for i in range(30):
            model.admit(item_id(c, i), "/".join(CATS[c]))
    registry.publish(model)
    return registry, model


@pytest.mark.timeout(30)
async def test_new_user_without_model_gets_valid_slate_from_popularity_and_fresh() -> None:
    store = MemoryFeatureStore()
    await catalogue(store)
    svc = service(store)
    [served] = await svc.recommend_many([request("r1", "newbie", k=8)])
    rec = served.recommendation
    assert rec.model_version == "none" and rec.error is None
    assert len(rec.slate) == 8 and len(set(rec.slate)) == 8
    assert len(rec.propensities) == 8 and all(0 < p <= 1 for p in rec.propensities)
    assert rec.scores == sorted(rec.scores, reverse=True) or rec.policy != "greedy"
    assert rec.latency_ms > 0 and rec.served_at >= NOW


@pytest.mark.timeout(30)
async def test_exclusions_and_recent_items_are_not_shown_unknown_ids_ignored() -> None:
    store = MemoryFeatureStore()
    await catalogue(store, per_cat=4)
    await store.apply_many([InteractionUpdate("x1", "u1", "a0", "click", NOW, 1.0)])
    svc = service(store)
    [served] = await svc.recommend_many(
        [request("r1", "u1", k=10, exclusions=["a1", "b1", "does-not-exist"])]
    )
    slate = served.recommendation.slate
    assert not {"a0", "a1", "b1"} & set(slate)
    assert len(slate) == 9  # 12 items - 3 excluded
    # the last slate is not shown again to the same user
    [again] = await svc.recommend_many([request("r2", "u1", k=3)])
    assert not set(again.recommendation.slate) & set(slate)


@pytest.mark.timeout(30)
async def test_category_affinity_shows_in_the_next_slate() -> None:
    store = MemoryFeatureStore()
    await catalogue(store)
    clicks = [
        InteractionUpdate(f"c{i}", "fan", item_id("c", i), "click", NOW + i, 1.0) for i in range(4)
    ]
    await store.apply_many(clicks)
    svc = service(store)
    [served] = await svc.recommend_many([request("r1", "fan", k=5)])
    cats = [i[0] for i in served.recommendation.slate]
    assert cats.count("c") >= 3, served.recommendation.slate


@pytest.mark.timeout(60)
async def test_hot_reload_and_corrupted_snapshot_keeps_previous(tmp_path: Path) -> None:
    store = MemoryFeatureStore()
    await catalogue(store)
    registry = ModelRegistry(tmp_path / "reg")
    svc = service(store, SnapshotWatcher(registry))
    [r0] = await svc.recommend_many([request("r0", "u")])
    assert r0.recommendation.model_version == "none"
    model = BayesGRUModel(GRUConfig(dim=16, hidden=16))
    for c in CATS:
        for i in range(30):
            model.admit(item_id(c, i), "/".join(CATS[c]))
    v1 = registry.publish(model)
    [r1] = await svc.recommend_many([request("r1", "u")])
    assert r1.recommendation.model_version == f"v{v1}"
    v2 = registry.publish(model)
    tensors = next(p for p in registry.path(v2).iterdir() if p.suffix == ".safetensors")
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 0xFF
    tensors.write_bytes(bytes(data))
    [r2] = await svc.recommend_many([request("r2", "u")])
    assert r2.recommendation.model_version == f"v{v1}"
    assert v2 in svc.watcher.rejected  # type: ignore[union-attr]


@pytest.mark.timeout(60)
async def test_user_states_are_reused_only_while_sequence_and_snapshot_are_unchanged(
    tmp_path: Path,
) -> None:
    store = MemoryFeatureStore()
    await catalogue(store)
    registry, model = publish_catalogue_model(tmp_path)
    svc = service(store, SnapshotWatcher(registry))
    await store.apply_many([InteractionUpdate("s1", "u", "a1", "click", NOW, 1.0)])
    await svc.recommend_many([request("r1", "u")])
    loaded = svc.model
    assert loaded is not None
    views = await StoreView(store).user_views(["u"])
    first = svc._user_states(views)["u"]
    assert svc._user_states(views)["u"] is first  # same sequence, same snapshot: reused
    np.testing.assert_allclose(first, loaded.user_state(["a1"]), rtol=1e-6)
    await store.apply_many([InteractionUpdate("s2", "u", "b2", "click", NOW + 1, 1.0)])
    views = await StoreView(store).user_views(["u"])
    second = svc._user_states(views)["u"]
    np.testing.assert_allclose(second, loaded.user_state(["a1", "b2"]), rtol=1e-6)
    assert not np.allclose(second, first)
    registry.publish(model)  # a new snapshot: states are computed again with it
    await svc.recommend_many([request("r2", "u")])
    assert svc.model is not loaded
    third = svc._user_states(views)["u"]
    assert third is not second
    svc.config.reuse_user_states = False  # the cache off: computed again on every call
    again = svc._user_states(views)["u"]
    assert again is not third
    np.testing.assert_allclose(again, third, rtol=1e-6)


@pytest.mark.timeout(60)
async def test_new_item_with_known_category_is_recommendable_before_any_click(
    tmp_path: Path,
) -> None:
    store = MemoryFeatureStore()
    await catalogue(store)
    registry, _ = publish_catalogue_model(tmp_path)
    svc = service(store, SnapshotWatcher(registry))
    await store.apply_many([ItemUpdate("new", "brand-new", NOW, ("books", "poetry"))])
    seen = Counter()
    for j in range(40):
        [s] = await svc.recommend_many(
            [request(f"r{j}", f"user{j}", k=10, candidate_filter={"categories": ["books"]})]
        )
        seen.update(s.recommendation.slate)
        assert all(i.startswith("c") or i == "brand-new" for i in s.recommendation.slate)
    assert seen["brand-new"] > 0
    assert np.isfinite(svc.model.score(svc.model.user_state([]), ["brand-new"])[0])  # type: ignore[union-attr]


@pytest.mark.timeout(60)
async def test_background_reload_keeps_serving_then_switches(tmp_path: Path) -> None:
    store = MemoryFeatureStore()
    await catalogue(store)
    registry = ModelRegistry(tmp_path / "reg")
    svc = ScorerService(
        StoreView(store),
        SnapshotWatcher(registry),
        ScorerConfig(reload_interval_s=0.0, reload_in_background=True),
    )
    model = BayesGRUModel(GRUConfig(dim=8, hidden=8))
    model.admit("a0", "movies/comedy")
    version = registry.publish(model)
    served = []
    for j in range(200):
        [s] = await svc.recommend_many([request(f"r{j}", "u")])
        served.append(s.recommendation.model_version)
        if served[-1] != "none":
            break
        await asyncio.sleep(0.02)
    assert served[0] == "none" and served[-1] == f"v{version}"


@pytest.mark.timeout(20)
def test_arms_split_is_stable_and_follows_weights() -> None:
    arms = {"in-slate-ts": 1.0, "greedy": 3.0}
    users = [f"u{i}" for i in range(4000)]
    first = [arm_for(u, arms) for u in users]
    assert first == [arm_for(u, arms) for u in users]
    share = first.count("greedy") / len(users)
    assert 0.72 < share < 0.78


@pytest.mark.timeout(30)
async def test_shadow_policies_are_estimated_from_feedback_and_logged_only_when_configured() -> (
    None
):
    store = MemoryFeatureStore()
    await catalogue(store)
    svc = service(store, arms={"greedy": 1.0}, shadows=("greedy",))
    served = await svc.recommend_many([request(f"r{j}", f"u{j}") for j in range(10)])
    assert len(svc._shadow_log) == 10
    expected = 0.0  # per-position IPS: a click counts 1/propensity where the shadow agrees
    for s in served:
        rec = s.recommendation
        if s.shadows["greedy"][0] == rec.slate[0]:
            expected += 1.0 / rec.propensities[0]
        svc.on_feedback(
            schemas.Feedback(
                event_id=f"fb-{rec.request_id}",
                ts=NOW,
                user_id=rec.user_id,
                request_id=rec.request_id,
                slate=rec.slate,
                propensities=rec.propensities,
                policy=rec.policy,
                served_at=rec.served_at,
                clicks=[
                    schemas.Click(
                        position=0,
                        item_id=rec.slate[0],
                        type="click",
                        delay_ms=10,
                        event_id=f"c-{rec.request_id}",
                    )
                ],
                window_ms=1000,
            )
        )
    stats = svc.shadow_stats["greedy"]
    assert stats.slates == 10 and not svc._shadow_log
    assert stats.ctr == pytest.approx(expected / 10) and stats.ctr > 0
    plain = service(store, arms={"greedy": 1.0})
    await plain.recommend_many([request("r0", "u0")])
    assert not plain._shadow_log  # nothing to estimate: nothing kept


@pytest.mark.timeout(30)
async def test_handler_answers_every_request_once_and_dead_letters_bad_ones() -> None:
    """Bad requests are answered with an error record and dead-lettered; bad feedback is
    dead-lettered (the scorer owns that: the trainer only skips it)."""
    settings = load_settings(topic_prefix="t")
    store = MemoryFeatureStore()
    await catalogue(store)
    handler = ScorerHandler(
        settings, service(store, arms={"in-slate-ts": 1, "greedy": 1}, shadows=("random",))
    )
    log = MemoryLog()
    for j in range(20):
        log.publish("t.requests", request(f"r{j}", f"u{j}").to_json(), f"u{j}".encode())
    bad_req = {"event_id": "e", "ts": NOW, "request_id": "bad-1", "user_id": "u1", "k": "many"}
    log.publish("t.requests", json.dumps(bad_req).encode(), b"u1")
    log.publish("t.requests", b"not json at all", b"u2")
    bad_fb = {"event_id": "f", "ts": NOW, "user_id": "u1", "request_id": "r0"}  # no slate
    log.publish("t.feedback", json.dumps(bad_fb).encode(), b"u1")
    await drain(log, handler)
    recs = [
        schemas.Recommendation.model_validate_json(r.value) for r in log.topics["t.recommendations"]
    ]
    ids = Counter(r.request_id for r in recs)
    assert all(ids[f"r{j}"] == 1 for j in range(20)) and ids["bad-1"] == 1
    bad = next(r for r in recs if r.request_id == "bad-1")
    assert bad.slate == [] and bad.error and "k" in bad.error
    dlq = [json.loads(r.value) for r in log.topics["t.dlq"]]
    assert sorted(d["reason"] for d in dlq) == ["malformed_json", "missing_field", "wrong_type"]
    assert next(d for d in dlq if d["reason"] == "missing_field")["topic"] == "t.feedback"
    assert {r.arm for r in recs if not r.error} == {"in-slate-ts", "greedy"}
    impressions = log.topics["t.impressions"]
    assert len(impressions) == 20  # every served slate is also an impression


class FlakyView:
    """The scorer's store view with a switch that makes every read fail as on a Redis outage."""

    def __init__(self, store: MemoryFeatureStore) -> None:
        self.view = StoreView(store)
        self.down = False

    def __getattr__(self, name: str) -> Any:
        read = getattr(self.view, name)

        async def call(*args: Any) -> Any:
            if self.down:
                raise StoreUnavailable("redis: connection refused")
            return await read(*args)

        return call


async def test_store_outage_answers_every_request_and_counts_failed_reads(tmp_path: Path) -> None:
    """With the feature store down, requests are still answered exactly once (as for new users,
    from the model and the last lists read); the failed reads are counted per kind; once the
    store is back the users' features are used again (their history is excluded)."""
    store = MemoryFeatureStore()
    await catalogue(store)
    registry, _ = publish_catalogue_model(tmp_path)
    view = FlakyView(store)
    svc = ScorerService(
        view,
        SnapshotWatcher(registry),
        ScorerConfig(reload_interval_s=0.0, reload_in_background=False, lists_ttl_s=0.0),
    )
    seen = [item_id("a", i) for i in range(5)]
    await store.apply_many(
        [InteractionUpdate(f"h{i}", "u1", it, "click", NOW + i, 1.0) for i, it in enumerate(seen)]
    )
    first = await svc.recommend_many([request("r0", "u1", k=10)])
    assert first[0].recommendation.slate and not set(seen) & set(first[0].recommendation.slate)
    assert svc.pop_store_failures() == {}
    timed = svc.pop_store_timings()
    assert {r for r, _ in timed} == {"user_views", "lists", "categories", "retired"}
    assert all(sec >= 0 for _, sec in timed) and svc.pop_store_timings() == []
    view.down = True
    svc._cat_cache.clear()  # categories must be read again, and fail
    out = await svc.recommend_many([request(f"d{j}", f"u{j}", k=10) for j in range(6)])
    assert [s.recommendation.request_id for s in out] == [f"d{j}" for j in range(6)]
    assert all(len(s.recommendation.slate) == 10 and not s.recommendation.error for s in out)
    failures = svc.pop_store_failures()
    assert failures.keys() == {"user_views", "lists", "categories"}
    assert svc.pop_store_timings() == []  # a failed read is counted, not timed
    assert svc.pop_store_failures() == {}  # popped
    view.down = False
    back = await svc.recommend_many([request("b0", "u1", k=10), request("b1", "u1", k=10)])
    assert all(not set(seen) & set(s.recommendation.slate) for s in back)
    assert svc.pop_store_failures() == {}


async def test_handler_exports_store_read_latency_and_failures_as_metrics() -> None:
    from streams.metrics import SCORER

    settings = load_settings(topic_prefix="t")
    store = MemoryFeatureStore()
    await catalogue(store)
    view = FlakyView(store)
    handler = ScorerHandler(
        settings,
        ScorerService(view, None, ScorerConfig(reload_interval_s=0.0, reload_in_background=False)),
    )
    log = MemoryLog()
    timed = SCORER.store_op_seconds.labels(op="user_views")
    reads_before = timed._sum.get(), sum(b.get() for b in timed._buckets)
    log.publish("t.requests", request("ok", "u1").to_json(), b"u1")
    await drain(log, handler)  # lists read while the store is up
    assert sum(b.get() for b in timed._buckets) == reads_before[1] + 1
    assert timed._sum.get() > reads_before[0]
    before = SCORER.store_unavailable.labels(read="user_views")._value.get()
    view.down = True
    for j in range(3):
        log.publish("t.requests", request(f"r{j}", f"u{j}").to_json(), f"u{j}".encode())
    await drain(log, handler)
    recs = [
        schemas.Recommendation.model_validate_json(r.value) for r in log.topics["t.recommendations"]
    ]
    assert Counter(r.request_id for r in recs) == Counter(["ok", "r0", "r1", "r2"])
    assert all(r.slate for r in recs)  # popularity from the lists read before the outage
    assert SCORER.store_unavailable.labels(read="user_views")._value.get() > before


async def test_handler_loads_snapshots_off_the_event_loop_and_reports_the_switch(
    tmp_path: Path,
) -> None:
    """The worker's handler must not read snapshots on the event loop (a load stalls every
    request behind it): loads run in a worker thread; the switch is still reported."""
    import threading

    from streams.metrics import SCORER

    registry, _ = publish_catalogue_model(tmp_path)
    loaded_in: list[str] = []
    load = registry.load

    def spy(version: int) -> Any:
        loaded_in.append(threading.current_thread().name)
        return load(version)

    registry.load = spy  # type: ignore[method-assign]
    store = MemoryFeatureStore()
    await catalogue(store)
    svc = ScorerService(
        StoreView(store), SnapshotWatcher(registry), ScorerConfig(reload_interval_s=0.0)
    )
    handler = ScorerHandler(load_settings(topic_prefix="t"), svc)
    reloads = SCORER.reloads._value.get()
    for j in range(20):
        rec = request(f"r{j}", "u1")
        await handler.handle([Record("t.requests", rec.to_json(), b"u1")])
        if svc.model_version != "none":
            break
        await asyncio.sleep(0.05)
    assert svc.model_version == "v1"
    assert loaded_in and threading.main_thread().name not in loaded_in
    assert SCORER.reloads._value.get() == reloads + 1


async def test_broadcast_feedback_is_learned_once_and_the_group_copy_only_counted() -> None:
    """On Kafka the broadcast reader feeds `learn` with every partition's feedback; the copy
    the group member consumes is then dead-lettered if bad but not learned a second time."""
    settings = load_settings(topic_prefix="t")
    store = MemoryFeatureStore()
    await catalogue(store)
    handler = ScorerHandler(settings, service(store))
    handler.learns_feedback = False
    fb = schemas.Feedback(
        event_id="fb1",
        ts=NOW,
        user_id="u1",
        request_id="r1",
        slate=["a0", "a1"],
        served_at=NOW,
        window_ms=60_000,
        clicks=[schemas.Click(position=1, item_id="a1", type="click", delay_ms=5, event_id="c")],
    )
    rec = Record("t.feedback", fb.to_json(), b"u1")
    before = SCORER.feedback_learned._value.get()
    ctr = handler.service.posterior.ctr
    prior = ctr.params(("a1",))[0][0]
    handler.learn(rec)
    handler.learn(Record("t.feedback", b"{broken", b"u1"))  # skipped: its owner dead-letters
    assert SCORER.feedback_learned._value.get() == before + 1
    alpha = ctr.params(("a1",))[0][0]
    assert alpha > prior
    assert await handler.handle([rec]) == []  # the group copy: neither learned nor an error
    assert ctr.params(("a1",))[0][0] == alpha
    assert handler.service.feedback_skipped["duplicate"] == 0
    dead = await handler.handle([Record("t.feedback", b"{broken", b"u1")])
    assert [e.topic for e in dead] == ["t.dlq"]


async def test_a_request_with_an_answer_on_the_topic_is_not_answered_again() -> None:
    """Answers read back from the recommendations topic (any scorer's, `note_answer`) and a
    request twice in one batch: each request_id is answered once; skips are counted."""
    settings = load_settings(topic_prefix="t")
    store = MemoryFeatureStore()
    await catalogue(store)
    handler = ScorerHandler(settings, service(store))
    other = schemas.Recommendation(
        event_id="rec-r1",
        ts=NOW,
        request_id="r1",
        user_id="u1",
        slate=["x"],
        scores=[1.0],
        propensities=[1.0],
        policy="ts",
        model_version="v1",
        served_at=NOW,
        latency_ms=1.0,
    )
    handler.note_answer(Record("t.recommendations", other.to_json(), b"u1"))
    handler.note_answer(Record("t.recommendations", b"not json", b"u1"))  # ignored
    before = SCORER.already_answered._value.get()
    bad = json.dumps({"request_id": "r1", "user_id": "u1", "ts": NOW}).encode()  # no event_id
    records = [
        Record("t.requests", request("r1", "u1").to_json(), b"u1"),
        Record("t.requests", request("r2", "u2").to_json(), b"u2"),
        Record("t.requests", request("r2", "u2").to_json(), b"u2"),
        Record("t.requests", bad, b"u1"),
    ]
    emits = await handler.handle(records)
    answered = Counter(
        schemas.Recommendation.model_validate_json(e.value).request_id
        for e in emits
        if e.topic == "t.recommendations"
    )
    assert answered == Counter(["r2"])
    assert sum(e.topic == "t.dlq" for e in emits) == 1  # the malformed one is still a letter
    assert handler.already_answered == 3
    assert SCORER.already_answered._value.get() == before + 3


async def test_requests_older_than_their_timeout_are_answered_expired_without_a_slate() -> None:
    """SLATESTREAM_REQUEST_TIMEOUT_MS, and a request's own timeout_ms before it: an expired
    request is answered at once with error 'expired' (no slate, no impression, not ranked);
    a fresh one in the same batch is served; a request answered before stays unanswered."""
    settings = load_settings(topic_prefix="t", request_timeout_ms=1000)
    store = MemoryFeatureStore()
    await catalogue(store)
    svc = service(store)
    handler = ScorerHandler(settings, svc)
    ranked: list[str] = []
    real = svc.recommend_many

    async def spy(reqs: Any) -> Any:
        ranked.extend(r.request_id for r in reqs)
        return await real(reqs)

    svc.recommend_many = spy  # type: ignore[method-assign]
    now = int(time.time() * 1000)

    def req(rid: str, age_ms: int, **kw: object) -> Record:
        r = schemas.Request(
            event_id=f"e-{rid}", ts=now - age_ms, request_id=rid, user_id="u1", k=5, **kw
        )
        return Record("t.requests", r.to_json(), b"u1")

    handler.note_answer(Record("t.recommendations", json.dumps({"request_id": "gone"}).encode()))
    before = SCORER.request_errors.labels(reason="expired")._value.get()
    emits = await handler.handle(
        [
            req("fresh", 0),
            req("old", 60_000),
            req("old-but-patient", 60_000, timeout_ms=120_000),  # its own timeout wins
            req("young-but-hasty", 500, timeout_ms=100),
            req("gone", 60_000),  # answered before: not answered again, not even 'expired'
        ]
    )
    recs = {
        r.request_id: r
        for r in (
            schemas.Recommendation.model_validate_json(e.value)
            for e in emits
            if e.topic == "t.recommendations"
        )
    }
    assert set(recs) == {"fresh", "old", "old-but-patient", "young-but-hasty"}
    assert sorted(ranked) == ["fresh", "old-but-patient"]
    for rid in ("old", "young-but-hasty"):
        assert recs[rid].slate == [] and (recs[rid].error or "").startswith("expired: waited ")
    assert "timeout 1000 ms" in (recs["old"].error or "")
    assert recs["fresh"].slate and recs["fresh"].error is None
    impressions = {
        schemas.Impression.model_validate_json(e.value).request_id
        for e in emits
        if e.topic == "t.impressions"
    }
    assert impressions == {"fresh", "old-but-patient"}
    assert handler.expired == 2
    assert SCORER.request_errors.labels(reason="expired")._value.get() == before + 2


async def test_without_a_timeout_no_request_expires() -> None:
    settings = load_settings(topic_prefix="t")  # SLATESTREAM_REQUEST_TIMEOUT_MS unset: 0
    store = MemoryFeatureStore()
    await catalogue(store)
    handler = ScorerHandler(settings, service(store))
    old = schemas.Request(event_id="e-1", ts=NOW - 86_400_000, request_id="r1", user_id="u1", k=3)
    emits = await handler.handle([Record("t.requests", old.to_json(), b"u1")])
    rec = schemas.Recommendation.model_validate_json(emits[0].value)
    assert rec.request_id == "r1" and len(rec.slate) == 3 and rec.error is None
    assert handler.expired == 0


async def test_a_retired_item_is_never_served_and_one_brought_back_is_again(
    tmp_path: Path,
) -> None:
    """An item retired in the store (`available` false) leaves every later slate, even when
    the model ranks it first or a request's candidate filter names it; brought back, it is
    served again from the scorer's next read of the shared lists (no full read needed)."""
    store = MemoryFeatureStore()
    await catalogue(store)
    registry, _ = publish_catalogue_model(tmp_path)
    svc = service(store, SnapshotWatcher(registry), lists_ttl_s=0.0, retired_reload_s=3600.0)
    users = [f"n{j}" for j in range(8)]
    before = await svc.recommend_many([request(f"b{j}", u, k=10) for j, u in enumerate(users)])
    shown = {i for s in before for i in s.recommendation.slate}
    gone = sorted(shown | {item_id("a", i) for i in range(30)})  # every item shown, all of 'a'
    await store.apply_many(
        [ItemUpdate(f"off-{i}", i, NOW, CATS[i[0]], available=False) for i in gone]
    )
    reqs = [request(f"r{j}", u, k=10) for j, u in enumerate(users)]
    keep = next(i for i in (item_id("c", j) for j in range(30)) if i not in gone)
    reqs.append(request("f1", "n0", k=5, candidate_filter={"item_ids": [*gone[:3], keep]}))
    after = await svc.recommend_many(reqs)
    assert svc.retired == set(gone)
    for s in after:
        assert s.recommendation.slate, s.recommendation
        assert not set(s.recommendation.slate) & set(gone)
    assert after[-1].recommendation.slate == [keep]
    back = gone[0]
    await store.update(ItemUpdate("on-1", back, NOW + 1, CATS[back[0]]))
    again = await svc.recommend_many(
        [request("y", "n1", k=1, candidate_filter={"item_ids": [back]})]
    )
    assert back not in svc.retired and again[0].recommendation.slate == [back]
    assert svc.retired == set(gone[1:])  # the others stay retired
    # retired once more: gone again at the next read, though restored a moment before
    await store.update(ItemUpdate("off-again", back, NOW + 2, CATS[back[0]], available=False))
    last = await svc.recommend_many(
        [request("z", "n1", k=1, candidate_filter={"item_ids": [back, keep]})]
    )
    assert back in svc.retired and last[0].recommendation.slate == [keep]


async def test_the_model_candidates_skip_retired_items(tmp_path: Path) -> None:
    """With candidates from the model alone, retiring the model's top items leaves its next
    best as the candidates (not an empty slate of retired ones filtered out)."""
    store = MemoryFeatureStore()
    await catalogue(store)
    registry, _ = publish_catalogue_model(tmp_path)
    svc = service(
        store,
        SnapshotWatcher(registry),
        lists_ttl_s=0.0,
        candidates_model=5,
        candidates_popular=0,
        candidates_fresh=0,
        exclude_shown_slates=0,
    )
    first = (await svc.recommend_many([request("a", "m1", k=5)]))[0].recommendation.slate
    assert len(first) == 5
    await store.apply_many(
        [ItemUpdate(f"off-{i}", i, NOW, CATS[i[0]], available=False) for i in first]
    )
    second = (await svc.recommend_many([request("b", "m1", k=5)]))[0].recommendation.slate
    assert len(second) == 5 and not set(second) & set(first)


async def test_the_handler_exports_how_many_retired_items_it_knows() -> None:
    store = MemoryFeatureStore()
    await catalogue(store)
    await store.apply_many(
        [ItemUpdate(f"off-{j}", item_id("c", j), NOW, CATS["c"], available=False) for j in range(7)]
    )
    handler = ScorerHandler(load_settings(topic_prefix="t"), service(store, lists_ttl_s=0.0))
    await handler.handle([Record("t.requests", request("r1", "u1").to_json(), b"u1")])
    assert SCORER.retired_items._value.get() == 7


async def test_timeouts_are_checked_again_while_a_batch_is_ranked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With timeouts, a batch is ranked in pieces of 16, each checked just before: the requests
    that wait out their timeout while the pieces before them are ranked are answered
    'expired'. Without any timeout the batch is ranked in one piece."""
    import types

    import streams.handlers.scorer as scorer_module

    clock = [time.time()]
    monkeypatch.setattr(scorer_module, "time", types.SimpleNamespace(time=lambda: clock[0]))
    store = MemoryFeatureStore()
    await catalogue(store)
    svc = service(store)
    handler = ScorerHandler(load_settings(topic_prefix="t"), svc)
    calls: list[int] = []
    real = svc.recommend_many

    async def slow(reqs: Any) -> Any:  # ranking a piece takes 60 ms of this clock
        calls.append(len(reqs))
        clock[0] += 0.060
        return await real(reqs)

    svc.recommend_many = slow  # type: ignore[method-assign]
    start = int(clock[0] * 1000)

    def batch(tag: str, **kw: object) -> list[Record]:
        return [
            Record(
                "t.requests",
                schemas.Request(
                    event_id=f"e-{tag}{j}",
                    ts=start,
                    request_id=f"{tag}{j}",
                    user_id="u1",
                    k=3,
                    **kw,
                ).to_json(),
                b"u1",
            )
            for j in range(40)
        ]

    emits = await handler.handle(batch("a", timeout_ms=100))
    recs = [
        schemas.Recommendation.model_validate_json(e.value)
        for e in emits
        if e.topic == "t.recommendations"
    ]
    assert calls == [16, 16]  # checked at 0, 60 and 120 ms: the last 8 all expired
    expired = sorted(r.request_id for r in recs if (r.error or "").startswith("expired"))
    assert expired == sorted(f"a{j}" for j in range(32, 40))
    assert sum(1 for r in recs if r.slate) == 32
    calls.clear()
    clock[0] = start / 1000
    await handler.handle(batch("b"))  # no timeout anywhere: one piece
    assert calls == [40]


async def test_a_request_delivered_again_in_a_later_batch_is_not_answered_again() -> None:
    """The scorer remembers the answers it published itself at once, without waiting for the
    read-back of the recommendations topic (which lags on a loaded machine): a request sent
    twice, or delivered again, in a later batch gets no second answer."""
    store = MemoryFeatureStore()
    await catalogue(store)
    handler = ScorerHandler(load_settings(topic_prefix="t"), service(store))
    rec = Record("t.requests", request("r1", "u1").to_json(), b"u1")
    bad = Record("t.requests", json.dumps({"request_id": "r2", "user_id": "u1"}).encode(), b"u1")
    first = await handler.handle([rec, bad])
    again = await handler.handle([rec, bad])
    assert sum(e.topic == "t.recommendations" for e in first) == 2  # a slate and an error
    assert [e.topic for e in again] == ["t.dlq"]  # the malformed one is still dead-lettered
    assert handler.already_answered == 2


@pytest.mark.timeout(60)
async def test_a_batch_is_ranked_together_each_request_from_its_own_candidates(
    tmp_path: Path,
) -> None:
    """Many requests of several arms in one batch (ranked per arm in one call): every answer
    is its own user's arm, k distinct items from its own candidates, exclusions kept; one
    with no candidate left gets an error answer and the others are not disturbed."""
    store = MemoryFeatureStore()
    await catalogue(store)
    registry, _ = publish_catalogue_model(tmp_path)
    arms = {"in-slate-ts": 1.0, "ts": 1.0, "greedy": 1.0}
    svc = service(store, SnapshotWatcher(registry), arms=arms)
    reqs = []
    for j in range(30):
        user = f"bu{j}"
        if j % 3 == 0:
            filt = {"categories": ["books"]}
            reqs.append(request(f"b{j}", user, k=4, candidate_filter=filt))
        else:
            reqs.append(request(f"b{j}", user, k=3 + j % 5, exclusions=[item_id("a", j)]))
    reqs.append(request("none", "bu-x", k=3, candidate_filter={"categories": ["games"]}))
    served = await svc.recommend_many(reqs)
    assert svc.model_version == "v1"
    assert [s.recommendation.request_id for s in served] == [r.request_id for r in reqs]
    assert len({s.arm for s in served[:-1]}) == 3
    for req, s in zip(reqs[:-1], served[:-1], strict=True):
        rec = s.recommendation
        assert rec.error is None and rec.policy == arm_for(req.user_id, arms)
        assert len(rec.slate) == req.k == len(set(rec.slate)) == len(rec.propensities)
        assert not set(rec.slate) & set(req.exclusions)
        if req.candidate_filter is not None:
            assert all(i.startswith("c") for i in rec.slate)  # books only
    last = served[-1].recommendation
    assert last.slate == [] and last.error == "no_candidates"


def test_blended_draws_of_a_batch_must_share_one_model() -> None:
    svc = ScorerService(StoreView(MemoryFeatureStore()), None, ScorerConfig())
    model = BayesGRUModel(GRUConfig(dim=4, hidden=4))
    model.admit("x", None)
    rng = np.random.default_rng(0)
    asks = [(("x",), {"model": model, "user_state": np.zeros(4, np.float32)}), (("x",), {})]
    with pytest.raises(ValueError, match="share one model"):
        svc.posterior.sample_scores_many(asks, 2, rng)
    out = svc.posterior.sample_scores_many([(("x", "y"), None), (("z",), None)], 3, rng)
    assert out.shape == (2, 3, 2) and out[1, :, 1].tolist() == [-np.inf] * 3
    assert np.isfinite(out[0]).all() and np.isfinite(out[1, :, 0]).all()


def test_the_model_top_n_per_user_is_the_n_best_scores_and_never_nan() -> None:
    """The model's candidates of each user: the columns of its n largest scores, whichever
    way they are found; a NaN score (a diverged model) is never among them."""
    from streams.services.scorer_service import _top_columns

    rng = np.random.default_rng(3)
    scores = rng.standard_normal((5, 300)).astype(np.float32)
    scores[1, :7] = np.nan
    scores[2, 10:20] = -np.inf
    got = _top_columns(scores, 25)
    assert got.shape == (5, 25)
    for row, cols in zip(scores, got, strict=True):
        finite = np.where(np.isnan(row), -np.inf, row)
        assert set(cols.tolist()) == set(np.argsort(-finite, kind="stable")[:25].tolist())
    assert not np.isnan(scores[1, got[1]]).any()
    everything = _top_columns(scores[:, :30], 30)
    assert all(sorted(r.tolist()) == list(range(30)) for r in everything)
