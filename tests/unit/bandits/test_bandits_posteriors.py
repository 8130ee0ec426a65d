"""Posterior samplers: update directions, discounting, examination learning, the exact top-k
order-statistics path, and the vectorised in-slate fill."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bandits import BetaBernoulliPosterior, Feedback, LinearGaussianPosterior
from bandits.policies import in_slate_fill
from bandits.posteriors import _beta_logsf_table
from bandits.simulators import SyntheticSimulator


@pytest.mark.timeout(5)
def test_click_raises_and_miss_lowers_the_mean() -> None:
    post = BetaBernoulliPosterior(1.0, 20.0)
    prior = post.mean_scores(["a", "b", "z"])
    post.update(Feedback(("a", "b"), (0,)))
    after = post.mean_scores(["a", "b", "z"])
    assert after[0] > prior[0]
    assert after[1] < prior[1]
    assert after[2] == prior[2]  # untouched / never-seen item keeps the prior


@pytest.mark.timeout(5)
def test_miss_at_a_rarely_examined_position_is_weaker_evidence() -> None:
    post = BetaBernoulliPosterior(1.0, 20.0, learn_examination=False)
    post.update(Feedback(tuple(f"x{j}" for j in range(10)), ()))
    m = post.mean_scores([f"x{j}" for j in range(10)])
    assert np.all(np.diff(m) > 0)  # lower position, less examined, smaller drop


@pytest.mark.timeout(5)
def test_discount_forgets_old_evidence() -> None:
    post = BetaBernoulliPosterior(1.0, 20.0, discount=0.9)
    for _ in range(30):
        post.update(Feedback(("a",), (0,)))
    high = post.mean_scores(["a"])[0]
    for _ in range(60):
        post.update(Feedback(("b",), ()))
    a, _ = post.params(["a"])
    assert post.mean_scores(["a"])[0] < high
    assert a[0] - 1.0 < 30 * 0.9**60 + 1e-9  # decayed, not kept
    keep = BetaBernoulliPosterior(1.0, 20.0)
    for _ in range(30):
        keep.update(Feedback(("a",), (0,)))
    for _ in range(60):
        keep.update(Feedback(("b",), ()))
    assert keep.params(["a"])[0][0] == pytest.approx(31.0)


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"prior_alpha": 0.0}, "prior_alpha"),
        ({"prior_beta": -1.0}, "prior_beta"),
        ({"discount": 0.0}, "discount"),
        ({"discount": 1.5}, "discount"),
        ({"examination": [0.5, 0.0]}, "examination"),
        ({"max_positions": 0}, "max_positions"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
    ],
)
def test_beta_posterior_validates(kwargs: dict[str, object], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        BetaBernoulliPosterior(**kwargs)  # type: ignore[arg-type]


@pytest.mark.timeout(30)
@pytest.mark.slow
def test_examination_curve_is_learned_under_random_placement() -> None:
    exam = [1.0, 0.9, 0.8, 0.7, 0.3, 0.2, 0.15, 0.1]  # far from the DCG-shaped prior
    sim = SyntheticSimulator(
        n_items=60, preference_scale=0.0, churn_rate=0.0, examination=exam, seed=0
    )
    post = BetaBernoulliPosterior(1.0, 25.0)
    rng = np.random.default_rng(0)
    for _ in range(8000):
        req = sim.next_request()
        slate = [req.candidates[j] for j in rng.choice(60, 8, replace=False)]
        post.update(sim.respond(req, slate))
    err = np.abs(post.examination[:8] - sim.examination[:8])
    assert err.max() < 0.08, (post.examination[:8].round(2), sim.examination[:8].round(2))
    assert np.abs(1 / np.log2(np.arange(8) + 2) - sim.examination[:8]).max() > 0.2


@pytest.mark.timeout(5)
def test_inverse_survival_table_matches_closed_form() -> None:
    # Beta(1, b): P(X > x) = (1 - x)^b
    logsf, xs = _beta_logsf_table(1.0, 20.0)
    for s in (0.5, 1e-2, 1e-4, 1e-7):
        x = float(np.interp(math.log(s), logsf, xs))
        assert x == pytest.approx(1 - s ** (1 / 20), rel=2e-3)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_dense_draws_of_cold_and_warm_items_follow_their_beta(alpha: float) -> None:
    """Cold items (prior, closed form when alpha = 1) and warm items (numpy Beta) drawn in one
    matrix: each column's mean and quantiles match its own Beta posterior."""
    post = BetaBernoulliPosterior(alpha, 20.0)
    post.update(Feedback(("w",), (0,)))  # one click: alpha + 1, beta unchanged
    draws = post.sample_scores(("c1", "w", "c2"), 40_000, np.random.default_rng(3))
    for col, (a, b) in ((0, (alpha, 20.0)), (1, (alpha + 1, 20.0)), (2, (alpha, 20.0))):
        x = draws[:, col]
        sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        assert abs(x.mean() - a / (a + b)) < 4 * sd / math.sqrt(x.size)
    # Beta(1, 20) has P(X <= q) = 1 - (1 - q)^20: check the closed form at three quantiles
    if alpha == 1.0:
        for q in (0.01, 0.05, 0.2):
            p = 1 - (1 - q) ** 20
            emp = float(np.mean(draws[:, 0] <= q))
            assert abs(emp - p) < 4 * math.sqrt(p * (1 - p) / draws.shape[0])


@pytest.mark.timeout(10)
def test_temperature_keeps_the_mean_and_scales_the_spread_of_draws() -> None:
    """Draws at temperature tau follow Beta(a / tau, b / tau): same mean as the posterior,
    about tau times its variance; the means (what greedy ranks by) do not change."""
    items = ("c", "w")  # a never-seen item and one with a click and a miss
    fb = [Feedback(("w",), (0,)), Feedback(("w",), ())]
    exact, cool = (
        BetaBernoulliPosterior(2.0, 30.0),
        BetaBernoulliPosterior(2.0, 30.0, temperature=0.25),
    )
    for post in (exact, cool):
        for f in fb:
            post.update(f)
    np.testing.assert_array_equal(exact.mean_scores(items), cool.mean_scores(items))
    a, b = exact.params(items)
    d_exact = exact.sample_scores(items, 60_000, np.random.default_rng(0))
    d_cool = cool.sample_scores(items, 60_000, np.random.default_rng(1))
    for j in range(2):
        at, bt = a[j] / 0.25, b[j] / 0.25
        var_t = at * bt / ((at + bt) ** 2 * (at + bt + 1))
        assert abs(d_cool[:, j].mean() - a[j] / (a[j] + b[j])) < 4 * math.sqrt(var_t / 60_000)
        assert d_cool[:, j].var() == pytest.approx(var_t, rel=0.03)
        assert d_cool[:, j].var() < 0.3 * d_exact[:, j].var()


@pytest.mark.timeout(20)
def test_topk_order_statistics_match_dense_sampling() -> None:
    """The fast path (cold items via order statistics) has the same distribution as sorting
    dense Beta draws: compare the mean of the 1st and 5th largest, and which items win."""
    post = BetaBernoulliPosterior(2.0, 30.0)
    cands = tuple(f"c{j}" for j in range(2000))
    for j in range(5):  # five warm items with evidence, the rest share the prior
        post.update(Feedback((cands[j],), (0,)))
    rng = np.random.default_rng(1)
    ids, vals = post.sample_topk(cands, 3000, 5, rng)
    dense = post.sample_scores(cands, 3000, rng)
    dvals = -np.sort(-dense, axis=1)[:, :5]
    didx = np.argmax(dense, axis=1)
    assert ids.shape == vals.shape == (3000, 5)
    assert np.all(np.diff(vals, axis=1) <= 0)
    assert all(len(set(r)) == 5 for r in ids.tolist())
    for col in (0, 4):
        se = math.sqrt(vals[:, col].var() / 3000 + dvals[:, col].var() / 3000)
        assert abs(vals[:, col].mean() - dvals[:, col].mean()) < 4 * se
    warm_fast = float(np.mean(ids[:, 0] < 5))
    warm_dense = float(np.mean(didx < 5))
    assert abs(warm_fast - warm_dense) < 4 * math.sqrt(0.25 * 2 / 3000)


@pytest.mark.timeout(5)
def test_in_slate_fill_round_robin_skips_duplicates() -> None:
    top = np.array([[0, 1, 2], [0, 3, 1], [4, 0, 5]])
    sc = np.arange(9, dtype=float).reshape(3, 3)
    ids, scores = in_slate_fill(top, sc, np.array([[0, 1, 2], [2, 1, 0]]), 3)
    # draw order 0,1,2: best of each = 0, (0 dup), 4; then second choices 1, ...
    assert ids.tolist() == [[0, 4, 1], [4, 0, 3]]
    assert scores[0].tolist() == [0.0, 6.0, 1.0]


@pytest.mark.timeout(5)
def test_in_slate_fill_matches_a_plain_loop() -> None:
    """Random rankings with many shared items (ids from a small range): same slates and scores
    as walking each slate's draws rank by rank in Python."""
    rng = np.random.default_rng(4)
    k, n_draws = 6, 14
    top = np.array([rng.choice(9, k, replace=False) for _ in range(n_draws)])
    sc = -np.sort(-rng.random((n_draws, k)), axis=1)
    orders = np.array([rng.choice(n_draws, k, replace=False) for _ in range(40)])
    ids, scores = in_slate_fill(top, sc, orders, k)
    for d, order in enumerate(orders):
        want: list[tuple[int, float]] = []
        for rank in range(k):
            for draw in order:
                item = int(top[draw, rank])
                if len(want) < k and item not in [w[0] for w in want]:
                    want.append((item, float(sc[draw, rank])))
        assert ids[d].tolist() == [w[0] for w in want]
        assert scores[d].tolist() == [w[1] for w in want]


@pytest.mark.timeout(5)
def test_linear_posterior_learns_and_keeps_prior_for_unknown_items() -> None:
    emb = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}
    post = LinearGaussianPosterior(emb, item_dim=2, prior_precision=10.0, noise_variance=0.1)
    cov0 = np.trace(post.cov)
    for _ in range(20):
        post.update(Feedback(("a", "b"), (0,)))
    m = post.mean_scores(["a", "b", "new"])
    assert m[0] > 0.5 > m[1]
    assert np.trace(post.cov) < cov0
    rng = np.random.default_rng(0)
    s = post.sample_scores(["a", "b", "new"], 500, rng)
    assert s.shape == (500, 3)
    assert s[:, 2].std() > s[:, 0].std()  # the never-seen item is the uncertain one
    with pytest.raises(ValueError, match="size"):
        LinearGaussianPosterior({"a": np.ones(3)}, item_dim=2).mean_scores(["a"])


@pytest.mark.timeout(10)
def test_linear_posterior_temperature_scales_the_draw_variance() -> None:
    """At temperature tau, scores x.w of draws have mean mu.x and variance tau * x' Sigma x;
    means and updates are those of the untempered posterior."""
    emb = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0]), "c": np.array([0.6, -0.3])}
    exact = LinearGaussianPosterior(emb, item_dim=2, user_dim=1, prior_precision=4.0)
    cool = LinearGaussianPosterior(
        emb, item_dim=2, user_dim=1, prior_precision=4.0, temperature=0.25
    )
    for post in (exact, cool):
        for _ in range(10):
            post.update(Feedback(("a", "b"), (0,), context={"features": [1.0]}))
            post.update(Feedback(("b", "c"), (0,), context={"features": [-0.5]}))
    np.testing.assert_array_equal(cool.mu, exact.mu)
    np.testing.assert_array_equal(cool.cov, exact.cov)
    items, ctx = ["a", "b", "c", "new"], {"features": [0.3]}
    np.testing.assert_array_equal(cool.mean_scores(items, ctx), exact.mean_scores(items, ctx))
    x = cool.features(items, ctx)
    mean, var = x @ cool.mu, 0.25 * np.einsum("ij,jk,ik->i", x, cool.cov, x)
    n = 40_000
    s = cool.sample_scores(items, n, np.random.default_rng(0), ctx)
    assert s.shape == (n, len(items))
    np.testing.assert_array_less(np.abs(s.mean(axis=0) - mean), 4 * np.sqrt(var / n))
    # sample variance: relative s.e. sqrt(2 / n) = 0.7%; tau^2 or sqrt(tau) would be 4x / 2x off
    np.testing.assert_allclose(s.var(axis=0), var, rtol=0.03)
    # tau = 1 draws exactly as before (the default), from the same random numbers
    default = LinearGaussianPosterior(emb, item_dim=2, user_dim=1, prior_precision=4.0)
    one = LinearGaussianPosterior(emb, item_dim=2, user_dim=1, prior_precision=4.0, temperature=1)
    np.testing.assert_array_equal(
        one.sample_scores(items, 5, np.random.default_rng(1), ctx),
        default.sample_scores(items, 5, np.random.default_rng(1), ctx),
    )


@pytest.mark.timeout(5)
@pytest.mark.parametrize("tau", [0.0, -0.5, float("nan"), float("inf"), "0.5", None])
def test_linear_posterior_rejects_invalid_temperatures(tau: object) -> None:
    with pytest.raises(ValueError, match="temperature"):
        LinearGaussianPosterior({}, item_dim=2, temperature=tau)  # type: ignore[arg-type]


@pytest.mark.timeout(5)
def test_linear_posterior_with_user_features_personalises() -> None:
    emb = {"a": np.array([1.0]), "b": np.array([-1.0])}
    post = LinearGaussianPosterior(emb, item_dim=1, user_dim=1, prior_precision=5.0)
    for _ in range(30):  # users with +1 click a, users with -1 click b
        post.update(Feedback(("a", "b"), (0,), context={"features": [1.0]}))
        post.update(Feedback(("a", "b"), (1,), context={"features": [-1.0]}))
    plus = post.mean_scores(["a", "b"], {"features": [1.0]})
    minus = post.mean_scores(["a", "b"], {"features": [-1.0]})
    assert plus[0] > plus[1] and minus[1] > minus[0]
