"""Unusual but possible records through the stream handlers (memory store, MemoryLog):
nothing escapes `handle()`, invalid input is dead-lettered once, valid input is applied."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bandits.base import Feedback as PolicyFeedback
from bandits.posteriors import BetaBernoulliPosterior
from features import MemoryJoinState
from features.base import ItemUpdate
from features.memory import MemoryFeatureStore
from models.gru import GRUConfig, GRUModel
from models.online_trainer import OnlineTrainer, TrainerConfig
from models.registry import ModelRegistry
from streams import schemas
from streams.config import Settings
from streams.handlers.ingest import FeatureHandler, JoinerHandler
from streams.handlers.scorer import ScorerHandler
from streams.handlers.trainer import TrainerHandler
from streams.runtime import MemoryLog, drain
from streams.services.joiner_service import JoinerConfig
from streams.services.scorer_service import ScorerConfig, ScorerService
from streams.services.store_view import StoreView
from streams.services.trainer_service import TrainerService
from streams.topics import topic_name

NOW = int(time.time() * 1000)
S = Settings(topic_prefix="odd", attribution_window_ms=60_000)


def t(kind: str) -> str:
    return topic_name(S, kind)


def event(kind: str, **kw: Any) -> bytes:
    """The contract's example event of `kind`, recent, with fields replaced by `kw`."""
    d = schemas.example(kind)
    d["ts"] = NOW - 120_000
    d.update(kw)
    return json.dumps(d).encode()


def on(log: MemoryLog, topic: str) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in log.topics[t(topic)]]


async def scorer(n_items: int = 6) -> ScorerHandler:
    store = MemoryFeatureStore()
    await store.apply_many(
        [ItemUpdate(f"it{i}", f"i{i}", NOW - 5000, ("movies",)) for i in range(n_items)]
    )
    cfg = ScorerConfig(reload_interval_s=0.0, reload_in_background=False)
    return ScorerHandler(S, ScorerService(StoreView(store), None, cfg))


@pytest.mark.timeout(30)
async def test_longest_valid_request_id_is_answered_not_a_crash() -> None:
    """rec-/imp- + a 256-character request id was over the id limit: the scorer raised."""
    handler = await scorer()
    log = MemoryLog()
    rid = "r" * 256
    log.publish(t("requests"), event("request", request_id=rid), b"u42")
    log.publish(t("requests"), event("request", request_id="x" * 300, k=0), b"u42")  # invalid
    await drain(log, handler)
    recs = on(log, "recommendations")
    assert [r["request_id"] for r in recs] == [rid] and recs[0]["slate"]
    assert len(recs[0]["event_id"]) <= 256 and recs[0]["event_id"].startswith("rec-rrr")
    imps = [schemas.Impression.model_validate_json(r.value) for r in log.topics[t("impressions")]]
    assert [i.request_id for i in imps] == [rid]
    # the invalid request (its id too long to answer) is dead-lettered once
    assert [d["reason"] for d in on(log, "dlq")] == ["invalid_value"]


@pytest.mark.timeout(30)
async def test_joiner_feedback_ids_stay_valid_for_the_longest_ids() -> None:
    """fb-<request_id>-late-<click event_id> over 256 characters: the joiner raised."""
    handler = JoinerHandler(
        S, state=MemoryJoinState(), config=JoinerConfig(window_ms=60_000, idle_flush_ms=10**9)
    )
    rid, eid = "r" * 256, "e" * 256
    log = MemoryLog()
    log.publish(t("impressions"), event("impression", request_id=rid, ts=NOW - 300_000), b"u42")
    click = dict(schemas.example("interaction"), request_id=rid, event_id=eid, item_id="i3")
    log.publish(t("interactions"), json.dumps(dict(click, ts=NOW - 200_000)).encode(), b"u42")
    await drain(log, handler)
    fbs = [schemas.Feedback.model_validate_json(r.value) for r in log.topics[t("feedback")]]
    assert sorted(f.late for f in fbs) == [False, True]
    assert len({f.event_id for f in fbs}) == 2 and all(len(f.event_id) <= 256 for f in fbs)
    assert schemas.derived_id("fb-", rid) == schemas.derived_id("fb-", rid)  # redelivery-stable


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "change",
    [
        {
            "clicks": [
                {"position": 5, "item_id": "i7", "type": "click", "delay_ms": 5, "event_id": "c"}
            ]
        },
        {
            "clicks": [
                {"position": 0, "item_id": "i7", "type": "click", "delay_ms": 5, "event_id": "c"}
            ]
        },
        {"slate": [], "propensities": [], "clicks": []},
        {"propensities": [0.5, float("nan"), 0.5]},
        {"propensities": [0.5]},
    ],
    ids=["position-out-of-range", "item-not-at-position", "empty-slate", "nan-propensity", "short"],
)
async def test_inconsistent_feedback_is_dead_lettered_by_the_scorer_and_learns_nothing(
    change: dict[str, Any],
) -> None:
    """Feedback whose clicks or propensities do not fit its slate was taken silently."""
    handler = await scorer()
    log = MemoryLog()
    log.publish(t("feedback"), event("feedback", **change), b"u42")
    log.publish(t("feedback"), event("feedback", request_id="r-ok"), b"u42")  # valid
    await drain(log, handler)
    dead = on(log, "dlq")
    assert len(dead) == 1 and dead[0]["reason"] == "invalid_value" and dead[0]["offset"] == 0
    assert not dead[0]["detail"].startswith(":")
    # only the valid record taught the CTR posterior: i7 was clicked once
    post = handler.service.posterior.ctr
    assert post.mean_scores(["i7"], {})[0] > post.mean_scores(["i3"], {})[0]
    # a one-item slate with its click is valid
    one = {"slate": ["i3"], "propensities": [1.0]}
    one["clicks"] = [
        {"position": 0, "item_id": "i3", "type": "click", "delay_ms": 1, "event_id": "c"}
    ]
    log.publish(t("feedback"), event("feedback", request_id="r-one", **one), b"u42")
    await drain(log, handler)
    assert len(on(log, "dlq")) == 1


def _feedback(eid: str, *, late: bool = False, clicked: bool = True) -> bytes:
    fb = schemas.example("feedback")
    fb.update(event_id=eid, ts=NOW - 1000, served_at=NOW - 60_000, late=late)
    if not clicked:
        fb["clicks"] = []
    return json.dumps(fb).encode()


@pytest.mark.timeout(60)
async def test_redelivered_and_late_feedback_count_each_slate_once(tmp_path: Path) -> None:
    """The joiner re-emits feedback with the same event_id after a crash, and a late click
    comes as a second record of an already counted slate: both were learned again."""
    handler = await scorer()
    trainer = TrainerService(
        OnlineTrainer(GRUModel(GRUConfig(dim=8, hidden=8)), TrainerConfig(step_every_events=10**6)),
        ModelRegistry(tmp_path / "reg"),
    )
    th = TrainerHandler(S, trainer)
    log = MemoryLog()
    log.publish(t("feedback"), _feedback("fb-r-9", clicked=False), b"u42")  # on time
    log.publish(t("feedback"), _feedback("fb-r-9", clicked=False), b"u42")  # redelivered
    log.publish(t("feedback"), _feedback("fb-r-9-late-e-1", late=True), b"u42")
    click = dict(schemas.example("interaction"), ts=NOW - 2000)
    for _ in range(2):  # an interaction redelivered
        log.publish(t("interactions"), json.dumps(click).encode(), b"u42")
    await drain(log, handler)
    await drain(log, th)
    ctr = handler.service.posterior.ctr
    once = BetaBernoulliPosterior(temperature=ctr.temperature)
    once.update(PolicyFeedback(slate=("i3", "i9", "i7"), clicks=(), user_id="u42"))
    assert ctr.mean_scores(["i3", "i7"], {}) == pytest.approx(once.mean_scores(["i3", "i7"], {}))
    assert handler.service.feedback_skipped == {"duplicate": 1, "late": 1}
    st = trainer.stats
    assert (st.feedback, st.duplicates, st.late_feedback, st.interactions) == (1, 2, 1, 1)
    assert not on(log, "dlq")  # valid records: skipped, not dead-lettered


@pytest.mark.timeout(30)
async def test_slash_in_a_category_segment_and_empty_values_are_dead_lettered_with_a_reason() -> (
    None
):
    """["a/b", "c"] was stored as the path a/b/c without the prefix "a"; a tombstone (the
    Kafka driver hands it over as b"") was reported as malformed JSON."""
    store = MemoryFeatureStore()
    handler = FeatureHandler(S, store)
    log = MemoryLog()
    log.publish(t("items"), event("item", item_id="x", category_path=["a/b", "c"]), b"x")
    log.publish(t("items"), event("item", item_id="y", category_path=["a", "b"]), b"y")
    log.publish(t("items"), b"", b"z")
    log.publish(t("interactions"), b"", b"u42")
    await drain(log, handler)
    assert [d["reason"] for d in on(log, "dlq")] == ["invalid_value", "empty_value", "empty_value"]
    assert await store.categories(["x", "y"]) == {"y": "a/b"}
