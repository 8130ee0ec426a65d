"""Evaluation protocols on tiny synthetic interaction data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from models.datasets import InteractionData
from models.evaluation import _windows, loo_split, run_loo, run_prequential

pytestmark = pytest.mark.timeout(30)


def _data(n_users: int = 12, length: int = 10) -> InteractionData:
    """Users walk a cycle of 8 items; item 'hot' is popular noise."""
    users, items, stamps = [], [], []
    for u in range(n_users):
        for t in range(length):
            users.append(str(u))
            items.append(str((u + t) % 8))
            stamps.append(1000 * t + u)
    cats = {str(i): f"c/{i % 2}" for i in range(8)}
    return InteractionData(
        "tiny",
        np.asarray(users),
        np.asarray(items),
        np.ones(len(users), np.float32),
        np.asarray(stamps, np.int64),
        cats,
    )


def test_loo_split_holds_out_last_two_in_time_order() -> None:
    split = loo_split(_data())
    assert split.users[0] == "0"
    assert split.train[0] == [str(t % 8) for t in range(8)]
    assert split.valid[0] == "0" and split.test[0] == "1"
    assert len(split.train_events) == 12 * 8
    stamps = [t for t, _, _ in split.train_events]
    assert stamps == sorted(stamps)


def test_windows_cover_every_target_once() -> None:
    seq = np.arange(1, 131)
    wins = _windows([seq], max_len=50, stride=25)
    targets = [int(t) for w, st in wins for t in w[st:]]
    assert targets == list(range(2, 131))
    assert all(len(w) <= 51 for w, _ in wins)
    assert all(st >= 26 for _, st in wins[1:])  # later targets keep >= 25 items of context


@pytest.mark.parametrize("one_pass", [False, True])
def test_gru_loo_beats_popularity_on_a_learnable_pattern(one_pass: bool) -> None:
    data = _data()
    kw: dict[str, Any] = {"dim": 16, "hidden": 32, "lr": 0.02, "dropout": 0.0}
    gru = run_loo(
        "gru",
        data,
        epochs=40,
        patience=40,
        one_pass=one_pass,
        trainer_step_every_events=4,
        trainer_batch_users=12,
        **kw,
    )
    pop = run_loo("pop", data)
    assert gru["test"]["hit@10"] == 1.0  # 8 items: everything is in the top 10
    assert gru["test"]["mrr@10"] > pop["test"]["mrr@10"]
    assert gru["protocol"] == "loo" and gru["n_users"] == 12


def test_exclude_seen_flag_changes_candidate_set() -> None:
    res = run_loo("pop", _data(), exclude_seen=True)
    assert res["exclude_seen"] is True
    assert res["test"]["hit@10"] == 1.0


def test_prequential_series_and_learning() -> None:
    data = _data(n_users=12, length=20)
    kw: dict[str, Any] = {"dim": 16, "hidden": 32, "lr": 0.02, "dropout": 0.0}
    res = run_prequential("gru", data, bucket=60, chunk=8, **kw)
    assert res["n_events"] == 240 and len(res["series"]) == 4
    assert res["series"][-1]["mrr@10"] > res["series"][0]["mrr@10"]
    pop = run_prequential("pop", data, bucket=60)
    assert pop["overall"]["hit@10"] == 1.0  # only 8 items
    mf = run_prequential("river-mf", data, bucket=120, chunk=8)
    assert len(mf["series"]) == 2


def test_pop_loo_learns_counts_from_every_training_event() -> None:
    data = _data(n_users=12, length=10)
    extra_users = [str(u) for u in range(12)] * 3
    extra_ts = [-2] * 12 + [-1] * 12 + [10**6] * 12  # two early 'hot' events and a last one
    users = np.concatenate([data.users, np.asarray(extra_users)])
    items = np.concatenate([data.items, np.asarray(["hot"] * 36)])
    stamps = np.concatenate([data.timestamps, np.asarray(extra_ts, np.int64)])
    hot = InteractionData("hot", users, items, np.ones(items.size, np.float32), stamps)
    split = loo_split(hot)
    assert all(t[:2] == ["hot", "hot"] for t in split.train) and set(split.test) == {"hot"}
    res = run_loo("pop", hot)
    assert res["test"]["mrr@10"] == 1.0  # 24 training counts put 'hot' first for everyone
