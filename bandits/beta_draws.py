"""Exact Beta draws without numpy's per-element-parameter Beta sampler where alpha is a small
integer (a Beta-Bernoulli posterior with an integer prior and no discounting): dense draws, the
closed-form tail P(X > t), and sampling only the draws that exceed t (any small alpha)."""

# For integer a, 1 - X ~ Beta(b, a) is a product of independent Beta(b + l, 1) = U^(1/(b + l)),
# l < a, so X = -expm1(-sum_l E_l / (b + l)) with E_l ~ Exp(1); and P(X > t) =
# (1 - t)^b * sum_{j<a} (b)_j t^j / j!. Given X > t, X = t + (1 - t) * Beta(a - j, b + j) with
# j drawn with weight (b)_j t^j / j! (those few draws use numpy's Beta sampler).

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "DENSE_INT_ALPHA",
    "MIN_EXP_SUM_DRAWS",
    "TAIL_INT_ALPHA",
    "beta_rows",
    "beta_tail_sf",
    "exceedances",
    "int_alpha",
]

MIN_EXP_SUM_DRAWS = 5000  # fewer: the few numpy calls per alpha level cost more than they save
DENSE_INT_ALPHA = 4  # a exponentials per draw cost about numpy's one Beta draw at a = 5
TAIL_INT_ALPHA = 32  # exceedances: ceil(alpha) at most this (the tail series costs O(alpha))


def int_alpha(a: np.ndarray, limit: int) -> np.ndarray:
    """Mask of the alphas that are integers in 1..limit (exponential-sum representation)."""
    return (a == np.floor(a)) & (a >= 1.0) & (a <= limit)


def _exp_sums(a: np.ndarray, b: np.ndarray, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """S = sum_{l < a_i} E_l / (b_i + l) per column i, shape (n_rows, n); a integer >= 1."""
    order = np.argsort(-a, kind="stable")  # the columns with a > l are then a prefix
    a_s, b_s = a[order], b[order]
    levels = np.arange(int(a_s[0]))
    counts = np.searchsorted(-a_s, -levels, side="left")  # how many a_s > l, per level l
    e = rng.standard_exponential((n_rows, int(counts.sum())))
    s = e[:, : a.size]
    s /= b_s
    off = a.size
    for lev in levels[1:]:
        c = int(counts[lev])
        blk = e[:, off : off + c]
        blk /= b_s[:c] + lev
        s[:, :c] += blk
        off += c
    out = np.empty_like(s)
    out[:, order] = s
    return out


def beta_rows(a: np.ndarray, b: np.ndarray, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """n_rows independent draws of Beta(a_i, b_i) per column i, shape (n_rows, n)."""
    if n_rows * len(a) < MIN_EXP_SUM_DRAWS:
        return rng.beta(a, b, size=(n_rows, len(a)))
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    fast = int_alpha(a, DENSE_INT_ALPHA)
    n_fast = int(np.count_nonzero(fast))
    if n_rows * n_fast < MIN_EXP_SUM_DRAWS:
        return rng.beta(a, b, size=(n_rows, a.size))
    if n_fast == a.size:
        return -np.expm1(-_exp_sums(a, b, n_rows, rng))
    out = np.empty((n_rows, a.size))
    out[:, fast] = -np.expm1(-_exp_sums(a[fast], b[fast], n_rows, rng))
    slow = ~fast
    out[:, slow] = rng.beta(a[slow], b[slow], size=(n_rows, a.size - n_fast))
    return out


def _tail_terms(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """(b)_j t^j / j! for j < a_i (zero beyond), shape (max a, n); a integer >= 1."""
    terms = np.empty((int(a.max()), a.size))
    terms[0] = 1.0
    for j in range(1, terms.shape[0]):  # (a row loop: numpy's cumprod along axis 0 is slower)
        np.multiply(b + (j - 1.0), t / j, out=terms[j])
        terms[j] *= terms[j - 1]
    return np.where(np.arange(terms.shape[0])[:, None] < a, terms, 0.0)


def _tail_sums(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """sum_{j < a_i} (b_i)_j t^j / j! per item; a integer >= 1. Items sorted by a (a radix
    sort) so that those with a > j are a prefix: the work is sum(a), not n * max(a)."""
    order = np.argsort(-np.minimum(a, 32767).astype(np.int16), kind="stable")
    a_s, b_s = a[order], b[order]
    counts = np.searchsorted(-a_s, -np.arange(int(a_s[0])), side="left")  # how many a_s > j
    r = np.ones(a.size)
    s = np.ones(a.size)
    for j in range(1, counts.size):
        c = int(counts[j])
        r_c = r[:c]
        r_c *= (b_s[:c] + (j - 1.0)) * (t / j)
        s[:c] += r_c
    out = np.empty_like(s)
    out[order] = s
    return out


def beta_tail_sf(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """P(X > t) for X ~ Beta(a_i, b_i), integer a_i, 0 <= t < 1, in closed form."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.size == 0:
        return np.empty(0)
    return np.minimum(np.exp(b * math.log1p(-t) + np.log(_tail_sums(a, b, t))), 1.0)


def exceedances(
    a: np.ndarray, b: np.ndarray, t: float, n_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of X_ri ~ Beta(a_i, b_i) independent (r < n_rows, ceil(a_i) small), exactly the draws
    above t: (row, column, value) arrays, sorted by row. Costs O(n) plus O(draws above t)."""
    # Non-integer a: Y ~ Beta(ceil(a), b) and X = B Y / (B Y + 1 - Y) with B ~ Beta(a, ceil(a)
    # - a) is Beta(a, b) (split Gamma(ceil a) = Gamma(a) + Gamma(ceil(a) - a)); X <= Y, so the
    # Y above t, thinned to X above t, are exactly the X above t.
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0))
    if a.size == 0:
        return empty
    n_a = np.ceil(a)
    log_q = b * math.log1p(-t) + np.log(_tail_sums(n_a, b, t))
    log_q1 = np.log1p(-np.minimum(np.exp(log_q), 1.0))  # log(1 - q)
    # Which columns have any draw above t (all n_rows below: prob (1 - q)^n_rows), then for
    # those the first such row (a truncated geometric, by inversion) and each later row.
    act = np.flatnonzero(rng.random(a.size) >= np.exp(n_rows * log_q1))
    if act.size == 0:
        return empty
    lq1 = log_q1[act]
    p_any = -np.expm1(n_rows * lq1)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.log1p(-rng.random(act.size) * p_any) / lq1
    first = np.clip(np.floor(g), 0, n_rows - 1).astype(np.int64)
    hits = rng.random((n_rows, act.size)) < -np.expm1(lq1)
    hits &= np.arange(n_rows)[:, None] > first
    hits[first, np.arange(act.size)] = True
    rows, hi = np.nonzero(hits)  # row-major: sorted by row
    item = act[hi]
    # Y | Y > t = t + (1 - t) * Beta(n_a - j, b + j), j with weight (b)_j t^j / j!
    cum = np.cumsum(_tail_terms(n_a[item], b[item], t), axis=0)
    j = np.count_nonzero(cum <= rng.random(item.size) * cum[-1], axis=0).astype(float)
    j = np.minimum(j, n_a[item] - 1.0)  # guard against rounding at the top
    y = t + (1.0 - t) * rng.beta(n_a[item] - j, b[item] + j)
    frac = np.flatnonzero(n_a[item] > a[item])
    if frac.size == 0:
        return rows, item, y
    by = rng.beta(a[item[frac]], n_a[item[frac]] - a[item[frac]]) * y[frac]
    y[frac] = by / (by + (1.0 - y[frac]))
    keep = y > t
    return rows[keep], item[keep], y[keep]
