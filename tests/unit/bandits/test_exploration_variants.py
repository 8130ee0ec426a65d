"""The exploration-variants harness: spec parsing, valid slates from every variant, the
subsample filter, and its greedy being the value probe's greedy."""

from __future__ import annotations

import numpy as np
import pytest

from bandits import BetaBernoulliPosterior, Feedback
from bench.exploration_value import greedy_with_free_impressions
from bench.exploration_variants import (
    _in_subsample,
    _Optimistic,
    _SlotTS,
    build,
    main,
    parse,
    run,
)


@pytest.mark.timeout(5)
def test_specs_parse_and_bad_ones_are_refused() -> None:
    assert parse("slot-ts@0.25+top=5") == ("slot-ts", 0.25, {"top": 5})
    assert parse("greedy+prior=0.5+subsample=0.25") == (
        "greedy",
        1.0,
        {"prior": 0.5, "subsample": 0.25},
    )
    assert parse("bayes-ucb+q=0.9") == ("bayes-ucb", 1.0, {"q": 0.9})
    bad_specs = ("foo", "greedy+top=3", "ts+eps=0.1", "ts@0", "ts+prior=-1", "ts+nope=1", "ts+")
    for bad in (*bad_specs, "bayes-ucb+q=1", "ts+q=0.5"):
        with pytest.raises(ValueError):
            parse(bad)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "spec",
    [
        "greedy",
        "ts@0.5",
        "in-slate-ts@0.125+prior=2",
        "satisficing-ts+eps=0.05",
        "slot-ts@0.25+top=3",
        "bayes-ucb+q=0.9",
        "optimistic-in-slate-ts@0.5",
        "persistent-ts@0.5+keep=20",
    ],
)
def test_every_variant_serves_k_distinct_candidates_and_learns(spec: str) -> None:
    select, update = build(spec, (2.0, 36.0), seed=4)
    cands = tuple(f"i{j}" for j in range(40))
    for _ in range(30):
        items = select(cands, 10)
        assert len(items) == 10 and len(set(items)) == 10 and set(items) <= set(cands)
        update(Feedback(slate=items, clicks=(0,)))
    assert select(cands[:4], 10) and len(select(cands[:4], 10)) == 4


@pytest.mark.timeout(10)
def test_slot_ts_keeps_the_best_means_on_top() -> None:
    post = BetaBernoulliPosterior(prior_alpha=2.0, prior_beta=36.0)
    cands = tuple(f"i{j}" for j in range(30))
    for _ in range(20):  # i7 and i3 clicked often: the two best means
        post.update(Feedback(slate=("i7", "i3"), clicks=(0, 1)))
    items = _SlotTS(post, 2, seed=0)(cands, 5)
    assert items[:2] == ("i7", "i3") or items[:2] == ("i3", "i7")


@pytest.mark.timeout(5)
def test_subsample_is_a_nested_share_of_the_catalogue() -> None:
    ids = [f"item-{j}" for j in range(20_000)]
    share = np.mean([_in_subsample(i, 0.25) for i in ids])
    assert 0.23 < share < 0.27
    # nested: a smaller share keeps a subset of a larger one's items
    assert all(_in_subsample(i, 0.5) for i in ids[:2000] if _in_subsample(i, 0.25))


@pytest.mark.timeout(60)
def test_its_greedy_is_the_value_probes_greedy() -> None:
    _, _, total = run(("greedy", 5, 150))
    assert total == pytest.approx(greedy_with_free_impressions(5, 150, 0)["expected_clicks"])
    assert run(("in-slate-ts@0.125", 5, 150))[2] != pytest.approx(total)


@pytest.mark.timeout(5)
def test_bad_variants_are_usage_errors() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["greedy;slot-ts+eps=1"])
    assert exc.value.code == 2


@pytest.mark.timeout(10)
def test_bayes_ucb_prefers_the_uncertain_item_at_equal_means() -> None:
    select, update = build("bayes-ucb+q=0.95", (2.0, 38.0), seed=0)
    for _ in range(200):  # i0: many impressions at the prior's mean CTR (1 click in 20)
        update(Feedback(slate=("i0",), clicks=(0,) if _ % 20 == 0 else ()))
    # i1 never seen: same mean, more spread, so a higher upper quantile
    assert select(("i0", "i1"), 1) == ("i1",)


@pytest.mark.timeout(10)
def test_optimistic_draws_never_fall_below_the_mean() -> None:
    post = BetaBernoulliPosterior(prior_alpha=2.0, prior_beta=36.0)
    for _ in range(30):
        post.update(Feedback(slate=("i0", "i1"), clicks=(0,)))
    cands = ("i0", "i1", "i2")
    draws = _Optimistic(post).sample_scores(cands, 500, np.random.default_rng(1))
    mean = post.mean_scores(cands)
    assert np.all(draws >= mean[None, :])
    # above the mean they are the posterior's own draws: about half of them sit at the mean
    at_mean = (draws == mean[None, :]).mean(axis=0)
    assert np.all((at_mean > 0.35) & (at_mean < 0.75))
