"""Exact integer-alpha Beta draws: dense draws and tail draws against numpy's own Beta sampler
(two-sample KS), the closed-form tail against quadrature, and the pruned top-k path of the
Beta posterior against sorting dense numpy Beta draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bandits import BetaBernoulliPosterior, Feedback
from bandits.beta_draws import beta_rows, beta_tail_sf, exceedances

KS_CRIT = 1.95  # two-sample Kolmogorov-Smirnov critical value at alpha = 0.001


def ks2(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sample KS statistic divided by its alpha = 0.001 critical value (fails if > 1)."""
    x, y = np.sort(x), np.sort(y)
    grid = np.concatenate([x, y])
    d = np.abs(
        np.searchsorted(x, grid, "right") / x.size - np.searchsorted(y, grid, "right") / y.size
    )
    return float(d.max() / (KS_CRIT * math.sqrt((x.size + y.size) / (x.size * y.size))))


def quad_sf(a: float, b: float, t: float) -> float:
    """P(X > t) of Beta(a, b) by the trapezoid rule on a fine grid (t > 0, b > 1)."""
    x = np.linspace(t, 1.0, 200_001)
    with np.errstate(divide="ignore"):
        logf = (a - 1) * np.log(x) + (b - 1) * np.log1p(-x)
    f = np.exp(logf - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)))
    return float(np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(x)))


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "a, b", [(1.0, 20.0), (2.0, 40.3), (3.0, 0.7), (4.0, 55.5), (6.0, 9.0), (2.5, 9.0)]
)
def test_dense_draws_match_numpy_beta(a: float, b: float) -> None:
    """Exponential sums (integer a <= 4), numpy's Beta for the rest, beside each other."""
    rng = np.random.default_rng(7)
    x = beta_rows(np.array([a, 1.0, a]), np.array([b, 3.0, b]), 40_000, rng)
    ref = rng.beta(a, b, size=40_000)
    assert ks2(x[:, 0], ref) < 1.0
    assert ks2(x[:, 2], ref) < 1.0
    assert ks2(x[:, 1], rng.beta(1.0, 3.0, size=40_000)) < 1.0
    assert abs(np.corrcoef(x[:, 0], x[:, 2])[0, 1]) < 0.03  # columns independent


@pytest.mark.timeout(10)
@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_prior_draws_of_never_seen_items_match_numpy_beta(alpha: float) -> None:
    """Never-seen items' dense draws (exponential sums for an integer prior alpha), also
    beside a warm column, vs numpy's Beta(prior)."""
    post = BetaBernoulliPosterior(alpha, 30.0)
    post.update(Feedback(("w",), ()))
    rng = np.random.default_rng(5)
    x = post.sample_scores(("c1", "w", "c2"), 30_000, rng)
    ref = rng.beta(alpha, 30.0, size=30_000)
    assert ks2(x[:, 0], ref) < 1.0
    assert ks2(x[:, 2], ref) < 1.0
    a, b = post.params(["w"])
    assert ks2(x[:, 1], rng.beta(a[0], b[0], size=30_000)) < 1.0


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    "a, b, t", [(1.0, 20.0, 0.1), (2.0, 40.3, 0.15), (3.0, 10.7, 0.3), (7.0, 55.5, 0.2)]
)
def test_tail_closed_form_matches_quadrature(a: float, b: float, t: float) -> None:
    got = float(beta_tail_sf(np.array([a]), np.array([b]), t)[0])
    assert got == pytest.approx(quad_sf(a, b, t), rel=1e-6)
    if a == 1.0:
        assert got == pytest.approx((1 - t) ** b, rel=1e-12)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "a, b, t",
    [(2.0, 40.3, 0.1), (3.0, 10.7, 0.3), (7.0, 55.5, 0.15), (2.4, 30.0, 0.12), (0.6, 5.0, 0.2)],
)
def test_exceedances_match_thresholded_dense_draws(a: float, b: float, t: float) -> None:
    """The draws above t have the law of X | X > t, and per column the number of rows above t
    is Binomial(rows, q), the rows uniform: as if all were drawn and the rest discarded
    (non-integer a: via Beta(ceil a, b), thinned)."""
    rng = np.random.default_rng(11)
    n_cols, n_rows = 4000, 6
    rows, cols, vals = exceedances(np.full(n_cols, a), np.full(n_cols, b), t, n_rows, rng)
    assert np.all(vals > t) and np.all(vals < 1.0)
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == rows.size
    ref = rng.beta(a, b, size=400_000)
    assert ks2(vals, ref[ref > t]) < 1.0
    q = quad_sf(a, b, t)
    n_draws = n_cols * n_rows
    assert abs(vals.size - n_draws * q) < 4 * math.sqrt(n_draws * q * (1 - q))
    counts = np.bincount(np.bincount(cols, minlength=n_cols), minlength=n_rows + 1)
    for c in range(n_rows + 1):
        p = math.comb(n_rows, c) * q**c * (1 - q) ** (n_rows - c)
        assert abs(counts[c] / n_cols - p) < 4 * math.sqrt(p * (1 - p) / n_cols) + 1e-4
    per_row = np.bincount(rows, minlength=n_rows) / n_cols
    assert np.all(np.abs(per_row - q) < 4 * math.sqrt(q * (1 - q) / n_cols))


def _warm_posterior(
    n_items: int, n_warm: int, seed: int, discount: float = 1.0, temperature: float = 1.0
) -> tuple[BetaBernoulliPosterior, tuple]:
    """Prior Beta(2, 30); n_warm items with 1..3 slates of evidence, a few clicked twice."""
    rng = np.random.default_rng(seed)
    post = BetaBernoulliPosterior(
        2.0, 30.0, discount=discount, learn_examination=False, temperature=temperature
    )
    cands = tuple(f"c{j}" for j in range(n_items))
    for j in range(n_warm):
        for _ in range(1 + j % 3):
            post.update(Feedback((cands[j],), (0,) if rng.random() < 0.3 + 0.4 * (j < 5) else ()))
    return post, cands


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "n_items, n_warm, discount, temperature",
    [
        (3000, 300, 1.0, 1.0),
        (400, 400, 1.0, 1.0),
        (3000, 300, 0.999, 1.0),
        (3000, 300, 1.0, 0.25),
        (400, 400, 1.0, 0.3),
    ],
)
def test_pruned_topk_matches_sorted_numpy_draws(
    n_items: int, n_warm: int, discount: float, temperature: float
) -> None:
    """Top-k with warm items drawn only above the rows' threshold (cold order statistics, or,
    all items warm, a seed set drawn in full; discounted: non-integer alpha) vs the top-k of
    dense numpy Beta draws; with a temperature, of Beta(a / tau, b / tau)."""
    post, cands = _warm_posterior(n_items, n_warm, 0, discount, temperature)
    a, b = post.params(cands)
    assert (discount < 1.0) == bool(np.any(a != np.floor(a)))
    a, b = a / temperature, b / temperature
    k, rows = 5, 4000
    rng = np.random.default_rng(2)
    ids, vals = post.sample_topk(cands, rows, k, rng)
    dense = rng.beta(a, b, size=(rows, n_items))
    didx = np.argsort(-dense, axis=1)[:, :k]
    dvals = np.take_along_axis(dense, didx, axis=1)
    assert ids.shape == vals.shape == (rows, k)
    assert np.all(np.diff(vals, axis=1) < 0)
    assert all(len(set(r)) == k for r in ids.tolist())
    for col in (0, k - 1):
        assert ks2(vals[:, col], dvals[:, col]) < 1.0
    # which items win position 0, and how often warm items make the top k
    win = np.bincount(ids[:, 0], minlength=n_items) / rows
    dwin = np.bincount(didx[:, 0], minlength=n_items) / rows
    assert np.abs(win - dwin).max() < 4 * math.sqrt(0.25 * 2 / rows)
    warm_share = float(np.mean(ids < n_warm))
    dwarm_share = float(np.mean(didx < n_warm))
    assert abs(warm_share - dwarm_share) < 4 * math.sqrt(0.25 * 2 / (rows * k))
