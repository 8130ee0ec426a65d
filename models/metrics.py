"""Ranking metrics for one held-out target per query: HR@K, NDCG@K, MRR@K.

Ranks are 0-based and pessimistic on ties (a target tied with other items is ranked
after all of them), so constant scorers cannot look good by accident.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of column `targets[i]` in row `scores[i]` (pessimistic on ties)."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError("scores must be (n_queries, n_items)")
    targets = np.asarray(targets, np.int64)
    if targets.shape != (scores.shape[0],):
        raise ValueError("targets must have one column index per row")
    t = scores[np.arange(scores.shape[0]), targets][:, None]
    return (scores > t).sum(1) + (scores == t).sum(1) - 1


def hit_at_k(ranks: np.ndarray, k: int) -> float:
    """Fraction of queries whose target is in the top k."""
    r = np.asarray(ranks)
    return float((r < k).mean()) if r.size else 0.0


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@k with a single relevant item: 1/log2(rank+2) inside the top k."""
    r = np.asarray(ranks, np.float64)
    if not r.size:
        return 0.0
    return float(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0).mean())


def mrr_at_k(ranks: np.ndarray, k: int) -> float:
    """Mean reciprocal rank, zero outside the top k."""
    r = np.asarray(ranks, np.float64)
    if not r.size:
        return 0.0
    return float(np.where(r < k, 1.0 / (r + 1.0), 0.0).mean())


def summarize(ranks: np.ndarray, ks: Iterable[int] = (10,)) -> dict[str, float]:
    """{"hit@k", "ndcg@k", "mrr@k"} for each k, rounded to 4 decimals."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"hit@{k}"] = round(hit_at_k(ranks, k), 4)
        out[f"ndcg@{k}"] = round(ndcg_at_k(ranks, k), 4)
        out[f"mrr@{k}"] = round(mrr_at_k(ranks, k), 4)
    return out
