"""Ranking metrics on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.metrics import hit_at_k, mrr_at_k, ndcg_at_k, summarize, target_ranks

pytestmark = pytest.mark.timeout(10)


def test_target_ranks_and_ties_are_pessimistic() -> None:
    scores = np.array([[0.1, 0.9, 0.5], [1.0, 1.0, 1.0], [3.0, 2.0, 1.0]])
    ranks = target_ranks(scores, np.array([2, 0, 0]))
    assert ranks.tolist() == [1, 2, 0]


def test_metric_values() -> None:
    ranks = np.array([0, 1, 9, 10, 50])
    assert hit_at_k(ranks, 10) == pytest.approx(3 / 5)
    expected_ndcg = (1 + 1 / math.log2(3) + 1 / math.log2(11)) / 5
    assert ndcg_at_k(ranks, 10) == pytest.approx(expected_ndcg)
    assert mrr_at_k(ranks, 10) == pytest.approx((1 + 0.5 + 0.1) / 5)
    out = summarize(ranks, ks=(1, 10))
    assert out["hit@1"] == 0.2 and out["mrr@10"] == 0.32


def test_bad_shapes_rejected() -> None:
    with pytest.raises(ValueError):
        target_ranks(np.zeros(3), np.zeros(3, np.int64))
    with pytest.raises(ValueError):
        target_ranks(np.zeros((2, 3)), np.zeros(3, np.int64))
    assert hit_at_k(np.array([]), 10) == 0.0
