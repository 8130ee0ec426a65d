"""Off-policy evaluation of slate policies from logged feedback: IPS, SNIPS and DR under the
item-position model, pseudo-inverse (Swaminathan et al. 2017); estimand = clicks per slate."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from bandits.base import Feedback, FeedbackError, PropensityError, SlatePolicy
from bandits.posteriors import BetaBernoulliPosterior

__all__ = [
    "ESTIMATORS",
    "FeedbackLog",
    "OPEResult",
    "evaluate",
    "load_feedback",
    "load_feedback_log",
    "parse_feedback_lines",
    "parse_feedback_log",
    "require_propensities",
]

ESTIMATORS = ("ips", "snips", "dr", "pi")


@dataclass(frozen=True)
class OPEResult:
    """One estimator's answer: expected clicks per slate, its CI and effective sample size."""

    estimator: str
    estimate: float
    ci_low: float
    ci_high: float
    ess: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "estimator": self.estimator,
            "estimate": self.estimate,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "ess": self.ess,
            "n": self.n,
        }


@dataclass(frozen=True)
class FeedbackLog:
    """A parsed feedback log: the usable records, the line each came from, and how many records
    were skipped and why ("late", "duplicate"), as the scorer skips them."""

    records: list[Feedback]
    lines: list[int]
    skipped: dict[str, int]


def _pipeline_clicks(rec: Mapping[str, Any]) -> Mapping[str, Any]:
    """The record with the feedback topic's click objects ({position, item_id, ...}) turned
    into the distinct clicked positions the estimators use (as the scorer reads them)."""
    clicks = rec.get("clicks")
    if not isinstance(clicks, list) or not any(isinstance(c, Mapping) for c in clicks):
        return rec
    slate = rec.get("slate")
    positions: set[int] = set()
    for j, c in enumerate(clicks):
        if not isinstance(c, Mapping):
            raise FeedbackError(f"'clicks' mixes click objects and positions (entry {j})")
        pos = c.get("position")
        if isinstance(pos, bool) or not isinstance(pos, int):
            raise FeedbackError(f"click {j} has no integer 'position'")
        item = c.get("item_id")
        if (
            item is not None
            and isinstance(slate, list)
            and 0 <= pos < len(slate)
            and slate[pos] != item
        ):
            raise FeedbackError(f"click {j}: item {item!r} is not at position {pos} of the slate")
        positions.add(pos)
    return {**rec, "clicks": sorted(positions)}


def parse_feedback_log(lines: Iterable[str], source: str = "<logs>") -> FeedbackLog:
    """Parse JSON-lines feedback: either plain records (clicks = clicked positions) or the
    pipeline's own feedback-topic records (clicks = objects with a position); like the scorer,
    late records and redelivered ones (an event_id seen before) are skipped and counted.
    Errors name the line."""
    out: list[Feedback] = []
    line_nos: list[int] = []
    skipped = {"late": 0, "duplicate": 0}
    seen: set[str] = set()
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FeedbackError(f"{source}:{no}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise FeedbackError(f"{source}:{no}: not valid JSON (nested too deeply)") from None
        except ValueError as exc:  # e.g. an integer literal over Python's digit limit
            raise FeedbackError(f"{source}:{no}: not valid JSON ({exc})") from None
        try:
            if isinstance(rec, Mapping):
                event_id = rec.get("event_id")
                if isinstance(event_id, str):
                    if event_id in seen:
                        skipped["duplicate"] += 1
                        continue
                    seen.add(event_id)
                late = rec.get("late", False)
                if not isinstance(late, bool):
                    raise FeedbackError(f"'late' must be true or false, got {late!r}")
                if late:
                    skipped["late"] += 1
                    continue
                rec = _pipeline_clicks(rec)
            out.append(Feedback.from_dict(rec))
            line_nos.append(no)
        except PropensityError as exc:
            raise PropensityError(f"{source}:{no}: {exc}") from None
        except FeedbackError as exc:
            raise FeedbackError(f"{source}:{no}: {exc}") from None
        except OverflowError:  # an integer too large for a float (a propensity, say)
            raise FeedbackError(f"{source}:{no}: a number is out of range") from None
    return FeedbackLog(out, line_nos, skipped)


def parse_feedback_lines(lines: Iterable[str], source: str = "<logs>") -> list[Feedback]:
    """Parse JSON-lines feedback records (see `parse_feedback_log`); errors name the line."""
    return parse_feedback_log(lines, source).records


def load_feedback_log(path: str | Path) -> FeedbackLog:
    """Read a JSON-lines feedback log, with the lines of its records and the skipped counts."""
    p = Path(path)
    with p.open(encoding="utf-8") as fh:
        return parse_feedback_log(fh, str(p))


def load_feedback(path: str | Path) -> list[Feedback]:
    """Read a JSON-lines feedback log."""
    return load_feedback_log(path).records


def require_propensities(logs: Sequence[Feedback], where: Sequence[str] | None = None) -> None:
    """Raise PropensityError unless every record logs a propensity in (0, 1] per position;
    the error names the record by `where[n]` (e.g. "file:line"), else as "record n"."""
    if not logs:
        raise FeedbackError("no feedback records to evaluate")
    for n, fb in enumerate(logs):
        if fb.propensities is None:
            name = where[n] if where is not None else f"record {n}"
            raise PropensityError(
                f"{name}: no propensities logged; off-policy evaluation needs the logging "
                "policy's propensity for every slate position"
            )


def _z(alpha: float) -> float:
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


def _mean_ci(terms: np.ndarray, z: float) -> tuple[float, float, float]:
    m = float(terms.mean())
    half = z * float(terms.std(ddof=1)) / math.sqrt(terms.size) if terms.size > 1 else math.inf
    return m, m - half, m + half


def _kish(w: np.ndarray) -> float:
    s2 = float((w * w).sum())
    return float(w.sum()) ** 2 / s2 if s2 > 0 else 0.0


@dataclass
class _Prepared:
    w: np.ndarray  # (N, K) importance weights, 0 where a record's slate is shorter
    c: np.ndarray  # (N, K) clicks
    mask: np.ndarray  # (N, K) position present
    target_rows: list[np.ndarray]  # per record: (n_cands, k) target marginals
    cand_index: list[dict[str, int]]
    cands: list[tuple[str, ...]]


def _prepare(
    logs: Sequence[Feedback],
    policy: SlatePolicy,
    k: int | None,
    universe: tuple[str, ...],
    rng: np.random.Generator,
) -> _Prepared:
    n = len(logs)
    kmax = max(len(fb.slate) for fb in logs)
    w = np.zeros((n, kmax))
    c = np.zeros((n, kmax))
    mask = np.zeros((n, kmax), dtype=bool)
    cache: dict[tuple[int, int, int], tuple[np.ndarray, dict[str, int], tuple[str, ...]]] = {}
    rows: list[np.ndarray] = []
    idxs: list[dict[str, int]] = []
    cand_list: list[tuple[str, ...]] = []
    for r, fb in enumerate(logs):
        cands = fb.candidates if fb.candidates is not None else universe
        kk = len(fb.slate) if k is None else min(k, len(fb.slate))
        # marginals depend on the candidates, k and (for contextual policies) the context
        ctx_key = r if policy.uses_context else -1
        key = (id(cands) if fb.candidates is None else hash(cands), kk, ctx_key)
        hit = cache.get(key)
        if hit is None:
            marg = policy.marginals(cands, kk, fb.context, rng)
            hit = (marg, {it: j for j, it in enumerate(cands)}, cands)
            cache[key] = hit
        marg, index, cs = hit
        missing = [i for i in fb.slate if i not in index]
        if missing:
            raise FeedbackError(f"record {r}: slate item {missing[0]!r} not among its candidates")
        rows.append(marg)
        idxs.append(index)
        cand_list.append(cs)
        assert fb.propensities is not None
        for p in range(kk):
            mask[r, p] = True
            w[r, p] = marg[index[fb.slate[p]], p] / fb.propensities[p]
        c[r, : len(fb.slate)] = fb.click_vector
        c[r, kk:] = 0.0
    return _Prepared(w, c, mask, rows, idxs, cand_list)


def _fit_reward_model(logs: Sequence[Feedback]) -> BetaBernoulliPosterior:
    """Position-based click model q(i, p) = rho_i * exam_p fitted on logs (for DR)."""
    model = BetaBernoulliPosterior()
    for fb in logs:
        model.update(fb)
    return model


def _dr_terms(prep: _Prepared, logs: Sequence[Feedback], n_folds: int = 2) -> np.ndarray:
    """Per-record DR terms with cross-fitted reward models (fit on the other fold)."""
    n = len(logs)
    folds = np.arange(n) % n_folds
    terms = np.zeros(n)
    for f in range(n_folds):
        train = [logs[i] for i in range(n) if folds[i] != f]
        model = _fit_reward_model(train if train else logs)
        q_cache: dict[int, np.ndarray] = {}
        for r in np.flatnonzero(folds == f).tolist():
            marg = prep.target_rows[r]
            kk = marg.shape[1]
            exam = model.examination[np.minimum(np.arange(kk), model.max_positions - 1)]
            key = id(prep.cands[r])
            rho = q_cache.get(key)
            if rho is None:
                rho = model.mean_scores(prep.cands[r])
                q_cache[key] = rho
            direct = float((marg * rho[:, None] * exam[None, :]).sum())
            slate_rows = [prep.cand_index[r][it] for it in logs[r].slate[:kk]]
            q_logged = rho[slate_rows] * exam
            corr = float((prep.w[r, :kk] * (prep.c[r, :kk] - q_logged)).sum())
            terms[r] = direct + corr
    return terms


def evaluate(
    logs: Sequence[Feedback],
    policy: SlatePolicy,
    estimators: Sequence[str] = ESTIMATORS,
    k: int | None = None,
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
) -> dict[str, OPEResult]:
    """Estimate the target policy's expected clicks per slate, with CIs and ESS, from logs of
    another policy; candidates per record are its `candidates`, else every logged item."""
    # PI needs uniformly random logging (propensity 1/n everywhere) and is left out otherwise.
    if not estimators:
        raise ValueError(f"no estimator given; choose from {', '.join(ESTIMATORS)}")
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator {unknown[0]!r}; choose from {', '.join(ESTIMATORS)}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"k must be a positive int, got {k!r}")
    require_propensities(logs)
    gen = np.random.default_rng(0) if rng is None else rng
    universe = tuple(dict.fromkeys(it for fb in logs for it in fb.slate))
    prep = _prepare(logs, policy, k, universe, gen)
    z = _z(alpha)
    n = len(logs)
    out: dict[str, OPEResult] = {}
    ess = float(np.mean([_kish(prep.w[prep.mask[:, p], p]) for p in range(prep.w.shape[1])]))
    if "ips" in estimators:
        terms = (prep.w * prep.c).sum(axis=1)
        m, lo, hi = _mean_ci(terms, z)
        out["ips"] = OPEResult("ips", m, lo, hi, ess, n)
    if "snips" in estimators:
        est = 0.0
        psi = np.zeros(n)
        for p in range(prep.w.shape[1]):
            rows = prep.mask[:, p]
            wp, cp = prep.w[rows, p], prep.c[rows, p]
            wbar = float(wp.mean()) * rows.sum() / n
            if wbar <= 0:
                continue
            vp = float((wp * cp).sum() / wp.sum())
            est += vp
            psi[rows] += wp * (cp - vp) / wbar
        half = z * float(psi.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
        out["snips"] = OPEResult("snips", est, est - half, est + half, ess, n)
    if "dr" in estimators:
        terms = _dr_terms(prep, logs)
        m, lo, hi = _mean_ci(terms, z)
        out["dr"] = OPEResult("dr", m, lo, hi, ess, n)
    if "pi" in estimators and _uniform_logging(logs, prep):
        g = np.zeros(n)
        for r, fb in enumerate(logs):
            marg = prep.target_rows[r]
            g[r] = _pi_weight(marg, [prep.cand_index[r][it] for it in fb.slate])
        terms = g * prep.c.sum(axis=1)
        m, lo, hi = _mean_ci(terms, z)
        out["pi"] = OPEResult("pi", m, lo, hi, _kish(g), n)
    return out


def _pi_weight(marg: np.ndarray, slate_rows: Sequence[int]) -> float:
    """q_pi' Gamma^+ 1_s for uniform logging of ordered l-slates from m items, in closed form."""
    # Gamma = I/m + (J_l - I) x (J_m - I) / (m(m-1)) has eigenvalues l/m, (m-l)/(m(m-1)), 0 and
    # 1/(m-1) on the four products of 'constant' / 'centred' subspaces; inverting the non-zero
    # ones gives 1 - (m-1)l/(m-l) + (m-1) sum_j q(j, s_j) + (m-1)/(m-l) sum_{a in s} q(a)
    # (for m = l the second subspace vanishes: 1 + (m-1)(sum_j q(j, s_j) - 1)).
    m, slots = marg.shape
    on_slot = float(sum(marg[a, j] for j, a in enumerate(slate_rows)))
    if m == slots:
        return 1.0 + (m - 1) * (on_slot - 1.0)
    in_slate = float(marg[list(slate_rows)].sum())
    return (
        1.0 - (m - 1) * slots / (m - slots) + (m - 1) * on_slot + (m - 1) / (m - slots) * in_slate
    )


def _uniform_logging(logs: Sequence[Feedback], prep: _Prepared) -> bool:
    """True if every logged propensity is 1/(number of candidates) of its record."""
    for r, fb in enumerate(logs):
        assert fb.propensities is not None
        m = len(prep.cands[r])
        if any(abs(p * m - 1.0) > 1e-6 for p in fb.propensities):
            return False
        if prep.target_rows[r].shape[1] != len(fb.slate):
            return False
    return True


def results_table(results: Mapping[str, OPEResult]) -> str:
    """Plain-text table of estimates."""
    lines = [f"{'estimator':<10}{'estimate':>10}{'ci_low':>10}{'ci_high':>10}{'ess':>10}{'n':>8}"]
    for r in results.values():
        lines.append(
            f"{r.estimator:<10}{r.estimate:>10.4f}{r.ci_low:>10.4f}{r.ci_high:>10.4f}"
            f"{r.ess:>10.1f}{r.n:>8d}"
        )
    return "\n".join(lines)
