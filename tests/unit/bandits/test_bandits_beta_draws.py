"""Exact integer-alpha Beta draws: dense draws and tail draws against numpy's own Beta sampler
(two-sample KS), the closed-form tail against quadrature, the tail bound and the proposal
acceptance against the exact series, and the pruned top-k path of the Beta posterior (cold
threshold, parameter threshold, short rows, cached bounds) against sorting dense numpy Beta
draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bandits.beta_draws as beta_draws
import bandits.posteriors as posteriors
from bandits import BetaBernoulliPosterior, Feedback
from bandits.beta_draws import (
    _BOUND_SLACK,
    TAIL_INT_ALPHA,
    _binet,
    _log_terms,
    beta_rows,
    exceedances,
    log_tail_bound,
    tail_bound_coefs,
)


def exact_log_tail(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """log P(X > t), X ~ Beta(a_i, b_i), integer a_i >= 1, from the closed-form series
    (1 - t)^b sum_{j<a} (b)_j t^j / j!, summed in log space: the reference for the bound."""
    n_j = int(a.max())
    j = np.arange(1.0, n_j)[:, None]
    lt = np.empty((n_j, a.size))
    lt[0] = b * math.log1p(-t)
    if n_j > 1:
        np.cumsum(np.log((b + (j - 1.0)) * (t / j)), axis=0, out=lt[1:])
        lt[1:] += lt[0]
        lt[1:][j >= a] = -np.inf
    top = lt.max(axis=0)
    return top + np.log(np.exp(lt - top).sum(axis=0))


def exact_tail_sf(a: float, b: float, t: float) -> float:
    """P(X > t) of Beta(a, b), integer a, by the closed-form series."""
    return min(float(np.exp(exact_log_tail(np.array([a]), np.array([b]), t)[0])), 1.0)


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
    """P(X > t) of Beta(a, b) by the trapezoid rule on a fine grid (t > 0, b > 1) up to 40
    standard deviations above the mean (or t)."""
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    x = np.linspace(t, min(1.0, max(t, a / (a + b)) + 40 * sd), 200_001)
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
    "a, b, t",
    [
        (1.0, 20.0, 0.1),
        (2.0, 40.3, 0.15),
        (3.0, 10.7, 0.3),
        (7.0, 55.5, 0.2),
        (40.0, 440.0, 0.12),
        (30.0, 5000.0, 0.01),
    ],
)
def test_tail_closed_form_matches_quadrature(a: float, b: float, t: float) -> None:
    got = exact_tail_sf(a, b, t)
    assert got == pytest.approx(quad_sf(a, b, t), rel=1e-6)
    if a == 1.0:
        assert got == pytest.approx((1 - t) ** b, rel=1e-12)


@pytest.mark.timeout(10)
def test_tail_bound_is_above_the_exact_tail_and_close_where_small() -> None:
    """log_tail_bound >= the exact log tail for integer a up to TAIL_INT_ALPHA, b from 0.5 to
    1e5 (b < 1: bound 1), t across (0, 1); within a factor 2.2 where the tail is below 1e-3."""
    rng = np.random.default_rng(3)
    a = rng.integers(1, TAIL_INT_ALPHA + 1, 20_000).astype(float)
    b = np.exp(rng.uniform(math.log(0.5), math.log(1e5), a.size))
    for t in (1e-4, 0.01, 0.05, 0.12, 0.3, 0.6, 0.95):
        bound = log_tail_bound(a, b, t)
        exact = exact_log_tail(a, b, t)
        assert np.all(np.isfinite(bound)) and np.all(bound <= 0.0)
        assert np.all(exact <= bound + 1e-12)
        assert np.all(bound[b < 1.0] == 0.0)
        small = exact < math.log(1e-3)
        assert np.all(bound[small] - exact[small] < math.log(2.2))


@pytest.mark.timeout(10)
def test_binet_and_proposal_acceptance() -> None:
    """The Stirling remainder matches math.lgamma; each proposal's acceptance T_j / U_j is at
    most 1 (U_j: the bound's geometric term) and T_j is the series term."""
    x = np.concatenate([1.0 + np.arange(200) / 7.0, np.exp(np.linspace(3.0, 5.3, 100))])
    ref = [math.lgamma(v) - (v - 0.5) * math.log(v) + v - 0.5 * math.log(2 * math.pi) for v in x]
    assert np.allclose(_binet(x), ref, rtol=0.0, atol=2e-13)  # (lgamma's own rounding)
    big = np.exp(np.linspace(5.3, 11.0, 50))  # 1/(12x) - 1/(360x^3): error < 1/(1260x^5)
    assert np.allclose(_binet(big), 1 / (12 * big) - 1 / (360 * big**3), rtol=1e-10, atol=0.0)
    rng = np.random.default_rng(4)
    a = rng.integers(1, TAIL_INT_ALPHA + 1, 20_000).astype(float)
    b = np.exp(rng.uniform(0.0, math.log(1e5), a.size))
    coefs = tail_bound_coefs(a, b)
    for t in (0.001, 0.05, 0.2, 0.7):
        lr = coefs[1] + math.log(t)
        for m in (0, 1, 3, 30, 127):
            mm = np.minimum(float(m), a - 1.0)
            log_u = coefs[0] + (a - 1.0) * math.log(t) + _BOUND_SLACK - mm * lr
            log_tj = _log_terms(b, a - 1.0 - mm, math.log(t))
            assert np.all(log_tj <= log_u)
        j = a[:50] - 1.0
        exact = [
            math.lgamma(bb + jj) - math.lgamma(bb) - math.lgamma(jj + 1) + jj * math.log(t)
            for bb, jj in zip(b[:50], j, strict=True)
        ]
        assert np.allclose(_log_terms(b[:50], j, math.log(t)), exact, rtol=1e-12, atol=1e-9)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "a, b, t",
    [
        (2.0, 40.3, 0.1),
        (3.0, 10.7, 0.3),
        (7.0, 55.5, 0.15),
        (2.4, 30.0, 0.12),
        (0.6, 5.0, 0.2),
        (16.0, 288.0, 0.1),  # temperature 1/8: large alpha
        (40.0, 440.0, 0.12),
        (6.67, 132.0, 0.1),  # temperature 0.3: non-integer
        (48.0, 440.0, 0.09),  # t below the mean: bound 1, drawn in full
        (2.0, 0.7, 0.8),  # b < 1: bound 1
    ],
)
def test_exceedances_match_thresholded_dense_draws(a: float, b: float, t: float) -> None:
    """The draws above t have the law of X | X > t, and per column the number of rows above t
    is Binomial(rows, q), the rows uniform: as if all were drawn and the rest discarded
    (non-integer a: via Beta(ceil a, b), thinned; items whose tail bound is 1: drawn)."""
    _check_exceedances(a, b, t, 6)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("a, b, t", [(3.0, 10.7, 0.3), (150.0, 1500.0, 0.095)])
def test_exceedances_in_row_chunks_and_beyond_the_alpha_limit(
    a: float, b: float, t: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many rows are done in chunks of rows (here forced); alpha above TAIL_INT_ALPHA is
    drawn in full: the same law."""
    monkeypatch.setattr(beta_draws, "_MAX_CELLS", 10_000)
    _check_exceedances(a, b, t, 9)


def _check_exceedances(a: float, b: float, t: float, n_rows: int) -> None:
    """exceedances of 4000 columns of Beta(a, b) above t vs numpy's Beta: law of the values,
    per-column binomial counts, per-row rates, rows sorted."""
    rng = np.random.default_rng(11)
    n_cols = 4000
    rows, cols, vals = exceedances(np.full(n_cols, a), np.full(n_cols, b), t, n_rows, rng)
    assert np.all(vals > t) and np.all(vals < 1.0)
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == rows.size
    ref = rng.beta(a, b, size=400_000)
    assert ks2(vals, ref[ref > t]) < 1.0
    q = quad_sf(a, b, t) if b > 1.0 else exact_tail_sf(a, b, t)
    n_draws = n_cols * n_rows
    assert abs(vals.size - n_draws * q) < 4 * math.sqrt(n_draws * q * (1 - q))
    counts = np.bincount(np.bincount(cols, minlength=n_cols), minlength=n_rows + 1)
    for c in range(n_rows + 1):
        p = math.comb(n_rows, c) * q**c * (1 - q) ** (n_rows - c)
        assert abs(counts[c] / n_cols - p) < 4 * math.sqrt(p * (1 - p) / n_cols) + 1e-4
    per_row = np.bincount(rows, minlength=n_rows) / n_cols
    assert np.all(np.abs(per_row - q) < 4 * math.sqrt(q * (1 - q) / n_cols))
    assert np.all(np.diff(rows) >= 0)


@pytest.mark.timeout(10)
def test_exceedances_of_mixed_columns_keep_each_columns_law() -> None:
    """Columns with different parameters in one call (some drawn in full, some proposed at
    their bound): each column's count and values follow its own Beta, rows sorted."""
    rng = np.random.default_rng(12)
    params = [(2.0, 40.0), (24.0, 300.0), (3.3, 20.0), (40.0, 300.0)]  # last: above t on average
    n_cols, n_rows, t = 2000, 8, 0.11
    a = np.tile([p[0] for p in params], n_cols // 4)
    b = np.tile([p[1] for p in params], n_cols // 4)
    rows, cols, vals = exceedances(a, b, t, n_rows, rng)
    assert np.all(np.diff(rows) >= 0) and np.all(vals > t)
    for g, (ag, bg) in enumerate(params):
        mine = cols % 4 == g
        q = quad_sf(ag, bg, t)
        n = n_cols // 4 * n_rows
        assert abs(mine.sum() - n * q) < 4 * math.sqrt(n * q * (1 - q)) + 1
        if mine.sum() > 50:
            ref = rng.beta(ag, bg, size=200_000)
            assert ks2(vals[mine], ref[ref > t]) < 1.0


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


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "n_items, n_warm, discount, temperature",
    [
        (3000, 300, 1.0, 1.0),
        (400, 400, 1.0, 1.0),
        (3000, 300, 0.999, 1.0),
        (3000, 300, 1.0, 0.25),
        (400, 400, 1.0, 0.3),
        (2000, 2000, 1.0, 0.125),
        (2000, 2000, 0.999, 0.25),
        (400, 390, 1.0, 0.25),  # a few never-seen items join the threshold path
        (400, 400, 1.0, 0.02),  # alpha / tau above TAIL_INT_ALPHA: some drawn in full
        (400, 400, 1.0, 0.0125),  # all of them
    ],
)
def test_pruned_topk_matches_sorted_numpy_draws(
    n_items: int, n_warm: int, discount: float, temperature: float
) -> None:
    """Top-k with warm items drawn only above the rows' threshold (cold order statistics, or,
    few items cold, a threshold from the parameters; discounted: non-integer alpha) vs the
    top-k of dense numpy Beta draws; with a temperature, of Beta(a / tau, b / tau)."""
    post, cands = _warm_posterior(n_items, n_warm, 0, discount, temperature)
    a, b = post.params(cands)
    assert (discount < 1.0) == bool(np.any(a != np.floor(a)))
    a, b = a / temperature, b / temperature
    k, rows = 5, 4000
    rng = np.random.default_rng(2)
    ids, vals = post.sample_topk(cands, rows, k, rng)
    _assert_topk_like_dense(ids, vals, a, b, n_warm, k, rng)


def _assert_topk_like_dense(
    ids: np.ndarray,
    vals: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    n_warm: int,
    k: int,
    rng: np.random.Generator,
) -> None:
    """ids, vals have the law of the top-k of rows of independent Beta(a_i, b_i) draws."""
    rows, n_items = ids.shape[0], a.size
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


@pytest.mark.timeout(30)
def test_short_rows_are_completed_below_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a threshold far too high (about one draw above it per row), most rows draw their
    other items below it: still the dense top-k law."""
    monkeypatch.setattr(posteriors, "count_band", lambda n_rows, k: (0.5, 1.5))
    post, cands = _warm_posterior(400, 400, 0, 1.0, 0.3)
    a, b = post.params(cands)
    rng = np.random.default_rng(6)
    ids, vals = post.sample_topk(cands, 3000, 5, rng)
    _assert_topk_like_dense(ids, vals, a / 0.3, b / 0.3, 400, 5, rng)


@pytest.mark.timeout(30)
def test_cached_bounds_follow_updates() -> None:
    """The tail bounds kept for a candidate set are recomputed for items whose parameters
    changed: an item that turns from weak to strong wins as often as dense draws say."""
    post, cands = _warm_posterior(400, 400, 0, 1.0, 0.25)
    rng = np.random.default_rng(8)
    post.sample_topk(cands, 4000, 5, rng)  # fills the cache (and the threshold)
    for _ in range(6):
        post.update(Feedback((cands[300],), (0,)))
    a, b = post.params(cands)
    ids, vals = post.sample_topk(cands, 4000, 5, rng)
    _assert_topk_like_dense(ids, vals, a / 0.25, b / 0.25, 400, 5, rng)
    assert np.mean(ids[:, 0] == 300) > 0.5
