"""The value-of-information probe: plain greedy is the experiment's greedy, free impressions
teach the posterior without touching the simulator's clicks, the oracle is the best blind slate."""

from __future__ import annotations

import numpy as np
import pytest

from bandits import BetaBernoulliPosterior, Feedback
from bandits.simulators import Request, SyntheticSimulator
from bench.experiments_bandits import run_one
from bench.exploration_value import (
    _free_feedback,
    free_items,
    greedy_with_free_impressions,
    main,
    population_oracle,
    report,
)


@pytest.mark.timeout(60)
def test_without_free_impressions_it_is_the_experiments_greedy() -> None:
    steps = 120
    run = run_one(("synthetic", "greedy", 3, steps, "empirical"))
    sim = SyntheticSimulator(seed=3)
    optimal = sum(sim.optimal_expected_clicks(sim.next_request(), 10) for _ in range(steps))
    # run_one's regret is the optimal slate's expected clicks minus the served slate's
    expected = optimal - float(run["regret"].sum())
    got = greedy_with_free_impressions(3, steps, 0)["expected_clicks"]
    assert got == pytest.approx(expected, rel=1e-9)
    assert greedy_with_free_impressions(3, steps, 4)["expected_clicks"] != pytest.approx(got)


@pytest.mark.timeout(10)
def test_free_feedback_uses_its_own_stream_and_the_users_rho() -> None:
    sim = SyntheticSimulator(n_users=3, n_items=30, seed=1)
    req = sim.next_request()
    state = sim.click_rng.bit_generator.state
    items = req.candidates[:20]
    rho = sim.attractiveness(req, items)
    hits = np.zeros(20)
    rng = np.random.default_rng(5)
    for _ in range(400):
        for j, fb in enumerate(_free_feedback(sim, req, items, rng)):
            assert fb.slate == (items[j],) and fb.clicks in ((), (0,))
            hits[j] += bool(fb.clicks)
    assert sim.click_rng.bit_generator.state == state
    # each item clicked at its rho (binomial, 400 trials, 4.5 sd)
    assert np.all(np.abs(hits / 400 - rho) <= 4.5 * np.sqrt(rho * (1 - rho) / 400) + 1e-9)


@pytest.mark.timeout(10)
def test_population_attractiveness_is_rho_averaged_over_users() -> None:
    sim = SyntheticSimulator(n_users=7, n_items=12, seed=2)
    items = sim.live[:5]
    by_user = [sim.attractiveness(Request("u", u, tuple(items)), items) for u in range(7)]
    assert np.allclose(sim.population_attractiveness(items), np.mean(by_user, axis=0))


@pytest.mark.timeout(60)
def test_the_oracle_beats_greedy_and_the_report_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    steps = 200
    greedy = greedy_with_free_impressions(0, steps, 0)
    oracle = population_oracle(0, steps)
    assert oracle > greedy["expected_clicks"]
    assert greedy["cost_per_examined_impression"] > 0
    text = report([{"seed": 0, "runs": {0: greedy, 2: greedy}, "oracle": oracle}], steps, (0, 2))
    assert f"{oracle:.0f} expected clicks" in text
    assert "| 2 | " in text and "+0 ± 0 (0/1)" in text


@pytest.mark.timeout(10)
@pytest.mark.parametrize("argv", [["--free", "a,b"], ["--steps", "1"], ["--free", "-1"]])
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


@pytest.mark.timeout(10)
def test_free_items_are_off_the_slate_and_least_known_first() -> None:
    post = BetaBernoulliPosterior(prior_alpha=2.0, prior_beta=36.0)
    cands = tuple(f"i{j}" for j in range(12))
    for _ in range(3):  # all but i9 and i10 have evidence; i0..i2 will be the slate
        post.update(Feedback(slate=tuple(c for c in cands if c not in ("i9", "i10"))))
    rng = np.random.default_rng(0)
    picked = free_items(post, cands, ("i0", "i1", "i2"), 2, True, rng)
    assert sorted(picked) == ["i10", "i9"]
    for _ in range(20):
        picked = free_items(post, cands, ("i0", "i1", "i2"), 4, False, rng)
        assert len(set(picked)) == 4 and not set(picked) & {"i0", "i1", "i2"}
