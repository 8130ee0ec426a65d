"""Other ways to explore than tempering, on the synthetic simulator, paired against the first
variant given: expected clicks of the served slates (no click noise), mean ± standard error
over seeds. Variants: `base[@tau][+key=value...]`, base one of greedy, ts, in-slate-ts,
optimistic-ts and optimistic-in-slate-ts (May et al. 2012: a draw below the posterior mean
counts as the mean), satisficing-ts, slot-ts, bayes-ucb. Keys: prior (prior strength times
this, same mean), subsample (explore a stable hash-chosen share of the catalogue, Bayati et
al. 2020), eps (satisficing-ts: Russo & Van Roy's satisficing TS), top (slot-ts: greedy for
the top positions, TS below), q (bayes-ucb: rank by each posterior's q-quantile, Kaufmann et
al. 2012: optimism without draws), keep (persistent-ts: each item's draw is its posterior's
quantile at a uniform kept for about `keep` requests, so a lucky item stays lucky while its
evidence accrues; keep=1 is TS).
Run: PYTHONPATH=. python -m bench.exploration_variants --seeds 20 "greedy;in-slate-ts@0.125;..."
"""

from __future__ import annotations

import argparse
import sys
import zlib
from collections.abc import Callable
from multiprocessing import get_context
from typing import Any

import numpy as np

from bandits import BayesUCBPolicy, BetaBernoulliPosterior, Feedback
from bandits.policies import GreedyPolicy, InSlateThompsonSampling, ThompsonSamplingPolicy
from bench.experiments_bandits import K, empirical_prior, make_sim, override_churn

BASES = (
    "greedy",
    "ts",
    "in-slate-ts",
    "optimistic-ts",
    "optimistic-in-slate-ts",
    "satisficing-ts",
    "slot-ts",
    "bayes-ucb",
    "persistent-ts",
)
KEYS = {"prior": float, "subsample": float, "eps": float, "top": int, "q": float, "keep": float}
ONLY = {"eps": "satisficing-ts", "top": "slot-ts", "q": "bayes-ucb", "keep": "persistent-ts"}


def parse(spec: str) -> tuple[str, float, dict[str, float]]:
    """'slot-ts@0.25+top=5' -> ('slot-ts', 0.25, {'top': 5}); ValueError on anything else."""
    head, *opts = spec.split("+")
    base, _, tau_s = head.partition("@")
    if base not in BASES:
        raise ValueError(f"unknown variant {base!r} (known: {', '.join(BASES)})")
    tau = float(tau_s) if tau_s else 1.0
    if not 0.0 < tau <= 10.0:
        raise ValueError(f"temperature of {spec!r} must be in (0, 10]")
    out: dict[str, float] = {}
    for o in opts:
        key, _, val = o.partition("=")
        if key not in KEYS or not val:
            raise ValueError(f"unknown option {o!r} in {spec!r} (known: {', '.join(KEYS)})")
        if ONLY.get(key, base) != base:
            raise ValueError(f"{key} applies to {ONLY[key]} only, not to {spec!r}")
        out[key] = KEYS[key](val)
        if out[key] <= 0 or (key == "q" and out[key] >= 1):
            raise ValueError(f"{key} must be > 0 (q < 1) in {spec!r}")
    return base, tau, out


class _SatisficingTS:
    """Per position: of the items whose draw is within eps of the best remaining draw, the one
    with the most evidence (it needs the least further learning to be trusted)."""

    def __init__(self, post: BetaBernoulliPosterior, eps: float, seed: int) -> None:
        self.post, self.eps, self.rng = post, eps, np.random.default_rng(seed)

    def __call__(self, cands: tuple[str, ...], k: int) -> tuple[str, ...]:
        x = self.post.sample_scores(cands, 1, self.rng)[0]
        a, b = self.post.params(cands)
        evidence = a + b + 1e-9 * self.rng.random(len(cands))  # ties at random
        alive = np.ones(len(cands), dtype=bool)
        chosen = []
        for _ in range(min(k, len(cands))):
            near = np.flatnonzero(alive & (x >= x[alive].max() - self.eps))
            j = int(near[np.argmax(evidence[near])])
            chosen.append(j)
            alive[j] = False
        return tuple(cands[j] for j in chosen)


class _SlotTS:
    """The top `top` positions by posterior mean, the rest by one posterior draw."""

    def __init__(self, post: BetaBernoulliPosterior, top: int, seed: int) -> None:
        self.post, self.top, self.rng = post, top, np.random.default_rng(seed)

    def __call__(self, cands: tuple[str, ...], k: int) -> tuple[str, ...]:
        k = min(k, len(cands))
        best = np.argsort(-self.post.mean_scores(cands), kind="stable")[: min(self.top, k)]
        x = self.post.sample_scores(cands, 1, self.rng)[0]
        x[best] = -np.inf
        rest = np.argsort(-x, kind="stable")[: k - best.size]
        return tuple(cands[j] for j in (*best, *rest))


class _Optimistic:
    """A Beta posterior whose draws never fall below its mean (optimistic Bayesian sampling):
    draws explore upwards only."""

    def __init__(self, post: BetaBernoulliPosterior) -> None:
        self.post = post

    def sample_scores(
        self, candidates: Any, n_samples: int, rng: np.random.Generator, context: Any = None
    ) -> np.ndarray:
        draws = self.post.sample_scores(candidates, n_samples, rng)
        return np.maximum(draws, self.post.mean_scores(candidates)[None, :])

    def mean_scores(self, candidates: Any, context: Any = None) -> np.ndarray:
        return self.post.mean_scores(candidates)

    def update(self, feedback: Feedback) -> None:
        self.post.update(feedback)


class _PersistentTS:
    """Each item's score is its (tempered) posterior's quantile at a uniform u_i; each u_i is
    drawn anew with probability 1/keep per request. A fresh u is a Thompson draw; a kept one
    moves with the item's evidence, like a Bayes-UCB index at a random level."""

    def __init__(self, post: BetaBernoulliPosterior, keep: float, seed: int) -> None:
        from scipy.special import betaincinv

        self.post, self.renew, self._ppf = post, 1.0 / keep, betaincinv
        self.rng = np.random.default_rng(seed)
        self.u: dict[str, float] = {}

    def __call__(self, cands: tuple[str, ...], k: int) -> tuple[str, ...]:
        fresh = self.rng.random(len(cands))
        renew = self.rng.random(len(cands)) < self.renew
        u = np.fromiter(
            (fresh[j] if renew[j] or c not in self.u else self.u[c] for j, c in enumerate(cands)),
            float,
            len(cands),
        )
        self.u.update(zip(cands, u.tolist(), strict=True))
        a, b = self.post.params(cands)
        tau = self.post.temperature
        score = self._ppf(a / tau, b / tau, u)
        return tuple(cands[j] for j in np.argsort(-score, kind="stable")[:k])


def build(
    spec: str, prior: tuple[float, float], seed: int
) -> tuple[Callable[[tuple[str, ...], int], tuple[str, ...]], Callable[[Feedback], None]]:
    """select(candidates, k) -> items, and update(feedback), for one variant."""
    base, tau, opts = parse(spec)
    s = opts.get("prior", 1.0)
    post = BetaBernoulliPosterior(
        prior_alpha=prior[0] * s, prior_beta=prior[1] * s, temperature=tau
    )
    if base == "satisficing-ts":
        return _SatisficingTS(post, opts.get("eps", 0.02), seed), post.update
    if base == "persistent-ts":
        return _PersistentTS(post, opts.get("keep", 50.0), seed), post.update
    if base == "bayes-ucb":
        policy = BayesUCBPolicy(post, quantile=opts.get("q", 0.98), seed=seed)
        return (lambda c, k: policy.select(c, k).items), policy.update
    if base == "slot-ts":
        return _SlotTS(post, int(opts.get("top", 5)), seed), post.update
    sampler: Any = _Optimistic(post) if base.startswith("optimistic-") else post
    kind = base.removeprefix("optimistic-")
    cls = {"greedy": GreedyPolicy, "ts": ThompsonSamplingPolicy}.get(kind, InSlateThompsonSampling)
    policy = cls(sampler, seed=seed)
    return (lambda c, k: policy.select(c, k).items), policy.update


def _in_subsample(item: str, share: float) -> bool:
    return zlib.crc32(item.encode()) % 10_000 < share * 10_000


def run(args: tuple[str, int, int]) -> tuple[str, int, float]:
    """Expected clicks of one variant's slates over one seed's requests."""
    spec, seed, steps = args
    sim = make_sim("synthetic", seed, steps)
    select, update = build(spec, empirical_prior("synthetic", seed, steps), seed)
    share = parse(spec)[2].get("subsample")
    kept: dict[tuple[str, ...], tuple[str, ...]] = {}
    total = 0.0
    for _ in range(steps):
        req = sim.next_request()
        cands = req.candidates
        if share is not None:  # the candidate tuple changes only with churn: filter it once
            if cands not in kept:
                kept.clear()
                kept[cands] = tuple(c for c in cands if _in_subsample(c, share)) or cands
            cands = kept[cands]
        items = select(cands, K)
        total += sim.expected_clicks(req, items)
        update(sim.respond(req, items))
    return spec, seed, total


def report(results: list[tuple[str, int, float]], specs: list[str]) -> str:
    """Markdown: expected clicks per variant and the paired difference to the first."""
    by: dict[str, dict[int, float]] = {}
    for spec, seed, v in results:
        by.setdefault(spec, {})[seed] = v
    seeds = sorted(by[specs[0]])
    ref = np.array([by[specs[0]][s] for s in seeds])
    rows = [
        f"| variant | expected clicks | − {specs[0]}, paired (wins) |",
        "|---|---:|---:|",
    ]
    for spec in specs:
        v = np.array([by[spec][s] for s in seeds])
        d = v - ref
        se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else 0.0
        diff = (
            "–"
            if spec == specs[0]
            else f"{d.mean():+.0f} ± {se:.0f} ({int((d > 0).sum())}/{d.size})"
        )
        rows.append(f"| {spec} | {v.mean():.0f} | {diff} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Run every variant on every seed on a process pool and print the table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("variants", help="';'-separated variants, the first is the reference")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=100)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--churn", type=float, default=None, help="synthetic churn_rate override")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args(argv)
    specs = [s for s in a.variants.split(";") if s]
    try:
        for s in specs:
            parse(s)
    except ValueError as exc:
        ap.error(str(exc))
    if not specs or a.seeds < 1 or a.steps < 1 or a.jobs < 1:
        ap.error("give at least one variant; --seeds, --steps and --jobs must be >= 1")
    override_churn(a.churn)
    from streams.threads import limit_threads

    limit_threads()
    grid: list[Any] = [
        (s, seed, a.steps) for seed in range(a.first_seed, a.first_seed + a.seeds) for s in specs
    ]
    with get_context("fork").Pool(a.jobs) as pool:
        results = pool.map(run, grid)
    print(report(results, specs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
