"""GRU and Bayesian GRU: learning, cold start via the group prior, growth, slate likelihood."""

from __future__ import annotations

import numpy as np
import pytest

from models.base import SlateFeedback, TrainingBatch
from models.gru import BayesGRUModel, GRUConfig, GRUModel

pytestmark = pytest.mark.timeout(30)

CATS = {f"a{i}": "shop/a" for i in range(8)} | {f"b{i}": "shop/b" for i in range(8)}


def _cycle_sequences() -> list[list[str]]:
    """Users who stay inside one category and walk it in a fixed cycle."""
    seqs = []
    for u in range(16):
        cat = "a" if u % 2 == 0 else "b"
        seqs.append([f"{cat}{(u + t) % 8}" for t in range(12)])
    return seqs


def _train(model: GRUModel, steps: int = 150) -> list[float]:
    seqs = _cycle_sequences()
    losses = []
    for _ in range(steps):
        losses.append(model.learn(TrainingBatch.from_ids(model.items, seqs, categories=CATS)))
    return losses


def _cfg(**kw: object) -> GRUConfig:
    base: dict[str, object] = {
        "dim": 16,
        "hidden": 32,
        "lr": 0.02,
        "dropout": 0.0,
        "capacity": 4,
        "seed": 1,
    }
    base.update(kw)
    return GRUConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [GRUModel, BayesGRUModel])
def test_learns_a_deterministic_cycle(cls: type[GRUModel]) -> None:
    model = cls(_cfg())
    losses = _train(model)
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    state = model.user_state(["a2", "a3", "a4", "a5"])  # a prefix seen in training
    assert model.rank(state, 1) == ["a6"]
    assert model.net.offset.shape[0] >= 17  # table grew from capacity 4 without restart


@pytest.mark.parametrize("scoring", ["dot", "l2"])
def test_new_item_with_known_category_is_scorable_and_ranked_before_any_click(
    scoring: str,
) -> None:
    model = GRUModel(_cfg(scoring=scoring))
    _train(model)
    state = model.user_state(["a1", "a2", "a3"])
    model.admit("a_new", "shop/a")  # as published on the items topic: no click yet
    model.admit("c_new", "other/c")  # unknown group: only its (untrained) group vector
    scores = model.score(state, ["a_new", "c_new", "b0", "never-published"])
    assert np.isfinite(scores[:3]).all()
    assert scores[3] == -np.inf
    b_scores = model.score(state, [f"b{i}" for i in range(8)])
    if scoring == "dot":  # pulled to its group's mean: above every item of the other group
        assert scores[0] > b_scores.max()
    else:  # at the group mean, closer than the typical item of the other group
        assert scores[0] > np.median(b_scores)
    assert "a_new" in model.rank(state, 10)


def test_scores_align_with_candidates_and_rows() -> None:
    model = GRUModel(_cfg())
    _train(model, 20)
    state = model.user_state(["a1"])
    ids = ["b3", "a1", "a7"]
    by_id = model.score(state, ids)
    by_row = model.score(state, model.items.rows(ids))
    np.testing.assert_allclose(by_id, by_row)
    everything = model.score(state)
    assert everything.shape == (len(model.items),)
    np.testing.assert_allclose(everything[model.items.rows(ids) - 1], by_id, rtol=1e-5)


@pytest.mark.parametrize("cls", [GRUModel, BayesGRUModel])
def test_batched_user_states_equal_torch_gru_per_user(cls: type[GRUModel]) -> None:
    """The numpy inference path gives torch.nn.GRU's last hidden state, for a batch of mixed
    lengths (empty, unknown items, longer than max_len) in any order."""
    import torch

    model = cls(_cfg(max_len=6))
    _train(model, 20)
    seqs = [
        ["a1", "a2", "a3"],
        [],
        [f"b{i % 8}" for i in range(11)],  # longer than max_len: its last 6
        ["a5"],
        ["zzz", "b2"],  # an unknown item is row 0
        ["b1", "a1", "b2", "a2", "b3", "a3"],
    ]
    got = model.user_states_rows([model.user_rows(s) for s in seqs])
    table = torch.from_numpy(model._np()["M"])
    for i, seq in enumerate(seqs):
        rows = model.user_rows(seq)[-6:]
        if rows.size == 0:
            np.testing.assert_array_equal(got[i], 0.0)
            continue
        with torch.no_grad():
            want = model._encode(torch.from_numpy(rows[None]), table, train=False)[0, -1]
        np.testing.assert_allclose(got[i], want.numpy(), atol=1e-6, rtol=1e-5)


def test_empty_and_unknown_history_gives_finite_scores() -> None:
    model = GRUModel(_cfg())
    _train(model, 5)
    for hist in ([], ["zzz"]):
        assert np.isfinite(model.score(model.user_state(hist))).all()


def test_slate_likelihood_learns_no_click_and_clicked_position() -> None:
    model = GRUModel(_cfg())
    for i in range(6):
        model.admit(f"s{i}", "shop/s")
    fb = [
        SlateFeedback("u", ["s0", "s1", "s2"], [2], history=["s4"]),
        SlateFeedback("v", ["s3", "s4", "s5"], [], history=["s0"]),
    ]
    batch = TrainingBatch.from_ids(model.items, feedback=fb)
    first = model.learn(batch)
    for _ in range(100):
        last = model.learn(batch)
    assert last < 0.2 * first
    p_u = model.slate_probabilities(model.user_state(["s4"]), ["s0", "s1", "s2"])
    p_v = model.slate_probabilities(model.user_state(["s0"]), ["s3", "s4", "s5"])
    assert p_u.shape == (4,) and abs(p_u.sum() - 1) < 1e-6
    assert p_u[3] > 0.8  # clicked position 2 (index 0 is "no click")
    assert p_v[0] > 0.8  # no click on the other slate


def test_sampled_softmax_trains() -> None:
    model = GRUModel(_cfg(n_negatives=5))
    losses = _train(model, 80)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_full_softmax_below_a_catalogue_size_then_sampled() -> None:
    """16 items: under the threshold the sampled model learns exactly as the full-softmax one;
    over it (threshold 8) it samples, so its parameters differ."""
    full = GRUModel(_cfg())
    below = GRUModel(_cfg(n_negatives=5, full_softmax_below=16))
    above = GRUModel(_cfg(n_negatives=5, full_softmax_below=8))
    for m in (full, below, above):
        _train(m, 3)
    s_full, s_below, s_above = (m.score(m.user_state(["a0", "a1"])) for m in (full, below, above))
    np.testing.assert_allclose(s_below, s_full, rtol=1e-5, atol=1e-6)
    assert not np.allclose(s_above, s_full, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="full_softmax_below"):
        GRUConfig(full_softmax_below=-1).validate()


def test_eviction_resets_row_to_group_mean() -> None:
    from models.items import ItemIndex

    model = GRUModel(_cfg(), items=ItemIndex(max_items=16))
    _train(model, 20)
    model.admit("fresh", "shop/a")  # evicts the least recently used item, reuses its row
    row = model.items.row("fresh")
    assert row is not None and len(model.items) == 16
    model.score(model.user_state([]), ["fresh"])  # the tables catch up at the next use
    assert float(model.net.offset[row].detach().norm()) < 16 * model.config.init_std  # ~ group mean


def test_admitting_a_catalogue_refreshes_the_tables_once_at_the_next_use() -> None:
    """Item by item, a refresh per admission made a catalogue O(n²) (12 s for 20k items)."""
    model = GRUModel(_cfg())
    refreshes = 0
    refresh = model._sync_items

    def counting() -> None:
        nonlocal refreshes
        before = model._version
        refresh()
        refreshes += model._version != before

    model._sync_items = counting  # type: ignore[method-assign]
    for i in range(500):
        model.admit(f"c{i}", f"shop/c{i % 5}")
    assert refreshes == 0
    scores = model.score(model.user_state(["c1", "c2"]), [f"c{i}" for i in range(500)])
    assert refreshes == 1 and np.isfinite(scores).all()
    assert len(model.all_rows()) == 500 and refreshes == 1


def test_bayes_sample_scores_shape_spread_and_mean() -> None:
    model = BayesGRUModel(_cfg(prior_std=0.5))
    _train(model, 100)
    model.admit("a_new", "shop/a")
    state = model.user_state(["a1", "a2"])
    cands = ["a3", "a_new", "b1"]
    samples = model.sample_scores(state, cands, 2000, np.random.default_rng(0))
    assert samples.shape == (2000, 3) and np.isfinite(samples).all()
    spread = samples.std(0)
    assert spread[1] > spread[0]  # untouched new item keeps prior uncertainty
    np.testing.assert_allclose(
        samples.mean(0), model.score(state, cands), atol=4 * spread.max() / 40
    )
    again = model.sample_scores(state, cands, 5, 123)
    np.testing.assert_array_equal(again, model.sample_scores(state, cands, 5, 123))


def test_point_model_samples_are_degenerate() -> None:
    model = GRUModel(_cfg())
    _train(model, 5)
    state = model.user_state(["a1"])
    samples = model.sample_scores(state, ["a1", "b1"], 3, 0)
    assert samples.shape == (3, 2)
    assert np.allclose(samples, samples[0])


def test_invalid_config_rejected() -> None:
    for bad in ({"scoring": "cosine"}, {"dim": 0}, {"dropout": 1.0}, {"lr": 0}):
        with pytest.raises(ValueError):
            GRUModel(_cfg(**bad))


def test_restore_after_many_categories() -> None:
    model = GRUModel(_cfg())
    for i in range(150):  # group table grows past its initial 64 rows
        model.admit(f"x{i}", f"g{i}/s{i % 3}")
    model.learn(TrainingBatch.from_ids(model.items, [["x1", "x2", "x3"]]))
    restored = GRUModel.from_state(*model.state())
    state = model.user_state(["x1", "x2"])
    np.testing.assert_allclose(
        restored.score(restored.user_state(["x1", "x2"])), model.score(state)
    )
    restored.admit("later", "g999/z")
    restored.learn(TrainingBatch.from_ids(restored.items, [["x1", "later"]]))
