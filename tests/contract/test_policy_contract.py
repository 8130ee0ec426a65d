"""One contract suite, run over every slate policy (River style): determinism under a seed,
valid slates, propensities in (0, 1] consistent with selection frequencies, learning direction,
and never-seen items."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from bandits import (
    BayesUCBPolicy,
    BetaBernoulliPosterior,
    ContextualThompsonSampling,
    EpsilonGreedyPolicy,
    Feedback,
    GreedyPolicy,
    InSlateThompsonSampling,
    RandomPolicy,
    RiverTopKThompson,
    SlatePolicy,
    ThompsonSamplingPolicy,
)

ITEMS = [f"it{j}" for j in range(8)]
EMB = {it: np.eye(8)[j] for j, it in enumerate(ITEMS)}


class ToyGaussianSampler:
    """An 'external' posterior (like the GRU adapter): dense samples only, its own update."""

    def __init__(self) -> None:
        self.mean: dict[str, float] = {}
        self.count: dict[str, float] = {}

    def mean_scores(
        self, candidates: Sequence[str], context: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        return np.array([self.mean.get(c, 0.05) for c in candidates])

    def sample_scores(
        self,
        candidates: Sequence[str],
        n_samples: int,
        rng: np.random.Generator,
        context: Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        sd = np.array([0.1 / np.sqrt(1.0 + self.count.get(c, 0.0)) for c in candidates])
        return self.mean_scores(candidates) + sd * rng.standard_normal((n_samples, sd.size))

    def update(self, feedback: Feedback) -> None:
        clicked = set(feedback.clicks)
        for p, it in enumerate(feedback.slate):
            n = self.count.get(it, 0.0)
            m = self.mean.get(it, 0.05)
            self.mean[it] = (m * (n + 1) + (1.0 if p in clicked else 0.0)) / (n + 2)
            self.count[it] = n + 1


class ToyBatchSampler(ToyGaussianSampler):
    """The same posterior with the batched draw a scorer uses (`BatchSampler`): policies over
    it rank every slate, also a single one, through `select_many`."""

    def sample_scores_many(
        self,
        asks: Sequence[tuple[Sequence[str], Mapping[str, Any] | None]],
        n_samples: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        width = max(len(c) for c, _ in asks)
        out = np.full((len(asks), n_samples, width), -np.inf)
        for b, (cands, ctx) in enumerate(asks):
            out[b, :, : len(cands)] = self.sample_scores(cands, n_samples, rng, ctx)
        return out


FACTORIES: dict[str, Callable[[int], SlatePolicy]] = {
    "random": lambda s: RandomPolicy(seed=s),
    "greedy": lambda s: GreedyPolicy(BetaBernoulliPosterior(1.0, 10.0), seed=s),
    "bayes-ucb": lambda s: BayesUCBPolicy(BetaBernoulliPosterior(1.0, 10.0), 0.9, seed=s),
    "epsilon-greedy": lambda s: EpsilonGreedyPolicy(
        BetaBernoulliPosterior(1.0, 10.0), epsilon=0.2, seed=s
    ),
    "ts": lambda s: ThompsonSamplingPolicy(
        BetaBernoulliPosterior(1.0, 10.0), propensity_draws=64, seed=s
    ),
    "in-slate-ts": lambda s: InSlateThompsonSampling(
        BetaBernoulliPosterior(1.0, 10.0), propensity_draws=64, propensity_pool=0, seed=s
    ),
    "in-slate-ts-external": lambda s: InSlateThompsonSampling(
        ToyGaussianSampler(), propensity_draws=64, seed=s
    ),
    "ts-batched": lambda s: ThompsonSamplingPolicy(ToyBatchSampler(), propensity_draws=64, seed=s),
    "in-slate-ts-batched": lambda s: InSlateThompsonSampling(
        ToyBatchSampler(), propensity_draws=64, seed=s
    ),
    "contextual-ts": lambda s: ContextualThompsonSampling(
        EMB, 8, prior_precision=25.0, noise_variance=0.1, prior_mean_bias=0.1, seed=s
    ),
    "contextual-in-slate-ts": lambda s: ContextualThompsonSampling(
        EMB.get, 8, prior_precision=25.0, prior_mean_bias=0.1, in_slate=True, seed=s
    ),
    "river-ts": lambda s: RiverTopKThompson(1.0, 10.0, propensity_draws=64, seed=s),
}
EXACT = {"random", "greedy", "epsilon-greedy", "bayes-ucb"}
POOLED = {
    "in-slate-ts-external",
    "in-slate-ts-batched",
}  # default shared pool of k draws: unbiased but noisier


def _warm(policy: SlatePolicy, rounds: int = 30) -> None:
    """Give the policy some history: it0/it1 clicked often, the rest rarely."""
    rng = np.random.default_rng(7)
    for _ in range(rounds):
        slate = tuple(rng.permutation(ITEMS[:6])[:3])
        clicks = tuple(
            p for p, it in enumerate(slate) if it in ("it0", "it1") or rng.random() < 0.05
        )
        policy.update(Feedback(slate, clicks))


@pytest.fixture(params=sorted(FACTORIES))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.timeout(20)
def test_deterministic_under_seed(name: str) -> None:
    runs = []
    for _ in range(2):
        pol = FACTORIES[name](3)
        _warm(pol)
        out = [pol.select(ITEMS, 4) for _ in range(5)]
        runs.append([(s.items, s.propensities.round(12).tolist()) for s in out])
    assert runs[0] == runs[1]


@pytest.mark.timeout(20)
def test_valid_slates(name: str) -> None:
    pol = FACTORIES[name](0)
    _warm(pol)
    for k in (1, 3, 8, 12):
        s = pol.select(ITEMS, k)
        assert len(s.items) == min(k, len(ITEMS)) == len(set(s.items))
        assert set(s.items) <= set(ITEMS)
        assert s.scores.shape == s.propensities.shape == (len(s.items),)
        assert np.all(np.isfinite(s.scores))
        assert np.all((s.propensities > 0) & (s.propensities <= 1))
    assert pol.select(ITEMS[:2], 5).items.__len__() == 2
    assert pol.select((), 3).items == ()
    with pytest.raises(ValueError, match="duplicate"):
        pol.select(["a", "a", "b"], 2)
    with pytest.raises(ValueError, match="k must be"):
        pol.select(ITEMS, 0)
    with pytest.raises(TypeError):
        pol.select("abc", 2)


@pytest.mark.timeout(40)
def test_select_many_ranks_each_ask_as_select_would(name: str) -> None:
    """A batch of asks (different candidates, k, one without candidates) gets one valid slate
    each, from its own candidates; a batch of one is `select` itself (same draws); and each
    ask's served slates follow its own marginals, however the batch mixes them."""
    pol, twin = FACTORIES[name](4), FACTORIES[name](4)
    _warm(pol)
    _warm(twin)
    assert pol.select_many([(ITEMS, 3, None)])[0].items == twin.select(ITEMS, 3).items
    asks = [(ITEMS[:6], 3, None), (ITEMS[2:], 2, None), ((), 3, None), (ITEMS[5:], 5, None)]
    counts = [np.zeros((len(c), max(min(k, len(c)), 1))) for c, k, _ in asks]
    n = 600
    for _ in range(n):
        slates = pol.select_many(asks)
        assert len(slates) == len(asks)
        for (cands, k, _), slate, count in zip(asks, slates, counts, strict=True):
            assert len(slate.items) == min(k, len(cands)) == len(set(slate.items))
            assert set(slate.items) <= set(cands)
            assert np.all((slate.propensities > 0) & (slate.propensities <= 1))
            for p, it in enumerate(slate.items):
                count[list(cands).index(it), p] += 1
    rng = np.random.default_rng(12)
    for (cands, k, _), count in zip(asks, counts, strict=True):
        if not cands:
            continue
        marg = pol.marginals(cands, k, rng=rng)
        tol = 4.5 * np.sqrt(marg * (1 - marg) * (1 / n + 1 / 2000)) + 0.01
        assert np.all(np.abs(count / n - marg) <= tol), (cands, (count / n).round(3), marg.round(3))
    with pytest.raises(ValueError, match="duplicate"):
        pol.select_many([(ITEMS, 2, None), (["a", "a"], 1, None)])


@pytest.mark.timeout(40)
def test_propensities_match_selection_frequencies(name: str) -> None:
    pol = FACTORIES[name](1)
    _warm(pol)
    cands, k, n = ITEMS[:6], 3, 1500
    rng = np.random.default_rng(11)
    marg = pol.marginals(cands, k, rng=rng)
    assert marg.shape == (6, 3)
    np.testing.assert_allclose(marg.sum(axis=0), 1.0, atol=1e-9)
    assert np.all(marg.sum(axis=1) <= 1.0 + 1e-9)
    freq = np.zeros((6, 3))
    errs = []
    for _ in range(n):
        s = pol.select(cands, k)
        for p, it in enumerate(s.items):
            j = cands.index(it)
            freq[j, p] += 1
            errs.append(s.propensities[p] - marg[j, p])
    freq /= n
    # binomial noise of both the frequencies and (for Monte Carlo policies) the 2000-draw marginals
    tol = 4.5 * np.sqrt(marg * (1 - marg) * (1 / n + 1 / 2000)) + 0.01
    assert np.all(np.abs(freq - marg) <= tol), (freq.round(3), marg.round(3))
    errs_arr = np.asarray(errs)
    if name in EXACT:
        np.testing.assert_allclose(errs_arr, 0.0, atol=1e-6)
    else:
        # unbiased 64-draw estimates, each including the served slate: small average error
        assert abs(errs_arr.mean()) < 0.06
        assert np.abs(errs_arr).mean() < (0.25 if name in POOLED else 0.12)


@pytest.mark.timeout(20)
def test_update_moves_posterior_the_right_way(name: str) -> None:
    cands, k = ITEMS[:6], 2
    pol = FACTORIES[name](2)
    _warm(pol, rounds=10)
    rng = np.random.default_rng(5)
    before = pol.marginals(cands, k, rng=rng)[cands.index("it4")].sum()
    for _ in range(40):
        pol.update(Feedback(("it4", "it5"), (0,)))
    after_click = pol.marginals(cands, k, rng=rng)[cands.index("it4")].sum()
    for _ in range(400):
        pol.update(Feedback(("it4", "it2"), ()))
    after_miss = pol.marginals(cands, k, rng=rng)[cands.index("it4")].sum()
    if name == "random":
        assert before == after_click == after_miss  # stateless by design
    else:
        assert after_click > before + 0.05
        assert after_miss < after_click - 0.05


@pytest.mark.timeout(20)
def test_never_seen_items_use_the_prior(name: str) -> None:
    pol = FACTORIES[name](9)
    old, new = ITEMS[:3], ITEMS[5:]  # old items never get clicked; new ones arrive (churn)
    for _ in range(60):
        pol.update(Feedback(tuple(old), ()))
    picks = [it for _ in range(60) for it in pol.select(old + new, 2).items]
    n_new = sum(it in new for it in picks)
    if name == "random":
        assert 0.3 < n_new / len(picks) < 0.7
        return
    if name.startswith("contextual"):
        # the shared bias also learns from the old items, so new ones start lower than a
        # per-item prior would put them; still the majority
        assert n_new > 1.2 * (len(picks) - n_new)
        return
    assert n_new > 3 * (len(picks) - n_new)
    if name == "greedy":  # prior mean 1/11 beats every old item's lowered mean
        assert n_new == len(picks)
    if name in {"in-slate-ts", "ts"}:
        # an old item still wins a draw now and then (~13% of picks over 40 seeds)
        assert n_new > 0.75 * len(picks)
