"""Per-row top-k of Beta draws that draw as little as possible: merging draws that exceed a
threshold into a base of full draws, short-row completion below the threshold, and the small
helpers the Beta posterior's sampler shares with the policies."""

from __future__ import annotations

import functools
import math

import numpy as np

from bandits.beta_draws import exceedances

__all__ = [
    "SHORT_ROW_RISK",
    "beta_below",
    "count_band",
    "distinct_ints",
    "merge_exceedances",
    "topk_above",
    "topk_rows",
]

SHORT_ROW_RISK = 1e-3  # target chance per call that a row has < k draws above the threshold


def topk_rows(vals: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k largest values (descending) and their ids; ids (cols,) or (rows, cols)."""
    n = vals.shape[1]
    r = np.arange(vals.shape[0])[:, None]
    if n > 4 * k:
        part = np.argpartition(vals, n - k, axis=1)[:, n - k :]
        part = part[r, np.argsort(-vals[r, part], axis=1, kind="stable")]
    else:  # narrow: one small sort per row beats partition + sort
        part = np.argsort(-vals, axis=1, kind="stable")[:, :k]
    out_ids = ids[part] if ids.ndim == 1 else ids[r, part]
    return out_ids, vals[r, part]


def merge_exceedances(
    base: np.ndarray,
    base_ids: np.ndarray,
    ids: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    k: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k per row of base (rows, >= k) together with Beta(a, b) draws for items `ids`, of
    which only those above t = min over rows of base's k-th value are drawn (the rest can't
    place): exact, as the threshold comes from draws independent of these items'."""
    n_rows, width = base.shape
    t = float(np.partition(base, width - k, axis=1)[:, width - k].min())
    if a.size == 0 or t >= 1.0:
        return topk_rows(base, base_ids, k)
    r, c, v = exceedances(a, b, t, n_rows, rng)
    if r.size:  # the draws above t (sorted by row) as extra columns, padded with -1
        col = np.arange(r.size) - np.searchsorted(r, np.arange(n_rows))[r]
        ex = np.full((n_rows, int(col.max()) + 1), -1.0)
        ex_ids = np.zeros(ex.shape, dtype=np.int64)
        ex[r, col] = v
        ex_ids[r, col] = ids[c]
        base = np.concatenate([base, ex], axis=1)
        base_ids = np.concatenate([base_ids, ex_ids], axis=1)
    return topk_rows(base, base_ids, k)


@functools.lru_cache(maxsize=64)
def count_band(n_rows: int, k: int) -> tuple[float, float]:
    """Accepted expected draws above the threshold per row: from the least mean at which all
    n_rows rows have k above it but for a chance SHORT_ROW_RISK (Poisson counts; the bounds
    over-count) to 1.6 times that."""
    mu = float(k)
    while True:
        p = math.exp(-mu) * sum(mu**j / math.factorial(j) for j in range(k))
        if n_rows * p <= SHORT_ROW_RISK:
            return mu, 1.6 * mu
        mu += 0.5


def topk_above(
    base: np.ndarray,
    base_ids: np.ndarray,
    ids: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    t: float,
    k: int,
    rng: np.random.Generator,
    coefs: np.ndarray | None = None,
    log_bound: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Top-k per row of base (drawn in full, maybe 0 wide) and Beta(a, b) draws of items `ids`
    drawn only above t (t independent of all draws); a row with fewer than k values above t
    then draws its other items below t (rejection), so every row is exact. Also: how many of
    the `ids` draws were above t."""
    n_rows = base.shape[0]
    r, c, v = exceedances(a, b, t, n_rows, rng, coefs, log_bound)
    width = max(int(np.bincount(r, minlength=n_rows).max()) if r.size else 0, k)
    col = np.arange(r.size) - np.searchsorted(r, np.arange(n_rows))[r]
    ex = np.full((n_rows, width), -1.0)
    ex_ids = np.zeros(ex.shape, dtype=np.int64)
    ex[r, col] = v
    ex_ids[r, col] = ids[c]
    vals = np.concatenate([base, ex], axis=1)
    out_ids, out_vals = topk_rows(vals, np.concatenate([base_ids, ex_ids], axis=1), k)
    for row in np.flatnonzero(out_vals[:, -1] <= t):  # fewer than k above t: rare
        x = np.empty(a.size)
        mine = r == row
        x[c[mine]] = v[mine]
        rest = np.ones(a.size, dtype=bool)
        rest[c[mine]] = False
        x[rest] = beta_below(a[rest], b[rest], t, rng)
        row_ids, row_vals = topk_rows(
            np.concatenate([base[row], x])[None, :], np.concatenate([base_ids[row], ids]), k
        )
        out_ids[row], out_vals[row] = row_ids[0], row_vals[0]
    return out_ids, out_vals, int(r.size)


def beta_below(a: np.ndarray, b: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    """One draw of Beta(a_i, b_i) given it is at most t, per item (rejection)."""
    x = rng.beta(a, b)
    bad = np.flatnonzero(x > t)
    while bad.size:
        x[bad] = rng.beta(a[bad], b[bad])
        bad = bad[x[bad] > t]
    return x


def distinct_ints(m: int, k: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    """rows x k integers from range(m), distinct within each row, uniformly (ordered)."""
    if 8 * k * k > m:
        return np.argsort(rng.random((rows, m)), axis=1)[:, :k]
    out = rng.integers(0, m, size=(rows, k))
    while True:
        s = np.sort(out, axis=1)
        bad = np.flatnonzero((s[:, 1:] == s[:, :-1]).any(axis=1))
        if bad.size == 0:
            return out
        out[bad] = rng.integers(0, m, size=(bad.size, k))
