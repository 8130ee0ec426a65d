"""What exploration is worth on the synthetic simulator: greedy given free random impressions
(the value of information) beside what an exploratory impression costs, and the population
oracle (the ceiling of any policy without user features).
Run: PYTHONPATH=. python -m bench.exploration_value --seeds 12 [--churn 0.002]"""

from __future__ import annotations

import argparse
import sys
from multiprocessing import get_context
from typing import Any

import numpy as np

from bandits import BetaBernoulliPosterior, Feedback, GreedyPolicy
from bandits.simulators import Request, SyntheticSimulator
from bench.experiments_bandits import K, empirical_prior, make_policy, make_sim, override_churn


def _free_feedback(
    sim: SyntheticSimulator, req: Request, items: tuple[str, ...], rng: np.random.Generator
) -> list[Feedback]:
    """Each item shown alone at the top (examined for sure), clicked with its rho for this
    user; drawn from `rng`, so the simulator's own click stream is left as it is."""
    rho = sim.attractiveness(req, items)
    hit = rng.random(len(items)) < rho
    return [
        Feedback(slate=(it,), clicks=(0,) if h else (), user_id=req.user_id)
        for it, h in zip(items, hit, strict=True)
    ]


def free_items(
    posterior: BetaBernoulliPosterior,
    candidates: tuple[str, ...],
    slate: tuple[str, ...],
    free: int,
    least_known: bool,
    rng: np.random.Generator,
) -> tuple[str, ...]:
    """`free` candidates off the slate: at random, or those with the least evidence (fewest
    effective impressions; ties at random)."""
    shown = set(slate)
    rest = [c for c in candidates if c not in shown]
    if least_known:
        a, b = posterior.params(rest)
        pick = np.lexsort((rng.random(len(rest)), a + b))[:free]
    else:
        pick = rng.choice(len(rest), size=min(free, len(rest)), replace=False)
    return tuple(rest[j] for j in pick)


def greedy_with_free_impressions(
    seed: int, steps: int, free: int, least_known: bool = False
) -> dict[str, float]:
    """Greedy (the experiment's prior) that also learns from `free` random live candidates
    per request, off the slate, shown at no cost (`least_known`: the live candidates with
    the least evidence instead). Returns the expected clicks of its slates and, over the
    second half, the mean rho gap between its slate (weighted by examination) and a random
    live candidate: what one examined exploratory impression would cost it."""
    sim = make_sim("synthetic", seed, steps)
    assert isinstance(sim, SyntheticSimulator)
    policy = make_policy("greedy", sim, empirical_prior("synthetic", seed, steps), seed)
    assert isinstance(policy, GreedyPolicy)
    rng = np.random.default_rng([seed, 77])
    expected = 0.0
    gaps = []
    for t in range(steps):
        req = sim.next_request()
        slate = policy.select(req.candidates, K, req.context)
        expected += sim.expected_clicks(req, slate.items)
        policy.update(sim.respond(req, slate.items, slate.propensities))
        if t >= steps // 2:
            exam = sim.examination[: len(slate.items)]
            on_slate = float(exam @ sim.attractiveness(req, slate.items) / exam.sum())
            gaps.append(on_slate - float(sim.attractiveness(req, req.candidates).mean()))
        if free:
            items = free_items(
                policy.posterior, req.candidates, slate.items, free, least_known, rng
            )
            for fb in _free_feedback(sim, req, items, rng):
                policy.update(fb)
    return {"expected_clicks": expected, "cost_per_examined_impression": float(np.mean(gaps))}


def population_oracle(seed: int, steps: int) -> float:
    """Expected clicks of the slate of the items with the highest rho averaged over all users
    (known exactly): the most any policy that ignores who is asking can expect."""
    sim = make_sim("synthetic", seed, steps)
    assert isinstance(sim, SyntheticSimulator)
    mean_rho: dict[str, float] = {}
    total = 0.0
    for _ in range(steps):
        req = sim.next_request()
        new = [it for it in req.candidates if it not in mean_rho]
        if new:
            mean_rho.update(zip(new, sim.population_attractiveness(new).tolist(), strict=True))
        scores = np.fromiter((mean_rho[i] for i in req.candidates), float, len(req.candidates))
        best = np.argsort(-scores, kind="stable")[:K]
        total += sim.expected_clicks(req, tuple(req.candidates[j] for j in best))
    return total


def _one(args: tuple[int, int, tuple[int, ...], bool]) -> dict[str, Any]:
    seed, steps, frees, least_known = args
    runs = {m: greedy_with_free_impressions(seed, steps, m, least_known) for m in frees}
    return {"seed": seed, "runs": runs, "oracle": population_oracle(seed, steps)}


def report(results: list[dict[str, Any]], steps: int, frees: tuple[int, ...]) -> str:
    """Markdown: expected clicks per free-impression count, paired gain over plain greedy,
    the gain per free impression, and the cost of an exploratory impression."""
    base = np.array([r["runs"][0]["expected_clicks"] for r in results])
    n = len(results)
    rows = [
        "| greedy + free impressions per request | expected clicks | gain, paired (wins) "
        "| gain per free impression |",
        "|---|---:|---:|---:|",
    ]
    for m in frees:
        v = np.array([r["runs"][m]["expected_clicks"] for r in results])
        d = v - base
        se = d.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0
        per = f"{d.mean() / (m * steps):.4f}" if m else "–"
        gain = f"{d.mean():+.0f} ± {se:.0f} ({int((d > 0).sum())}/{n})" if m else "–"
        rows.append(f"| {m} | {v.mean():.0f} | {gain} | {per} |")
    oracle = np.array([r["oracle"] for r in results])
    cost = np.array([r["runs"][0]["cost_per_examined_impression"] for r in results])
    rows += [
        "",
        f"Population oracle (best items by rho averaged over users): {oracle.mean():.0f} "
        f"expected clicks ({n} seeds, {steps} slates).",
        f"Cost of one examined exploratory impression under greedy (its slate's rho minus a "
        f"random live candidate's, 2nd half): {cost.mean():.4f} clicks.",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Run the seeds on a process pool and print the markdown table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--first-seed", type=int, default=100)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--free", default="0,1,2,5,10", help="free impressions per request")
    ap.add_argument("--churn", type=float, default=None, help="synthetic churn_rate override")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--least-known", action="store_true", help="free impressions to the least-known items"
    )
    a = ap.parse_args(argv)
    try:
        frees = tuple(sorted({int(x) for x in a.free.split(",") if x.strip()} | {0}))
    except ValueError:
        ap.error(f"--free: comma-separated integers, got {a.free!r}")
    if a.seeds < 1 or a.steps < 2 or a.jobs < 1 or min(frees) < 0:
        ap.error("--seeds and --jobs must be >= 1, --steps >= 2, --free >= 0")
    override_churn(a.churn)
    from streams.threads import limit_threads

    limit_threads()
    seeds = range(a.first_seed, a.first_seed + a.seeds)
    grid = [(s, a.steps, frees, a.least_known) for s in seeds]
    with get_context("fork").Pool(a.jobs) as pool:
        results = sorted(pool.map(_one, grid), key=lambda r: r["seed"])
    print(report(results, a.steps, frees))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
