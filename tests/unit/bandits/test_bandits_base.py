"""Interface pieces: Feedback validation, the factory, hyperparameter checks, the dependency
rule, and the simulators' bookkeeping."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import bandits
from bandits import (
    EpsilonGreedyPolicy,
    Feedback,
    FeedbackError,
    InSlateThompsonSampling,
    PropensityError,
    make_policy,
)
from bandits.simulators import MovieLensSimulator, SyntheticSimulator


@pytest.mark.timeout(5)
def test_feedback_validation() -> None:
    fb = Feedback(("a", "b", "c"), (2, 0), (1.0, 0.5, 0.25), user_id="u")
    assert fb.click_vector.tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(FeedbackError, match="duplicate"):
        Feedback(("a", "a"))
    with pytest.raises(FeedbackError, match="empty"):
        Feedback(())
    with pytest.raises(FeedbackError, match="outside"):
        Feedback(("a",), (1,))
    with pytest.raises(FeedbackError, match="repeat"):
        Feedback(("a", "b"), (1, 1))
    with pytest.raises(PropensityError, match=r"\(0, 1\]"):
        Feedback(("a", "b"), (), (0.5, 1.5))
    with pytest.raises(PropensityError, match="2 propensities for a slate of 1"):
        Feedback(("a",), (), (0.5, 0.5))
    with pytest.raises(FeedbackError, match="item-id strings"):
        Feedback((1, 2))  # type: ignore[arg-type]
    rec = Feedback.from_dict({"slate": ["x", "y"], "clicks": [1], "user_id": 7})
    assert rec.user_id == "7" and rec.clicks == (1,) and rec.propensities is None
    with pytest.raises(FeedbackError, match="no 'slate'"):
        Feedback.from_dict({"clicks": []})


@pytest.mark.timeout(5)
def test_candidate_tuple_cache_does_not_skip_checks_for_new_input() -> None:
    pol = make_policy("greedy", seed=0)
    cands = ("a", "b", "c")
    assert len(pol.select(cands, 2).items) == 2
    assert len(pol.select(cands, 2).items) == 2  # same tuple: validated once
    with pytest.raises(ValueError, match="duplicate"):
        pol.select(("a", "b", "a"), 2)
    with pytest.raises(ValueError, match="k must be"):
        pol.select(cands, 0)


@pytest.mark.timeout(5)
def test_make_policy_by_name() -> None:
    pol = make_policy("in_slate_ts", prior_alpha=2.0, prior_beta=40.0, seed=3)
    assert isinstance(pol, InSlateThompsonSampling)
    assert pol.posterior.prior_beta == 40.0  # type: ignore[attr-defined]
    assert isinstance(make_policy("epsilon-greedy", epsilon=0.3), EpsilonGreedyPolicy)
    assert set(bandits.POLICIES) >= {"random", "greedy", "ts", "in-slate-ts", "river-ts"}
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("ucb")
    with pytest.raises(ValueError, match="no option 'epsilon'"):
        make_policy("ts", epsilon=0.1)
    with pytest.raises(ValueError, match="takes no posterior options"):
        make_policy("random", prior_beta=3.0)
    with pytest.raises(ValueError, match="prior_beta"):
        make_policy("greedy", prior_beta=-1.0)


@pytest.mark.timeout(30)  # the first `import river` can take seconds
@pytest.mark.parametrize(
    "name, kwargs, msg",
    [
        ("epsilon-greedy", {"epsilon": 1.5}, "epsilon"),
        ("epsilon-greedy", {"epsilon": True}, "epsilon"),
        ("ts", {"propensity_draws": 0}, "propensity_draws"),
        ("in-slate-ts", {"propensity_pool": -1}, "propensity_pool"),
        ("greedy", {"seed": -2}, "seed"),
        ("greedy", {"posterior": object()}, "posterior must implement"),
        ("river-ts", {"prior_alpha": 0}, "prior_alpha"),
        ("contextual-ts", {"embeddings": {}, "item_dim": 0}, "item_dim"),
    ],
)
def test_hyperparameters_validated_in_init(name: str, kwargs: dict[str, object], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        make_policy(name, **kwargs)


@pytest.mark.timeout(5)
def test_bandits_never_imports_streams_models_kafka_or_faust() -> None:
    root = Path(bandits.__file__).parent
    banned = {"streams", "models", "faust", "kafka", "aiokafka"}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert n.split(".")[0] not in banned, f"{path.name} imports {n}"


@pytest.mark.timeout(10)
def test_synthetic_simulator_churn_and_regret() -> None:
    sim = SyntheticSimulator(n_items=50, churn_rate=0.01, seed=0)
    first = set(sim.next_request().candidates)
    for _ in range(200):
        req = sim.next_request()
    assert len(req.candidates) == 50 and sim.n_new_items > 0
    assert first - set(req.candidates)  # some items retired, new ones arrived
    best = sim.optimal_expected_clicks(req, 5)
    rho = sim.attractiveness(req, req.candidates)
    top = [req.candidates[j] for j in np.argsort(-rho)[:5]]
    assert sim.expected_clicks(req, top) == pytest.approx(best)
    assert sim.expected_clicks(req, top[::-1]) < best
    # paired runs: the request stream does not depend on the clicks drawn
    a, b = SyntheticSimulator(seed=4), SyntheticSimulator(seed=4)
    for _ in range(50):
        ra, rb = a.next_request(), b.next_request()
        a.respond(ra, ra.candidates[:5])
        assert ra.user == rb.user and ra.candidates == rb.candidates


@pytest.mark.timeout(10)
def test_movielens_simulator_from_arrays() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, n = 40, 60, 2000
    users = rng.integers(0, n_users, n)
    items = rng.integers(0, n_items, n)
    ratings = rng.integers(1, 6, n).astype(float)
    ts = np.sort(rng.integers(0, 90 * 86400, n))
    cats = rng.integers(0, 5, n_items)
    sim = MovieLensSimulator(
        users, items, ratings, ts, cats, horizon=300, n_candidates=20, n_factors=5, seed=0
    )
    reqs = [sim.next_request() for _ in range(300)]
    assert all(len(r.candidates) == 20 for r in reqs)
    assert len({c for r in reqs for c in r.candidates}) > 20  # the candidate set churns
    p = sim.click_probabilities(reqs[0], reqs[0].candidates[:10])
    assert np.all((p > 0) & (p < 1))
    assert 1 <= sim.diversity(reqs[0].candidates[:10]) <= 5
    with pytest.raises(ValueError, match="one entry per item"):
        MovieLensSimulator(users, items, ratings, ts, cats[:3], horizon=10)
