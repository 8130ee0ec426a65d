"""The bandit experiment's helpers: tempered policy names, report order, paired differences."""

from __future__ import annotations

import numpy as np
import pytest

from bandits import BetaBernoulliPosterior, ContextualThompsonSampling, LinearGaussianPosterior
from bandits.simulators import SyntheticSimulator
from bench.experiments_bandits import make_policy, ordered, paired_vs, split_temperature


@pytest.mark.timeout(5)
def test_temperature_suffix_builds_a_tempered_posterior() -> None:
    assert split_temperature("in-slate-ts@0.125") == ("in-slate-ts", 0.125)
    assert split_temperature("greedy") == ("greedy", 1.0)
    with pytest.raises(ValueError, match="temperature"):
        split_temperature("greedy@0.5")
    sim = SyntheticSimulator(n_users=5, n_items=20, seed=0)
    policy = make_policy("ts@0.25", sim, (2.0, 30.0), seed=1)
    post = policy.posterior  # type: ignore[attr-defined]
    assert isinstance(post, BetaBernoulliPosterior)
    assert (post.temperature, post.prior_alpha, post.prior_beta) == (0.25, 2.0, 30.0)


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    "name, in_slate, tau",
    [
        ("contextual-ts", False, 1.0),
        ("contextual-ts@0.125", False, 0.125),
        ("contextual-in-slate-ts", True, 1.0),
        ("contextual-in-slate-ts@0.0625", True, 0.0625),
    ],
)
def test_temperature_suffix_of_the_contextual_policies(
    name: str, in_slate: bool, tau: float
) -> None:
    assert split_temperature(name) == (name.partition("@")[0], tau)
    sim = SyntheticSimulator(n_users=5, n_items=20, seed=0)
    policy = make_policy(name, sim, (2.0, 30.0), seed=1)
    assert isinstance(policy, ContextualThompsonSampling)
    assert policy.in_slate is in_slate
    post = policy.posterior
    assert isinstance(post, LinearGaussianPosterior)
    assert post.temperature == tau


@pytest.mark.timeout(5)
def test_contextual_greedy_takes_no_temperature() -> None:
    with pytest.raises(ValueError, match="temperature"):
        split_temperature("contextual-greedy@0.5")
    assert ordered(["contextual-greedy", "contextual-ts@0.125", "contextual-ts"]) == [
        "contextual-ts",
        "contextual-ts@0.125",
        "contextual-greedy",
    ]


@pytest.mark.timeout(5)
def test_report_order_and_paired_differences() -> None:
    assert ordered(["greedy", "ts@0.125", "in-slate-ts", "ts"]) == [
        "in-slate-ts",
        "ts",
        "ts@0.125",
        "greedy",
    ]
    runs = [
        {"sim": "s", "policy": p, "seed": seed, "clicks": np.full(10, c)}
        for p, per_seed in (("greedy", (1.0, 2.0, 3.0)), ("ts", (2.0, 2.0, 5.0)))
        for seed, c in enumerate(per_seed)
    ]
    # differences 10, 0, 20 clicks: mean 10, sd 10, s.e. 10 / sqrt(3); ahead in 2 of 3 seeds
    assert paired_vs(runs, "s", "ts", "greedy") == "+10 ± 6 (2/3)"
    assert paired_vs(runs, "s", "greedy", "greedy") == "–"


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "argv",
    [
        ["--policies", "foo"],
        ["--policies", "greedy@0.5"],
        ["--policies", "ts@abc"],
        ["--sims", "nosuchsim"],
        ["--seeds", "0"],
        ["--steps", "0"],
        ["--baseline", "nope"],
    ],
)
def test_bad_arguments_are_usage_errors_before_any_run(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.experiments_bandits import main

    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", "/nonexistent/never-written"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("usage: ") is False and "error:" in err[-1]
