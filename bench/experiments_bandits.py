"""10-seed slate-bandit experiment on the synthetic and MovieLens simulators -> PNGs, markdown
table, JSON in docs/bandits/. Run: PYTHONPATH=. python -m bench.experiments_bandits"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from bandits import (
    BayesUCBPolicy,
    BetaBernoulliPosterior,
    ContextualThompsonSampling,
    EpsilonGreedyPolicy,
    Feedback,
    GreedyPolicy,
    InSlateThompsonSampling,
    LinearGaussianPosterior,
    RandomPolicy,
    RiverTopKThompson,
    SlatePolicy,
    ThompsonSamplingPolicy,
)
from bandits.simulators import MovieLensSimulator, SlateSimulator, SyntheticSimulator

K = 10
POLICY_ORDER = [
    "in-slate-ts",
    "ts",
    "greedy",
    "epsilon-greedy",
    "bayes-ucb",
    "random",
    "river-ts",
    "contextual-ts",
    "contextual-in-slate-ts",
    "contextual-greedy",
]
_ML: dict[str, np.ndarray] = {}
_SYNTH: dict[str, float] = {}  # overrides of SyntheticSimulator defaults (e.g. churn_rate)


def override_churn(rate: float | None) -> None:
    """Run the synthetic simulator at this churn rate (None: its default) in this process
    and the pool's forked workers."""
    if rate is None:
        _SYNTH.pop("churn_rate", None)
    else:
        _SYNTH["churn_rate"] = rate


def load_ml_arrays() -> dict[str, np.ndarray]:
    """MovieLens-100k as index arrays + primary-genre index per item (needs models.datasets)."""
    from models.datasets import load_movielens_100k

    data = load_movielens_100k(download=False)
    uid = {u: j for j, u in enumerate(sorted(set(data.users.tolist()), key=int))}
    iid = {i: j for j, i in enumerate(data.all_items())}
    genres = sorted(set(data.item_categories.values()))
    gidx = {g: j for j, g in enumerate(genres)}
    cats = np.array([gidx.get(data.item_categories.get(i, ""), 0) for i in iid], dtype=np.int64)
    return {
        "users": np.array([uid[u] for u in data.users.tolist()], dtype=np.int64),
        "items": np.array([iid[i] for i in data.items.tolist()], dtype=np.int64),
        "ratings": data.ratings.astype(float),
        "timestamps": data.timestamps.astype(np.int64),
        "categories": cats,
    }


def make_sim(kind: str, seed: int, steps: int) -> SlateSimulator:
    """A fresh simulator; requests are identical across policies for the same seed."""
    if kind == "synthetic":
        return SyntheticSimulator(seed=seed, **_SYNTH)  # type: ignore[arg-type]
    ml = _ML or load_ml_arrays()
    return MovieLensSimulator(
        ml["users"],
        ml["items"],
        ml["ratings"],
        ml["timestamps"],
        ml["categories"],
        horizon=steps,
        seed=seed,
    )


def empirical_prior(kind: str, seed: int, steps: int, n_requests: int = 300) -> tuple[float, float]:
    """Beta prior fitted by moments to the items' population CTRs (what one would fit on
    historical item CTRs): mean and between-item variance of rho averaged over users."""
    sim = make_sim(kind, seed + 10_000, steps)  # a different seed: 'history', not this run
    reqs = [sim.next_request() for _ in range(n_requests)]
    cands = reqs[-1].candidates
    item_ctr = np.stack([sim.attractiveness(r, cands) for r in reqs]).mean(axis=0)
    m, v = float(item_ctr.mean()), float(item_ctr.var())
    strength = m * (1.0 - m) / v - 1.0
    return m * strength, (1.0 - m) * strength


TEMPERED = ("ts", "in-slate-ts", "contextual-ts", "contextual-in-slate-ts")


def split_temperature(name: str) -> tuple[str, float]:
    """'ts@0.25' -> ('ts', 0.25): a Thompson policy drawing at that temperature; else tau 1."""
    base, _, tau = name.partition("@")
    if not tau:
        return name, 1.0
    if base not in TEMPERED:
        raise ValueError(f"a temperature applies to {', '.join(TEMPERED)}, not {base!r}")
    return base, float(tau)


def make_policy(
    name: str, sim: SlateSimulator, prior: tuple[float, float], seed: int
) -> SlatePolicy:
    """Each policy with the same realistic (not optimistic) Beta prior; 'ts@tau',
    'in-slate-ts@tau' and the contextual TS policies with '@tau' draw from the posterior at
    temperature tau."""
    a0, b0 = prior
    ctr0 = a0 / (a0 + b0)
    name, tau = split_temperature(name)

    def post() -> BetaBernoulliPosterior:
        return BetaBernoulliPosterior(prior_alpha=a0, prior_beta=b0, temperature=tau)

    factories: dict[str, Callable[[], SlatePolicy]] = {
        "in-slate-ts": lambda: InSlateThompsonSampling(post(), seed=seed),
        "ts": lambda: ThompsonSamplingPolicy(post(), seed=seed),
        "greedy": lambda: GreedyPolicy(post(), seed=seed),
        "epsilon-greedy": lambda: EpsilonGreedyPolicy(post(), epsilon=0.1, seed=seed),
        # q chosen on the synthetic simulator's validation seeds (bench.exploration_variants)
        "bayes-ucb": lambda: BayesUCBPolicy(post(), quantile=0.98, seed=seed),
        "random": lambda: RandomPolicy(seed=seed),
        "river-ts": lambda: RiverTopKThompson(a0, b0, seed=seed),
    }
    if name in ("contextual-ts", "contextual-in-slate-ts", "contextual-greedy"):
        assert isinstance(sim, SyntheticSimulator)
        d = sim.dim
        linear = {
            "item_dim": d,
            "user_dim": d,
            "prior_precision": 1.0 / ctr0**2,  # prior sd of each weight = the site-wide CTR
            "noise_variance": ctr0 * (1 - ctr0),
            "examination": 1.0 / np.log2(np.arange(K) + 2.0),
            "prior_mean_bias": ctr0,
        }
        if name == "contextual-greedy":  # the same Bayesian linear model, ranked by its mean
            return GreedyPolicy(LinearGaussianPosterior(sim.item_embedding, **linear), seed=seed)
        in_slate = name == "contextual-in-slate-ts"
        return ContextualThompsonSampling(
            sim.item_embedding, in_slate=in_slate, temperature=tau, seed=seed, **linear
        )
    return factories[name]()


def run_one(args: tuple[str, str, int, int, str]) -> dict[str, Any]:
    """One policy on one simulator seed: per-step clicks/regret, diversity and timings."""
    kind, name, seed, steps, prior_kind = args
    sim = make_sim(kind, seed, steps)
    if prior_kind == "empirical":
        prior = empirical_prior(kind, seed, steps)
    else:  # 'weak': mean = site-wide CTR, one pseudo-click
        ctr0 = make_sim(kind, seed, steps).mean_attractiveness()
        prior = (1.0, 1.0 / ctr0 - 1.0)
    policy = make_policy(name, sim, prior, seed)
    clicks = np.zeros(steps)
    regret = np.zeros(steps)
    div = np.zeros(steps)
    t_sel = np.zeros(steps)
    t_upd = np.zeros(steps)
    for t in range(steps):
        req = sim.next_request()
        t0 = time.perf_counter()
        slate = policy.select(req.candidates, K, req.context)
        t1 = time.perf_counter()
        fb = sim.respond(req, slate.items, slate.propensities)
        t2 = time.perf_counter()
        policy.update(fb)
        t3 = time.perf_counter()
        t_sel[t], t_upd[t] = t1 - t0, t3 - t2
        clicks[t] = len(fb.clicks)
        regret[t] = sim.optimal_expected_clicks(req, K) - sim.expected_clicks(req, slate.items)
        div[t] = sim.diversity(slate.items)
    return {
        "sim": kind,
        "policy": name,
        "seed": seed,
        "clicks": clicks,
        "regret": regret,
        "diversity": float(div.mean()),
        "select_ms_mean": float(t_sel.mean() * 1e3),
        "select_ms_p99": float(np.percentile(t_sel, 99) * 1e3),
        "update_us_mean": float(t_upd.mean() * 1e6),
        "new_items": int(getattr(sim, "n_new_items", 0)),
        "prior": prior,
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and sd over seeds per simulator and policy."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in runs:
        out.setdefault(r["sim"], {}).setdefault(r["policy"], {})
    for kind, pols in out.items():
        for name in pols:
            rs = [r for r in runs if r["sim"] == kind and r["policy"] == name]
            cl = np.array([r["clicks"].sum() for r in rs])
            rg = np.array([r["regret"].sum() for r in rs])
            steps = rs[0]["clicks"].size
            late = np.array([r["clicks"][steps // 2 :].mean() for r in rs])
            pols[name] = {
                "seeds": len(rs),
                "clicks_mean": float(cl.mean()),
                "clicks_sd": float(cl.std(ddof=1)) if len(rs) > 1 else 0.0,
                "regret_mean": float(rg.mean()),
                "regret_sd": float(rg.std(ddof=1)) if len(rs) > 1 else 0.0,
                "late_clicks_per_slate": float(late.mean()),
                "diversity": float(np.mean([r["diversity"] for r in rs])),
                "select_ms_mean": float(np.mean([r["select_ms_mean"] for r in rs])),
                "select_ms_p99": float(np.mean([r["select_ms_p99"] for r in rs])),
                "update_us_mean": float(np.mean([r["update_us_mean"] for r in rs])),
                "new_items": float(np.mean([r["new_items"] for r in rs])),
                "prior_alpha": float(np.mean([r["prior"][0] for r in rs])),
                "prior_beta": float(np.mean([r["prior"][1] for r in rs])),
            }
    return out


def ordered(names: list[str]) -> list[str]:
    """Policies in the report order: POLICY_ORDER first, tempered variants after their base."""
    rank = {n: j for j, n in enumerate(POLICY_ORDER)}
    return sorted(names, key=lambda n: (rank.get(split_temperature(n)[0], 99), n))


def paired_vs(runs: list[dict[str, Any]], kind: str, name: str, ref: str) -> str:
    """Total clicks of `name` minus `ref` on the same seeds: mean +- s.e. (wins/seeds)."""
    by_seed = {(r["policy"], r["seed"]): float(r["clicks"].sum()) for r in runs if r["sim"] == kind}
    seeds = sorted(s for p, s in by_seed if p == name and (ref, s) in by_seed)
    if name == ref or not seeds:
        return "–"
    d = np.array([by_seed[(name, s)] - by_seed[(ref, s)] for s in seeds])
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
    return f"{d.mean():+.0f} ± {se:.0f} ({int((d > 0).sum())}/{d.size})"


def plot(runs: list[dict[str, Any]], kind: str, path: Path) -> None:
    """Cumulative regret (mean +- 1 sd over seeds) and moving-average clicks per slate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    n_seeds = len({r["seed"] for r in runs if r["sim"] == kind})
    names = ordered(sorted({r["policy"] for r in runs if r["sim"] == kind}))
    for j, name in enumerate(names):
        style = ("-", "--", ":")[j // 10 % 3]  # the colour cycle has 10 colours
        rs = [r for r in runs if r["sim"] == kind and r["policy"] == name]
        reg = np.cumsum(np.stack([r["regret"] for r in rs]), axis=1)
        m, s = reg.mean(0), reg.std(0)
        x = np.arange(1, m.size + 1)
        (line,) = ax1.plot(x, m, label=name, linestyle=style)
        ax1.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.15)
        cl = np.stack([r["clicks"] for r in rs]).mean(0)
        w = max(1, m.size // 20)
        ma = np.convolve(cl, np.ones(w) / w, mode="valid")
        ax2.plot(np.arange(ma.size) + w, ma, label=name, color=line.get_color(), linestyle=style)
    ax1.set(xlabel="slates served", ylabel="cumulative regret (expected clicks)")
    ax1.set_title(f"{kind}: regret vs per-user oracle slate, {n_seeds} seeds")
    ax2.set(xlabel="slates served", ylabel="clicks per slate (moving average)")
    ax2.set_title(f"{kind}: clicks per slate (k={K})")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(
    summary: dict[str, dict[str, dict[str, float]]],
    kind: str,
    runs: list[dict[str, Any]] | None = None,
    ref: str = "greedy",
) -> str:
    """Markdown table for one simulator; with the runs, clicks vs `ref` paired by seed."""
    rows = [
        f"| policy | clicks (mean ± sd) | clicks − {ref}, paired (wins) | regret (mean ± sd) "
        "| clicks/slate, 2nd half | distinct categories/slate | select ms (mean / p99) "
        "| update µs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ordered(list(summary.get(kind, {}))):
        s = summary[kind][name]
        vs = paired_vs(runs, kind, name, ref) if runs else "–"
        rows.append(
            f"| {name} | {s['clicks_mean']:.0f} ± {s['clicks_sd']:.0f} | {vs} "
            f"| {s['regret_mean']:.0f} ± {s['regret_sd']:.0f} "
            f"| {s['late_clicks_per_slate']:.3f} | {s['diversity']:.2f} "
            f"| {s['select_ms_mean']:.2f} / {s['select_ms_p99']:.2f} | {s['update_us_mean']:.0f} |"
        )
    return "\n".join(rows)


def _log(sim: SlateSimulator, logger: SlatePolicy, n: int, k: int) -> list[Feedback]:
    """n logged slates of the logging policy, with clicks and propensities."""
    out = []
    for _ in range(n):
        req = sim.next_request()
        s = logger.select(req.candidates, k)
        out.append(sim.respond(req, s.items, s.propensities))
    return out


def ope_check(seeds: int, n_logs: int = 6000, k: int = 4) -> str:
    """Random logging on the synthetic simulator (20 items, no churn) -> IPS/SNIPS/DR/PI
    estimates of a frozen epsilon-greedy target vs its exact value and an on-policy run."""
    from bandits.ope import evaluate

    rows = [
        "| seed | true clicks/slate | on-policy (99% CI) | IPS | SNIPS | DR | PI | ESS (IPS) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    covered = total = 0
    for seed in range(seeds):
        sim = SyntheticSimulator(n_users=50, n_items=20, churn_rate=0.0, seed=seed)
        cands = tuple(sim.live)
        logger = RandomPolicy(seed=seed + 100)
        post = BetaBernoulliPosterior(1.0, 20.0)

        for fb in _log(sim, logger, 1500, k):
            post.update(fb)
        logs = _log(sim, logger, n_logs, k)
        target = EpsilonGreedyPolicy(post, epsilon=0.2, update_posterior=False, seed=seed)
        marg = target.marginals(cands, k)
        rho = sim.population_attractiveness(cands)
        truth = float((marg * rho[:, None] * sim.examination[None, :k]).sum())
        on = []
        for _ in range(n_logs):
            req = sim.next_request()
            on.append(len(sim.respond(req, target.select(req.candidates, k).items).clicks))
        on_arr = np.asarray(on, float)
        half = 2.576 * on_arr.std(ddof=1) / np.sqrt(on_arr.size)
        res = evaluate(logs, target, alpha=0.01)
        cells = []
        for name in ("ips", "snips", "dr", "pi"):
            r = res[name]
            inside = r.ci_low <= truth <= r.ci_high
            covered += inside
            total += 1
            cells.append(
                f"{r.estimate:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]{'' if inside else ' ✗'}"
            )
        rows.append(
            f"| {seed} | {truth:.3f} | {on_arr.mean():.3f} ± {half:.3f} | "
            + " | ".join(cells)
            + f" | {res['ips'].ess:.0f} |"
        )
    rows.append("")
    rows.append(f"99% CIs containing the true value: {covered}/{total}.")
    return "\n".join(rows)


def exploration_share(seeds: int = 2, steps: int = 1500) -> str:
    """Share of slate slots (top 3 / all k) given to little-known items (< 5 effective
    impressions), in-slate TS vs plain TS, weak vs empirical prior, MovieLens, slates 500+."""
    rows = ["| prior | policy | little-known share, top 3 | little-known share, all 10 |"]
    rows.append("|---|---|---|---|")
    for prior_kind in ("weak", "empirical"):
        for name in ("in-slate-ts", "ts"):
            top, every = [], []
            for seed in range(seeds):
                sim = make_sim("movielens", seed, 3000)
                if prior_kind == "weak":
                    c = make_sim("movielens", seed, 3000).mean_attractiveness()
                    prior = (1.0, 1.0 / c - 1.0)
                else:
                    prior = empirical_prior("movielens", seed, 3000)
                policy = make_policy(name, sim, prior, seed)
                post = policy.posterior  # type: ignore[attr-defined]
                for t in range(steps):
                    req = sim.next_request()
                    slate = policy.select(req.candidates, K)
                    a, b = post.params(list(slate.items))
                    n_eff = a + b - prior[0] - prior[1]
                    if t >= 500:
                        top.append(float((n_eff[:3] < 5).mean()))
                        every.append(float((n_eff < 5).mean()))
                    policy.update(sim.respond(req, slate.items))
            rows.append(f"| {prior_kind} | {name} | {np.mean(top):.3f} | {np.mean(every):.3f} |")
    return "\n".join(rows)


SIMULATORS = ("synthetic", "movielens")


def _check_args(ap: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Usage errors (exit 2, one line) before any run: unknown simulators or policies, no
    seeds or steps, a bad temperature."""
    if a.seeds < 1 or a.steps < 1 or a.jobs < 1 or a.first_seed < 0:
        ap.error("--seeds, --steps and --jobs must be >= 1, --first-seed >= 0")
    sims = [s for s in a.sims.split(",") if s]
    unknown = [s for s in sims if s not in SIMULATORS]
    if not sims or unknown:
        ap.error(f"--sims: unknown {unknown or 'none given'} (known: {', '.join(SIMULATORS)})")
    pols = [p for p in a.policies.split(",") if p]
    if not pols:
        ap.error("--policies: none given")
    for name in [*pols, a.baseline]:
        try:
            base, tau = split_temperature(name)
        except ValueError as exc:
            ap.error(f"--policies: {exc}")
        if base not in POLICY_ORDER or not 0.0 < tau <= 10.0:
            ap.error(f"unknown policy {name!r} (known: {', '.join(POLICY_ORDER)}, TS ones @tau)")


def main(argv: list[str] | None = None) -> int:
    """Run the grid (simulator x policy x seed) on a process pool and write the report files."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument(
        "--first-seed", type=int, default=0, help="seeds first..first+seeds-1 (validation: 100)"
    )
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--sims", default="synthetic,movielens")
    ap.add_argument("--policies", default=",".join(POLICY_ORDER))
    ap.add_argument("--out", default="docs/bandits")
    ap.add_argument("--prior", choices=["empirical", "weak"], default="empirical")
    ap.add_argument("--tag", default="", help="suffix for the output file names")
    ap.add_argument("--ope", action="store_true", help="only the off-policy evaluation check")
    ap.add_argument("--churn", type=float, default=None, help="synthetic churn_rate override")
    ap.add_argument("--raw", default="", help="also save per-step curves to this .npz")
    ap.add_argument(
        "--baseline",
        default="greedy",
        help="the paired-difference reference (greedy on a simulator that did not run it)",
    )
    ap.add_argument("--why", action="store_true", help="only the exploration-share check")
    a = ap.parse_args(argv)
    _check_args(ap, a)
    # one BLAS thread per process: threaded BLAS on both shared cores slows the pool down
    from streams.threads import limit_threads

    limit_threads()
    if a.why:
        _ML.update(load_ml_arrays())
        print(exploration_share(min(a.seeds, 2)))
        return 0
    if a.ope:
        text = ope_check(a.seeds)
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "ope_table.md").write_text(text + "\n")
        print(text)
        return 0
    sims = [s for s in a.sims.split(",") if s]
    override_churn(a.churn)
    pols = [p for p in a.policies.split(",") if p]
    if "movielens" in sims:
        _ML.update(load_ml_arrays())
    grid = [
        (kind, name, seed, a.steps, a.prior)
        for kind in sims
        for seed in range(a.first_seed, a.first_seed + a.seeds)
        for name in pols
        if not (name.startswith("contextual") and kind != "synthetic")
    ]
    t0 = time.time()
    with get_context("fork").Pool(a.jobs) as pool:
        runs = []
        for j, r in enumerate(pool.imap_unordered(run_one, grid), 1):
            runs.append(r)
            print(f"[{j}/{len(grid)}] {r['sim']} {r['policy']} seed {r['seed']}", file=sys.stderr)
    summary = summarise(runs)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.raw:  # per-step curves, to re-plot without re-running (not for committing)
        np.savez_compressed(
            a.raw,
            **{
                f"{r['sim']}|{r['policy']}|{r['seed']}|{key}": r[key]
                for r in runs
                for key in ("clicks", "regret")
            },
        )
    for kind in sims:
        plot(runs, kind, out / f"regret_{kind}{a.tag}.png")
    meta = {
        "command": "PYTHONPATH=. python -m bench.experiments_bandits " + " ".join(argv or []),
        "seeds": a.seeds,
        "steps": a.steps,
        "prior": a.prior,
        "synthetic_overrides": dict(_SYNTH),
        "k": K,
        "wall_s": round(time.time() - t0, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
    }
    (out / f"results{a.tag}.json").write_text(
        json.dumps({"meta": meta, "summary": summary}, indent=1)
    )
    md = [f"<!-- generated by bench/experiments_bandits.py: {meta} -->"]
    for kind in sims:
        ref = a.baseline if a.baseline in summary.get(kind, {}) else "greedy"
        md += [f"### {kind}", "", table(summary, kind, runs, ref), ""]
    (out / f"results_table{a.tag}.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
