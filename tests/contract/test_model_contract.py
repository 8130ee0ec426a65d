"""One contract suite run over every model implementation (River-style estimator checks)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from models.base import OnlineModel, SlateFeedback, TrainingBatch
from models.baselines import PopularityModel
from models.gru import BayesGRUModel, GRUConfig, GRUModel
from models.registry import MODEL_KINDS, ModelRegistry
from models.river_models import RiverFMModel, RiverLogRegModel

pytestmark = pytest.mark.timeout(20)

_SMALL = {"dim": 8, "hidden": 16, "capacity": 4, "lr": 0.02, "dropout": 0.0}
FACTORIES: dict[str, Callable[[], OnlineModel]] = {
    "gru": lambda: GRUModel(GRUConfig(**_SMALL)),  # type: ignore[arg-type]
    "gru-l2-sampled": lambda: GRUModel(GRUConfig(scoring="l2", n_negatives=3, **_SMALL)),  # type: ignore[arg-type]
    "bayes-gru": lambda: BayesGRUModel(GRUConfig(**_SMALL)),  # type: ignore[arg-type]
    "pop": PopularityModel,
    "river-lr": RiverLogRegModel,
    "river-mf": RiverFMModel,
}
CATS = {f"i{k}": f"top/{k % 3}" for k in range(12)}


@pytest.fixture(params=sorted(FACTORIES))
def model(request: pytest.FixtureRequest) -> OnlineModel:
    torch.set_num_threads(1)
    return FACTORIES[request.param]()


def _batch(model: OnlineModel) -> TrainingBatch:
    seqs = [[f"i{(u + t) % 12}" for t in range(6)] for u in range(6)]
    fb = [SlateFeedback("u0", ["i1", "i2", "i3"], [0], history=["i0"])]
    return TrainingBatch.from_ids(
        model.items, seqs, users=[f"u{u}" for u in range(6)], feedback=fb, categories=CATS
    )


def test_kind_is_registered(model: OnlineModel) -> None:
    assert MODEL_KINDS[model.kind] is type(model)


def test_learn_returns_finite_loss_and_counts_events(model: OnlineModel) -> None:
    batch = _batch(model)
    loss = model.learn(batch)
    assert np.isfinite(loss)
    assert model.events_seen == batch.n_targets
    assert model.learn(TrainingBatch()) == 0.0
    with pytest.raises(TypeError):
        model.learn([["i1", "i2"]])  # type: ignore[arg-type]


def test_scores_are_aligned_finite_and_unknown_is_minus_inf(model: OnlineModel) -> None:
    for _ in range(3):
        model.learn(_batch(model))
    state = model.user_state(["i1", "i2"], "u1")
    cands = ["i3", "nope", "i0"]
    s = model.score(state, cands)
    assert s.shape == (3,) and s.dtype == np.float32
    assert np.isfinite(s[[0, 2]]).all() and s[1] == -np.inf
    assert model.score(state).shape == (len(model.items),)
    assert model.score(state, []).shape == (0,)


def test_new_item_scorable_before_any_click(model: OnlineModel) -> None:
    model.learn(_batch(model))
    model.admit("fresh", "top/1")
    state = model.user_state(["i1"], "u1")
    assert np.isfinite(model.score(state, ["fresh"])).all()
    assert "fresh" in model.rank(state, len(model.items))


def test_sample_scores_shape_and_seeding(model: OnlineModel) -> None:
    model.learn(_batch(model))
    state = model.user_state(["i1"], "u1")
    a = model.sample_scores(state, ["i1", "i2", "nope"], 4, 7)
    b = model.sample_scores(state, ["i1", "i2", "nope"], 4, np.random.default_rng(7))
    assert a.shape == (4, 3)
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a[:, :2]).all() and (a[:, 2] == -np.inf).all()
    with pytest.raises(ValueError):
        model.sample_scores(state, ["i1"], 0)


def test_sample_scores_many_draws_each_user_as_sample_scores(model: OnlineModel) -> None:
    """The batched draw of a scorer's batch: one user alone is `sample_scores` itself; users
    with lists of different lengths get their own posterior, -inf past their list's end."""
    for _ in range(3):
        model.learn(_batch(model))
    users = [model.user_state(["i1", "i2"], "u1"), model.user_state(["i7"], "u2")]
    lists = [["i3", "nope", "i0"], ["i5", "i9"]]
    one = model.sample_scores_many(users[:1], lists[:1], 4, np.random.default_rng(3))
    np.testing.assert_array_equal(one[0], model.sample_scores(users[0], lists[0], 4, 3))
    n = 4000
    many = model.sample_scores_many(users, lists, n, np.random.default_rng(5))
    assert many.shape == (2, n, 3) and many.dtype == np.float32
    assert (many[0, :, 1] == -np.inf).all() and (many[1, :, 2] == -np.inf).all()
    for b in range(2):
        got = many[b, :, : len(lists[b])]
        ref = model.sample_scores(users[b], lists[b], n, 6)
        known = np.isfinite(ref[0])
        assert np.isfinite(got[:, known]).all() and (got[:, ~known] == -np.inf).all()
        se = np.sqrt(got[:, known].var(0) + ref[:, known].var(0)) / np.sqrt(n)
        assert np.all(np.abs(got[:, known].mean(0) - ref[:, known].mean(0)) <= 5 * se + 1e-5)
        np.testing.assert_allclose(got[:, known].std(0), ref[:, known].std(0), rtol=0.1, atol=1e-5)
    with pytest.raises(ValueError):
        model.sample_scores_many(users, lists[:1], 4, np.random.default_rng(0))


def test_rank_respects_k_and_exclusions(model: OnlineModel) -> None:
    model.learn(_batch(model))
    state = model.user_state(["i1"], "u1")
    top = model.rank(state, 3, exclude=["i2"])
    assert len(top) == 3 and "i2" not in top and len(set(top)) == 3


def test_snapshot_round_trip_through_registry(model: OnlineModel, tmp_path: Path) -> None:
    for _ in range(2):
        model.learn(_batch(model))
    model.last_event_ts = 99
    reg = ModelRegistry(tmp_path)
    restored = reg.load(reg.publish(model))
    assert type(restored) is type(model)
    assert restored.events_seen == model.events_seen and restored.last_event_ts == 99
    state_a = model.user_state(["i1", "i4"], "u2")
    state_b = restored.user_state(["i1", "i4"], "u2")
    np.testing.assert_allclose(restored.score(state_b), model.score(state_a), rtol=1e-5, atol=1e-6)
    restored.learn(_batch(restored))  # a restored model keeps learning
    restored.admit("after-restore", "top/2")
    assert np.isfinite(restored.score(state_b, ["after-restore"])).all()
