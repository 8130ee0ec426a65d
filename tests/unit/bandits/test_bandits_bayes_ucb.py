"""Bayes-UCB: the posterior's quantiles, the policy's ranking, exact propensities, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from bandits import BayesUCBPolicy, BetaBernoulliPosterior, Feedback, make_policy
from bandits.simulators import SyntheticSimulator
from tests.contract.test_policy_contract import ToyGaussianSampler


@pytest.mark.timeout(10)
def test_quantiles_are_the_beta_posteriors() -> None:
    post = BetaBernoulliPosterior(prior_alpha=2.0, prior_beta=30.0)
    for _ in range(10):
        post.update(Feedback(slate=("a",), clicks=(0,)))
    a, b = post.params(["a", "new"])
    draws = np.random.default_rng(0).beta(a, b, size=(200_000, 2))
    for q in (0.1, 0.5, 0.9, 0.98):
        got = post.quantile_scores(["a", "new"], q)
        assert np.allclose(got, np.quantile(draws, q, axis=0), rtol=0.02)
    # the temperature shapes draws only
    hot = BetaBernoulliPosterior(prior_alpha=2.0, prior_beta=30.0, temperature=0.25)
    assert hot.quantile_scores(["x"], 0.9) == pytest.approx(post.quantile_scores(["x"], 0.9))


@pytest.mark.timeout(10)
def test_a_new_item_outranks_a_known_one_of_the_same_mean() -> None:
    pol = BayesUCBPolicy(BetaBernoulliPosterior(prior_alpha=2.0, prior_beta=38.0), 0.95, seed=1)
    for j in range(400):  # 'old': 20 clicks in 400 top impressions, the prior's mean 0.05
        pol.update(Feedback(slate=("old",), clicks=(0,) if j % 20 == 0 else ()))
    slate = pol.select(("old", "new"), 1)
    assert slate.items == ("new",) and slate.propensities.tolist() == [1.0]
    # greedy on the same posterior: a tie at the mean is broken at random
    means = pol.posterior.mean_scores(("old", "new"))
    assert means[0] == pytest.approx(means[1], abs=2e-3)


@pytest.mark.timeout(30)
def test_it_learns_on_the_simulator() -> None:
    sim = SyntheticSimulator(n_users=50, n_items=40, churn_rate=0.0, seed=3)
    pol = make_policy("bayes-ucb", prior_alpha=2.0, prior_beta=36.0, quantile=0.95, seed=3)
    early = late = 0.0
    for t in range(1500):
        req = sim.next_request()
        slate = pol.select(req.candidates, 5)
        pol.update(sim.respond(req, slate.items))
        v = sim.expected_clicks(req, slate.items)
        early += v if t < 300 else 0.0
        late += v if t >= 1200 else 0.0
    assert late > 1.3 * early


@pytest.mark.timeout(5)
@pytest.mark.parametrize("q", [0.0, 1.0, -0.5, 2, True, "0.9"])
def test_bad_quantiles_are_refused(q: object) -> None:
    with pytest.raises(ValueError, match="quantile"):
        BayesUCBPolicy(quantile=q)  # type: ignore[arg-type]


@pytest.mark.timeout(5)
def test_a_posterior_without_quantiles_is_refused() -> None:
    with pytest.raises(ValueError, match="quantile_scores"):
        BayesUCBPolicy(ToyGaussianSampler())
