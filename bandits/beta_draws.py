"""Exact Beta draws without numpy's per-element-parameter Beta sampler where alpha is a small
integer (a Beta-Bernoulli posterior with an integer prior and no discounting): dense draws, an
O(1) upper bound on the tail P(X > t), and sampling only the draws that exceed t."""

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
    "exceedances",
    "int_alpha",
    "log_tail_bound",
    "tail_bound_coefs",
]

MIN_EXP_SUM_DRAWS = 5000  # fewer: the few numpy calls per alpha level cost more than they save
DENSE_INT_ALPHA = 4  # a exponentials per draw cost about numpy's one Beta draw at a = 5
TAIL_INT_ALPHA = 128  # exceedances: ceil(alpha) at most this (O(alpha) per item that may exceed)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_BOUND_SLACK = 1e-9  # added to the log tail bound: far above its rounding error
_MAX_CELLS = 1 << 22  # exceedances: at most this many (row, item) random numbers at once
_LOG_FACT = np.array([math.lgamma(j + 1.0) for j in range(TAIL_INT_ALPHA + 1)])  # log j!


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


def tail_bound_coefs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The parts of log_tail_bound that do not depend on t, per item: shape (2, n)."""
    # P(X > t) = (1 - t)^b sum_{j<a} T_j, T_j = (b)_j t^j / j!. For b >= 1 the ratio T_j /
    # T_{j-1} = (b + j - 1) t / j falls with j, so T_j <= T_{a-1} / rho^(a-1-j) with rho =
    # T_{a-1} / T_{a-2} = c t: the sum is at most T_{a-1} sum_{m<a} rho^-m. log T_{a-1} - (a -
    # 1) log t is bounded above (row 0) with Stirling's ln G(x) = (x - 1/2) ln x - x + ln(2 pi)
    # / 2 + mu(x), 0 < mu(x) < 1 / (12 x); row 1 is log c. Where b < 1 the bound is 1 (+inf).
    am1 = a - 1.0
    out = np.empty((2, a.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log(b + am1, out=out[1])
        out[0] = (
            (b - 0.5) * np.log1p(am1 / b)  # ln G(b + a - 1) - ln G(b), bounded above
            + am1 * (out[1] - 1.0)
            + 1.0 / (12.0 * (b + am1))
            - (a - 0.5) * np.log(a)  # - ln G(a), bounded above
            + a
            - _HALF_LOG_2PI
        )
        out[0][b < 1.0] = np.inf
        out[1] = np.log((b + (am1 - 1.0)) / np.maximum(am1, 1.0))
    return out


def log_tail_bound(
    a: np.ndarray, b: np.ndarray, t: float, coefs: np.ndarray | None = None
) -> np.ndarray:
    """Upper bound on log P(X > t), X ~ Beta(a_i, b_i), integer a_i >= 1, 0 < t < 1, in O(1)
    per item (the tail series' last term times a geometric sum); a few % above it where small
    (a = 1: 8%). coefs: tail_bound_coefs(a, b), if already computed."""
    if coefs is None:
        coefs = tail_bound_coefs(a, b)
    log_t = math.log(t)
    lr = coefs[1] + log_t  # log rho
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        geo = np.expm1(lr * -a)
        geo /= np.expm1(-lr)
        np.log(geo, out=geo)  # log sum_{m<a} rho^-m (nan at rho = 1: the bound is then 1)
        geo += coefs[0]
        geo += b * math.log1p(-t)
        geo += (a - 1.0) * log_t
        geo += _BOUND_SLACK
    return np.fmin(geo, 0.0)


def _binet(x: np.ndarray) -> np.ndarray:
    """mu(x) = ln G(x) - (x - 1/2) ln x + x - ln(2 pi) / 2, x >= 1, to rounding: the asymptotic
    series from 15 on (error < 3e-16), below it mu(x) = mu(x + 1) + (x + 1/2) ln(1 + 1/x) - 1."""
    shift = np.maximum(np.ceil(15.0 - x), 0.0)
    r = 1.0 / (x + shift)
    r2 = r * r
    mu = r * (1 / 12 - r2 * (1 / 360 - r2 * (1 / 1260 - r2 * (1 / 1680 - r2 / 1188))))
    small = np.flatnonzero(shift)
    if small.size:
        xs, n_up = x[small], shift[small]
        for s in range(int(n_up.max())):
            y = xs + s
            mu[small] += np.where(s < n_up, (y + 0.5) * np.log1p(1.0 / y) - 1.0, 0.0)
    return mu


def _log_terms(b: np.ndarray, j: np.ndarray, log_t: float) -> np.ndarray:
    """log T_j = log((b)_j t^j / j!) (integer j >= 0, b >= 1), to rounding."""
    return (
        (b - 0.5) * np.log1p(j / b)
        + j * (np.log(b + j) - 1.0 + log_t)
        + _binet(b + j)
        - _binet(b)
        - _LOG_FACT[j.astype(np.int64)]
    )


def exceedances(
    a: np.ndarray,
    b: np.ndarray,
    t: float,
    n_rows: int,
    rng: np.random.Generator,
    coefs: np.ndarray | None = None,
    log_bound: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of X_ri ~ Beta(a_i, b_i) independent (r < n_rows), exactly the draws above t: (row,
    column, value) arrays, sorted by row. O(n) plus O(1) per draw near t (items with ceil(a) >
    TAIL_INT_ALPHA or a tail bound of 1: O(n_rows), drawn in full). coefs, log_bound:
    tail_bound_coefs(ceil(a), b), log_tail_bound(ceil(a), b, t), if already computed."""
    # X | X > t = t + (1 - t) Beta(a - j, b + j) with probability (1 - t)^b T_j, j < a (integer
    # a). The bound (1 - t)^b sum_{m<a} U_{a-1-m}, U_j = Tbar rho^-(a-1-j) >= T_j, proposes a
    # row at its rate, j = a - 1 - m with m a truncated geometric, kept with T_j / U_j: exactly
    # probability (1 - t)^b T_j. Items whose bound is 1 are drawn in full. Non-integer a: Y ~
    # Beta(ceil(a), b) and X = B Y / (B Y + 1 - Y) with B ~ Beta(a, ceil(a) - a) is Beta(a, b)
    # (split Gamma(ceil a) = Gamma(a) + Gamma(ceil(a) - a)); X <= Y, so the Y above t, thinned
    # to X above t, are exactly the X above t.
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0))
    if a.size == 0:
        return empty
    n_a = np.ceil(a)
    if coefs is None:
        coefs = tail_bound_coefs(n_a, b)
    log_qb = log_tail_bound(n_a, b, t, coefs) if log_bound is None else log_bound
    chunk = max(1, _MAX_CELLS // a.size)
    if n_rows > chunk:  # (many rows, e.g. marginals: bounded memory, rows are independent)
        parts = [
            exceedances(a, b, t, min(chunk, n_rows - r0), rng, coefs, log_qb)
            for r0 in range(0, n_rows, chunk)
        ]
        offsets = np.repeat(np.arange(0, n_rows, chunk), [p[0].size for p in parts])
        return (
            np.concatenate([p[0] for p in parts]) + offsets,
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )
    sure = np.flatnonzero((log_qb >= 0.0) | (n_a > TAIL_INT_ALPHA))  # drawn in full
    full_r = full_i = np.empty(0, dtype=np.int64)
    full_v = np.empty(0)
    if sure.size:
        x = rng.beta(a[sure], b[sure], size=(n_rows, sure.size))
        full_r, hi = np.nonzero(x > t)
        full_i, full_v = sure[hi], x[full_r, hi]
    # Which columns have any proposal (none in n_rows: prob (1 - bound)^n_rows), then for
    # those the first such row (a truncated geometric, by inversion) and each later row.
    qb = np.exp(log_qb)
    qb[sure] = 0.0
    rate = n_rows * qb  # >= the chance of any proposal: a superset, thinned to that chance
    act = np.flatnonzero(rng.random(a.size) < rate)
    p_any = -np.expm1(n_rows * np.log1p(-qb[act]))
    act = act[rng.random(act.size) * np.minimum(rate[act], 1.0) < p_any]
    rows, item = _proposals(np.log1p(-qb[act]), n_rows, rng)
    item = act[item]
    # j = n_a - 1 - m, m truncated geometric with ratio 1 / rho; keep with T_j / U_j
    log_t = math.log(t)
    lr = coefs[1, item] + log_t
    na_i = n_a[item]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        m = np.floor(np.log1p(rng.random(item.size) * np.expm1(-lr * na_i)) / -lr)
    m = np.clip(np.nan_to_num(m, nan=0.0), 0.0, na_i - 1.0)
    j = na_i - 1.0 - m
    b_i = b[item]
    log_u = coefs[0, item] + (na_i - 1.0) * log_t + _BOUND_SLACK - m * lr
    keep = rng.random(item.size) < np.exp(_log_terms(b_i, j, log_t) - log_u)
    rows, item, j = rows[keep], item[keep], j[keep]
    y = t + (1.0 - t) * rng.beta(n_a[item] - j, b[item] + j)
    frac = np.flatnonzero(n_a[item] > a[item])
    if frac.size:
        by = rng.beta(a[item[frac]], n_a[item[frac]] - a[item[frac]]) * y[frac]
        y[frac] = by / (by + (1.0 - y[frac]))
        keep = y > t
        rows, item, y = rows[keep], item[keep], y[keep]
    if full_r.size:
        rows = np.concatenate([rows, full_r])
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
        item = np.concatenate([item, full_i])[order]
        y = np.concatenate([y, full_v])[order]
    return rows, item, y


def _proposals(
    log_q1: np.ndarray, n_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Bernoulli(1 - exp(log_q1[i])) trials per row and column given at least one per column:
    (row, column) of the successes, sorted by row. The first row is a truncated geometric."""
    p_any = -np.expm1(n_rows * log_q1)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.log1p(-rng.random(log_q1.size) * p_any) / log_q1
    first = np.clip(np.floor(g), 0, n_rows - 1).astype(np.int64)
    hits = rng.random((n_rows, log_q1.size)) < -np.expm1(log_q1)
    hits &= np.arange(n_rows)[:, None] > first
    hits[first, np.arange(log_q1.size)] = True
    rows, cols = np.nonzero(hits)  # row-major: sorted by row
    return rows, cols
