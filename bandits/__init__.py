"""Slate bandits: Thompson-sampling slate policies with propensities, off-policy evaluation and
simulators. Never imports streams/, models/, Kafka or Faust."""

from __future__ import annotations

import inspect
from typing import Any

from bandits.base import (
    BanditError,
    Feedback,
    FeedbackError,
    PosteriorSampler,
    PropensityError,
    QuantileScorer,
    Slate,
    SlatePolicy,
    TopKSampler,
    UpdatablePosterior,
)
from bandits.linear_posterior import LinearGaussianPosterior
from bandits.peers import RiverTopKThompson
from bandits.policies import (
    BayesUCBPolicy,
    ContextualThompsonSampling,
    EpsilonGreedyPolicy,
    GreedyPolicy,
    InSlateThompsonSampling,
    RandomPolicy,
    ThompsonSamplingPolicy,
)
from bandits.posteriors import BetaBernoulliPosterior

__all__ = [
    "POLICIES",
    "BanditError",
    "BayesUCBPolicy",
    "BetaBernoulliPosterior",
    "ContextualThompsonSampling",
    "EpsilonGreedyPolicy",
    "Feedback",
    "FeedbackError",
    "GreedyPolicy",
    "InSlateThompsonSampling",
    "LinearGaussianPosterior",
    "PosteriorSampler",
    "PropensityError",
    "QuantileScorer",
    "RandomPolicy",
    "RiverTopKThompson",
    "Slate",
    "SlatePolicy",
    "ThompsonSamplingPolicy",
    "TopKSampler",
    "UpdatablePosterior",
    "make_policy",
]

POLICIES: dict[str, type[SlatePolicy]] = {
    "random": RandomPolicy,
    "greedy": GreedyPolicy,
    "epsilon-greedy": EpsilonGreedyPolicy,
    "bayes-ucb": BayesUCBPolicy,
    "ts": ThompsonSamplingPolicy,
    "in-slate-ts": InSlateThompsonSampling,
    "contextual-ts": ContextualThompsonSampling,
    "river-ts": RiverTopKThompson,
}

_POSTERIOR_KEYS = set(inspect.signature(BetaBernoulliPosterior).parameters)


def make_policy(name: str, **kwargs: Any) -> SlatePolicy:
    """Build a policy by name. Keyword arguments go to the policy; Beta-posterior ones
    (prior_alpha, prior_beta, discount, examination, ...) build its BetaBernoulliPosterior
    unless a `posterior` (any PosteriorSampler, e.g. an adapter over the Bayesian GRU) is given.

    >>> make_policy("in-slate-ts", prior_beta=30.0, seed=1).name
    'in-slate-ts'
    """
    key = name.strip().lower().replace("_", "-")
    cls = POLICIES.get(key)
    if cls is None:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")
    params = inspect.signature(cls).parameters
    post_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in _POSTERIOR_KEYS and k not in params}
    if post_kw:
        if "posterior" not in params:
            raise ValueError(f"policy {key!r} takes no posterior options: {', '.join(post_kw)}")
        if kwargs.get("posterior") is not None:
            raise ValueError("give either a posterior or Beta-posterior options, not both")
        kwargs["posterior"] = BetaBernoulliPosterior(**post_kw)
    bad = [k for k in kwargs if k not in params]
    if bad:
        raise ValueError(f"policy {key!r} has no option {bad[0]!r}")
    return cls(**kwargs)
