"""Off-policy evaluation: exact unbiasedness by enumeration, coverage of the true CTR on the
simulator over several seeds, and clear errors for missing or zero propensities."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from bandits import (
    BetaBernoulliPosterior,
    EpsilonGreedyPolicy,
    Feedback,
    PropensityError,
    RandomPolicy,
)
from bandits.base import FeedbackError
from bandits.ope import evaluate, load_feedback, parse_feedback_lines
from bandits.simulators import SyntheticSimulator


def _target(items: list[str], epsilon: float = 0.5) -> EpsilonGreedyPolicy:
    post = BetaBernoulliPosterior(1.0, 5.0, learn_examination=False)
    for j, it in enumerate(items):  # a fixed, distinct preference order
        for _ in range(j):
            post.update(Feedback((it,), (0,)))
    return EpsilonGreedyPolicy(post, epsilon=epsilon, update_posterior=False, seed=0)


@pytest.mark.timeout(10)
def test_ips_snips_pi_exactly_unbiased_by_enumeration() -> None:
    """Uniform logging of 2 of 4 items; each (slate, click pattern) is logged as often as its
    probability says (q in {0, .5, 1} keeps counts integral), so the estimate IS the expectation."""
    items = ["a", "b", "c", "d"]
    q = {("a", 0): 1.0, ("a", 1): 0.5, ("b", 0): 0.5, ("b", 1): 0.0, ("c", 0): 0.5}
    q |= {("c", 1): 0.5, ("d", 0): 0.0, ("d", 1): 1.0}
    logs = []
    for slate in itertools.permutations(items, 2):
        p = [q[(slate[0], 0)], q[(slate[1], 1)]]
        for pattern in itertools.product([0, 1], repeat=2):
            prob = np.prod([p[j] if pattern[j] else 1 - p[j] for j in range(2)])
            clicks = tuple(j for j in range(2) if pattern[j])
            copies = round(float(prob) * 4)
            logs += [Feedback(slate, clicks, (0.25, 0.25), candidates=tuple(items))] * copies
    assert len(logs) == 12 * 4
    target = _target(items)
    marg = target.marginals(items, 2)
    truth = sum(marg[i, p] * q[(it, p)] for i, it in enumerate(items) for p in range(2))
    res = evaluate(logs, target, estimators=("ips", "snips", "pi"))
    assert res["ips"].estimate == pytest.approx(truth, abs=1e-12)
    assert res["snips"].estimate == pytest.approx(truth, abs=1e-12)
    assert res["pi"].estimate == pytest.approx(truth, abs=1e-12)


def _simulate_logs(sim: SyntheticSimulator, n: int, k: int, seed: int) -> list[Feedback]:
    logger = RandomPolicy(seed=seed)
    logs = []
    for _ in range(n):
        req = sim.next_request()
        s = logger.select(req.candidates, k)
        logs.append(sim.respond(req, s.items, s.propensities))
    return logs


def _true_value(sim: SyntheticSimulator, marg: np.ndarray, cands: tuple[str, ...]) -> float:
    """Exact expected clicks per slate of a non-contextual policy (uniform users)."""
    from bandits.simulators import Request

    rho = np.mean(
        [sim.attractiveness(Request("u", u, cands), cands) for u in range(sim.n_users)], axis=0
    )
    return float((marg * rho[:, None] * sim.examination[None, : marg.shape[1]]).sum())


@pytest.mark.timeout(60)
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ope_covers_the_on_policy_ctr(seed: int) -> None:
    """Random logging (exact propensities 1/20) -> estimates of an epsilon-greedy target: the
    99% CIs of IPS, SNIPS, DR and PI contain the target's true expected clicks, which itself lies
    in the 99% CI of an on-policy simulation of the target; and the CIs are informative."""
    k = 4
    sim = SyntheticSimulator(n_users=50, n_items=20, churn_rate=0.0, seed=seed)
    cands = tuple(sim.live)
    # the target learned elsewhere: a posterior trained on earlier random-logging history
    post = BetaBernoulliPosterior(1.0, 20.0)
    for fb in _simulate_logs(sim, 1500, k, seed + 100):
        post.update(fb)
    logs = _simulate_logs(sim, 6000, k, seed)
    target = EpsilonGreedyPolicy(post, epsilon=0.2, update_posterior=False, seed=seed)
    truth = _true_value(sim, target.marginals(cands, k), cands)
    # on-policy simulation of the frozen target
    rng = np.random.default_rng(seed)
    on = []
    for _ in range(6000):
        req = sim.next_request()
        on.append(len(sim.respond(req, target.select(req.candidates, k, rng=rng).items).clicks))
    on_arr = np.asarray(on, dtype=float)
    half = 2.576 * on_arr.std(ddof=1) / np.sqrt(on_arr.size)
    assert abs(on_arr.mean() - truth) <= half
    res = evaluate(logs, target, alpha=0.01)
    assert set(res) == {"ips", "snips", "dr", "pi"}
    for name, r in res.items():
        assert r.ci_low <= truth <= r.ci_high, (name, r, truth)
        # PI assumes less (additivity, not per-position independence) and pays in variance
        assert r.ci_high - r.ci_low < (1.0 if name == "pi" else 0.6) * truth, (name, r)
        assert 0 < r.ess <= len(logs)
    # negative control: wrong (too large) logged propensities must be caught by the CI
    wrong = [Feedback(fb.slate, fb.clicks, (0.1,) * k) for fb in logs]
    bad = evaluate(wrong, target, estimators=("ips",), alpha=0.01)["ips"]
    assert not bad.ci_low <= truth <= bad.ci_high


@pytest.mark.timeout(10)
def test_missing_propensity_is_rejected_with_a_clear_error() -> None:
    logs = [Feedback(("a", "b"), (0,), (0.5, 0.5)), Feedback(("b", "a"), ())]
    with pytest.raises(PropensityError, match="record 1: no propensities logged"):
        evaluate(logs, RandomPolicy(seed=0))


@pytest.mark.timeout(10)
def test_zero_propensity_is_rejected_with_a_clear_error(tmp_path: Path) -> None:
    good = {"user_id": "u1", "slate": ["a", "b"], "clicks": [1], "propensities": [0.5, 0.5]}
    zero = {"user_id": "u2", "slate": ["a", "b"], "clicks": [], "propensities": [0.5, 0.0]}
    path = tmp_path / "logs.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(zero) + "\n")
    with pytest.raises(PropensityError, match=r"logs.jsonl:3: propensity at position 1 is 0.0"):
        load_feedback(path)
    with pytest.raises(PropensityError, match="not a number"):
        parse_feedback_lines([json.dumps({"slate": ["a"], "propensities": [None]})])
    with pytest.raises(FeedbackError, match=":1: not valid JSON"):
        parse_feedback_lines(["{nope"])
    with pytest.raises(FeedbackError, match="clicked position 2 outside"):
        parse_feedback_lines([json.dumps({"slate": ["a", "b"], "clicks": [2]})])


@pytest.mark.timeout(10)
def test_evaluate_validates_arguments() -> None:
    logs = [Feedback(("a", "b"), (0,), (0.5, 0.5))] * 3
    with pytest.raises(ValueError, match="unknown estimator"):
        evaluate(logs, RandomPolicy(), estimators=("ipw",))
    with pytest.raises(ValueError, match="alpha"):
        evaluate(logs, RandomPolicy(), alpha=1.5)
    with pytest.raises(FeedbackError, match="no feedback records"):
        evaluate([], RandomPolicy())
    # pseudo-inverse only under uniform logging
    skewed = [Feedback(("a", "b"), (0,), (0.9, 0.9))] * 3
    assert "pi" not in evaluate(skewed, RandomPolicy())
