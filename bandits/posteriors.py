"""The Beta-Bernoulli posterior per item under a position-based click model, with exact and
cheap top-k posterior draws for large candidate sets (the built-in policies' default)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np

from bandits.base import Feedback, check_positive
from bandits.beta_draws import (
    DENSE_INT_ALPHA,
    TAIL_INT_ALPHA,
    beta_rows,
    log_tail_bound,
    tail_bound_coefs,
)
from bandits.topk_draws import count_band, distinct_ints, merge_exceedances, topk_above, topk_rows

__all__ = ["BetaBernoulliPosterior", "default_examination"]

_DENSE_WARM = 32  # few never-seen items and at most this many x k warm: dense draws


def default_examination(n_positions: int) -> np.ndarray:
    """DCG-style prior examination probabilities 1/log2(p + 2) for positions 0..n-1."""
    return 1.0 / np.log2(np.arange(n_positions) + 2.0)


def _beta_logsf_table(a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Tabulate log P(X > x) of Beta(a, b) by quadrature on a grid dense near 0 and 1."""
    tail = np.geomspace(1e-12, 1e-2, 2000)
    x = np.unique(np.concatenate([np.linspace(0.0, 1.0, 40001)[1:-1], tail, 1.0 - tail]))
    lbeta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    logf = (a - 1.0) * np.log(x) + (b - 1.0) * np.log1p(-x) - lbeta
    f = np.exp(logf)
    seg = 0.5 * (f[1:] + f[:-1]) * np.diff(x)
    sf = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])
    sf = np.minimum(sf, 1.0)
    keep = sf > 1e-300
    logsf = np.log(sf[keep])
    xs = x[keep]
    # np.interp needs increasing abscissae: log-survival decreases with x, so flip both.
    return logsf[::-1].copy(), xs[::-1].copy()


class _ItemTable:
    """Item id -> row index, with row 0 reserved for 'never seen' (reads as zeros)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self._cache_key: tuple[int, int, int] | None = None
        self._cache_val: np.ndarray | None = None
        self._cache_obj: Any = None
        self._split: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def lookup(self, candidates: Sequence[str]) -> np.ndarray:
        """Row per candidate (0 if unseen); cached for a repeated candidate tuple."""
        key = (id(candidates), len(candidates), len(self.index))
        if (
            isinstance(candidates, tuple)
            and self._cache_key == key
            and self._cache_obj is candidates
            and self._cache_val is not None
        ):
            return self._cache_val
        rows = np.fromiter(
            map(self.index.get, candidates, repeat(0)), dtype=np.int64, count=len(candidates)
        )
        if isinstance(candidates, tuple):
            self._cache_key, self._cache_val, self._cache_obj = key, rows, candidates
        return rows

    def split(self, candidates: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, and the positions of seen and never-seen candidates; cached with the rows."""
        rows = self.lookup(candidates)
        if self._split is None or self._split[0] is not rows:
            self._split = (rows, np.flatnonzero(rows), np.flatnonzero(rows == 0))
        return self._split

    def ensure(self, items: Sequence[str]) -> list[int]:
        """Rows for items, registering new ones (rows start at 1)."""
        out = []
        for it in items:
            r = self.index.get(it)
            if r is None:
                r = len(self.index) + 1
                self.index[it] = r
            out.append(r)
        return out


class BetaBernoulliPosterior:
    """Beta attractiveness per item under a position-based click model, P(click) = exam[p] * rho;
    exam learned online, optional discounting of old evidence and a sampling temperature."""

    # A click adds 1 to alpha; a non-click adds the posterior probability that the position was
    # examined to beta, so a miss at a rarely examined position is weak evidence. exam[0] = 1
    # fixes the scale. With discount < 1 an item's evidence decays by that factor per feedback
    # record (lazily, O(k) per update). With temperature tau, draws come from Beta(a / tau,
    # b / tau): the posterior mean, with about tau times the variance (the posterior reshaping
    # of Chapelle & Li 2011); tau < 1 explores less, tau -> 0 approaches greedy. Means and
    # updates never see tau.

    uses_context = False

    def __init__(
        self,
        prior_alpha: float = 1.0,
        prior_beta: float = 20.0,
        discount: float = 1.0,
        examination: Sequence[float] | None = None,
        learn_examination: bool = True,
        examination_strength: float = 200.0,
        max_positions: int = 64,
        temperature: float = 1.0,
    ) -> None:
        check_positive(prior_alpha=prior_alpha, prior_beta=prior_beta, temperature=temperature)
        if not (isinstance(discount, int | float) and 0.0 < discount <= 1.0):
            raise ValueError(f"discount must be in (0, 1], got {discount!r}")
        if not (isinstance(max_positions, int) and max_positions >= 1):
            raise ValueError(f"max_positions must be a positive int, got {max_positions!r}")
        if not (isinstance(examination_strength, int | float) and examination_strength > 0):
            raise ValueError(f"examination_strength must be > 0, got {examination_strength!r}")
        if examination is None:
            exam = default_examination(max_positions)
        else:
            exam = np.asarray(examination, dtype=float)
            if exam.ndim != 1 or exam.size == 0 or np.any(exam <= 0) or np.any(exam > 1):
                raise ValueError("examination must be a non-empty 1-d sequence in (0, 1]")
            exam = np.concatenate([exam, np.full(max(0, max_positions - exam.size), exam[-1])])
            exam = exam[:max_positions] / exam[0]
        self.prior_alpha = float(prior_alpha)
        self.prior_beta = float(prior_beta)
        self.discount = float(discount)
        self.temperature = float(temperature)
        # the prior as draws see it: Beta(prior_alpha / tau, prior_beta / tau)
        self._draw_alpha = self.prior_alpha / self.temperature
        self._draw_beta = self.prior_beta / self.temperature
        self.learn_examination = bool(learn_examination)
        self.examination_strength = float(examination_strength)
        self.max_positions = max_positions
        self._exam_prior = exam.copy()
        self._exam_pseudo = (
            self.examination_strength * self.prior_alpha / (self.prior_alpha + self.prior_beta)
        )
        self._positions: dict[int, np.ndarray] = {}
        self.examination = exam.copy()
        self._pos_clicks = np.zeros(max_positions)
        self._pos_expected = np.zeros(max_positions)
        self._items = _ItemTable()
        cap = 1024
        self._a = np.zeros(cap)  # evidence beyond the prior; row 0 = unseen, stays 0
        self._b = np.zeros(cap)
        self._last = np.zeros(cap, dtype=np.int64)
        self._step = 0
        self._tail: tuple[np.ndarray, np.ndarray] | None = None
        self._topk_t: dict[tuple[int, int], float] = {}  # last threshold per (rows, k)
        self._topk_ratio: dict[tuple[int, int], float] = {}  # draws above t / summed bounds
        # for the last candidate set (its rows array) and t: ceil(alpha), beta, tail-bound
        # coefficients and log bounds per item, kept while an item's draw parameters stay
        self._bounds: (
            tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None
        ) = None

    # -- state ---------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        """Number of items with evidence."""
        return len(self._items.index)

    def _grow(self, need: int) -> None:
        cap = self._a.size
        if need < cap:
            return
        new = max(need + 1, 2 * cap)
        for name in ("_a", "_b", "_last"):
            old = getattr(self, name)
            arr = np.zeros(new, dtype=old.dtype)
            arr[:cap] = old
            setattr(self, name, arr)

    def params(self, candidates: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Current Beta (alpha, beta) per candidate, after discounting."""
        rows = self._items.lookup(candidates)
        return self._params_rows(rows)

    def _params_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ea, eb = self._a[rows], self._b[rows]
        if self.discount < 1.0:
            f = self.discount ** (self._step - self._last[rows]).astype(float)
            ea, eb = ea * f, eb * f
        return ea + self.prior_alpha, eb + self.prior_beta

    def _draw_params_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Beta parameters draws use: the posterior's, divided by the temperature."""
        a, b = self._params_rows(rows)
        if self.temperature != 1.0:
            a, b = a / self.temperature, b / self.temperature
        return a, b

    # -- PosteriorSampler -----------------------------------------------------------------
    def mean_scores(
        self, candidates: Sequence[str], context: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        """Posterior mean attractiveness per candidate."""
        a, b = self.params(candidates)
        return np.asarray(a / (a + b))

    def quantile_scores(
        self, candidates: Sequence[str], q: float, context: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        """The q-quantile of each candidate's Beta posterior (the temperature does not apply:
        it shapes draws, not the posterior)."""
        from scipy.special import betaincinv

        a, b = self.params(candidates)
        return np.asarray(betaincinv(a, b, q), dtype=float)

    def sample_scores(
        self,
        candidates: Sequence[str],
        n_samples: int,
        rng: np.random.Generator,
        context: Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        """Dense Beta draws, shape (n_samples, n); never-seen items share the prior."""
        rows, warm, cold = self._items.split(candidates)
        if cold.size == 0:
            a, b = self._draw_params_rows(rows)
            return beta_rows(a, b, n_samples, rng)
        if warm.size == 0:
            return self._prior_draws((n_samples, rows.size), rng)
        out = np.empty((n_samples, rows.size))
        out[:, cold] = self._prior_draws((n_samples, cold.size), rng)
        a, b = self._draw_params_rows(rows[warm])
        out[:, warm] = beta_rows(a, b, n_samples, rng)
        return out

    def _prior_draws(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """Draws from the (tempered) Beta prior: one numpy call, or exponential sums."""
        a, b = self._draw_alpha, self._draw_beta
        if not (a.is_integer() and a <= DENSE_INT_ALPHA):
            return rng.beta(a, b, size=shape)
        s = rng.standard_exponential(shape) / -b  # minus the exponential sum
        for j in range(1, int(a)):
            s -= rng.standard_exponential(shape) / (b + j)
        return -np.expm1(s)

    def sample_topk(
        self,
        candidates: Sequence[str],
        n_samples: int,
        k: int,
        rng: np.random.Generator,
        context: Mapping[str, Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of each posterior draw, exact in distribution: never-seen items share the prior,
        so only their top-k order statistics are drawn; items with evidence only where they beat
        the lowest row's k-th best of those (beta_draws.exceedances), or, with few never-seen
        items, a threshold set from the parameters (_topk_by_threshold)."""
        rows, warm, cold = self._items.split(candidates)
        n = rows.size
        k = min(k, n)
        m = cold.size
        if self._draw_beta < 1.0 or (m < 4 * k and warm.size <= _DENSE_WARM * k):
            scores = self.sample_scores(candidates, n_samples, rng)
            return topk_rows(scores, np.arange(n), k)
        if m < 4 * k:
            return self._topk_by_threshold(rows, warm, cold, n_samples, k, rng)
        cold_vals = self._prior_order_stats(m, k, n_samples, rng)
        cold_idx = cold[distinct_ints(m, k, n_samples, rng)]
        if warm.size == 0:
            return cold_idx, cold_vals
        a, b = self._draw_params_rows(rows[warm])
        direct = a > TAIL_INT_ALPHA
        base, base_ids = cold_vals, cold_idx
        if direct.any():
            d = np.flatnonzero(direct)
            base = np.concatenate([base, beta_rows(a[d], b[d], n_samples, rng)], axis=1)
            dids = np.broadcast_to(warm[d], (n_samples, d.size))
            base_ids = np.concatenate([base_ids, dids], axis=1)
            p = np.flatnonzero(~direct)
            warm, a, b = warm[p], a[p], b[p]
        return merge_exceedances(base, base_ids, warm, a, b, k, rng)

    def _topk_by_threshold(
        self,
        rows: np.ndarray,
        warm: np.ndarray,
        cold: np.ndarray,
        n_samples: int,
        k: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per draw with few never-seen items: every item is drawn only above a threshold
        t set from the parameters alone (so exact), about 2-4 k draws above it per row."""
        a, b = self._draw_params_rows(rows[warm])
        ids = warm
        if cold.size:
            a = np.concatenate([a, np.full(cold.size, self._draw_alpha)])
            b = np.concatenate([b, np.full(cold.size, self._draw_beta)])
            ids = np.concatenate([warm, cold])
        n_a = np.ceil(a)
        t, coefs, log_qb, total = self._threshold(rows, n_a, b, n_samples, k)
        direct = n_a > TAIL_INT_ALPHA
        base = np.empty((n_samples, 0))
        base_ids: np.ndarray = np.empty((n_samples, 0), dtype=np.int64)
        if direct.any():
            d = np.flatnonzero(direct)
            base = beta_rows(a[d], b[d], n_samples, rng)
            base_ids = np.broadcast_to(ids[d], (n_samples, d.size))
            p = np.flatnonzero(~direct)
            ids, a, b, coefs, log_qb = ids[p], a[p], b[p], coefs[:, p], log_qb[p]
            if ids.size == 0:
                return topk_rows(base, base_ids, k)
        out_ids, out_vals, n_above = topk_above(base, base_ids, ids, a, b, t, k, rng, coefs, log_qb)
        # the bounds over-count (most for non-integer alpha): learn by how much, for next time
        ratio = n_above / n_samples / max(total, 1e-300)
        old = self._topk_ratio.get((n_samples, k), 1.0)
        self._topk_ratio[n_samples, k] = min(max(0.8 * old + 0.2 * ratio, 0.2), 1.0)
        return out_ids, out_vals

    def _threshold(
        self, key: np.ndarray, n_a: np.ndarray, b: np.ndarray, n_rows: int, k: int
    ) -> tuple[float, np.ndarray, np.ndarray, float]:
        """A t with about as many draws above it per row as k needs safely (count_band, by
        the summed tail bounds of Beta(n_a, b) times the learnt ratio of draws to bounds), by
        regula falsi on log(count) from the last call's t; and the tail bound's coefficients,
        log bounds at t (not to be modified) and their sum."""
        lo_ok, hi_ok = count_band(n_rows, k)
        target = math.log(math.sqrt(lo_ok * hi_ok))
        t = t0 = self._topk_t.get((n_rows, k), -1.0)
        ratio = self._topk_ratio.get((n_rows, k), 1.0)
        if not 0.0 < t < 1.0:  # the mean of the item ranked `lo_ok`-th by mean
            mean = n_a / (n_a + b)
            r = mean.size - min(max(int(lo_ok), 1), mean.size)
            t = float(np.partition(mean, r)[r])
        coefs, log_qb = self._cached_bounds(key, n_a, b, t)
        lo, g_lo, hi, g_hi, side = 0.0, math.inf, 1.0, -math.inf, 0
        for _ in range(50):
            total = float(np.exp(log_qb).sum())
            count = ratio * total
            if lo_ok <= count <= hi_ok:
                break
            g = math.log(max(count, 1e-300)) - target
            if g > 0:  # too many above t: raise it
                lo, g_lo = t, g
                if side > 0:
                    g_hi *= 0.5  # Illinois: don't let the far end stall the interpolation
                side = 1
            else:
                hi, g_hi = t, g
                if side < 0:
                    g_lo *= 0.5
                side = -1
            if math.isfinite(g_lo) and math.isfinite(g_hi):
                t = lo + (hi - lo) * g_lo / (g_lo - g_hi)
            else:  # no bracket yet: step by a factor in the odds
                f = 1.3 if g > 0 else 1.0 / 1.3
                t = t * f / (1.0 + t * (f - 1.0))
            log_qb = log_tail_bound(n_a, b, t, coefs)
        if t != t0:
            self._topk_t[n_rows, k] = t
            self._bounds = (key, t, n_a, b, coefs, log_qb)
        return t, coefs, log_qb, total

    def _cached_bounds(
        self, key: np.ndarray, n_a: np.ndarray, b: np.ndarray, t: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tail-bound coefficients and log bounds at t of Beta(n_a, b); for the candidate set
        of the last call (same rows array) and t, recomputed only where n_a or b changed."""
        c = self._bounds
        if c is None or c[0] is not key or c[1] != t or c[2].size != n_a.size:
            coefs = tail_bound_coefs(n_a, b)
            log_qb = log_tail_bound(n_a, b, t, coefs)
            self._bounds = (key, t, n_a, b, coefs, log_qb)
            return coefs, log_qb
        _, _, c_na, c_b, coefs, log_qb = c
        stale = np.flatnonzero((c_na != n_a) | (c_b != b))
        if stale.size:
            c_na[stale], c_b[stale] = n_a[stale], b[stale]
            coefs[:, stale] = tail_bound_coefs(n_a[stale], b[stale])
            log_qb[stale] = log_tail_bound(n_a[stale], b[stale], t, coefs[:, stale])
        return coefs, log_qb

    def _prior_order_stats(
        self, m: int, k: int, n_samples: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Largest k of m i.i.d. prior draws, per row, descending (Renyi representation)."""
        if self._tail is None:
            self._tail = _beta_logsf_table(self._draw_alpha, self._draw_beta)
        logsf, xs = self._tail
        # log U_(m) = log V1 / m, log U_(m-1) = log U_(m) + log V2 / (m - 1), ...
        e = -rng.standard_exponential((n_samples, k)) / (m - np.arange(k))
        log_u = np.cumsum(e, axis=1)
        log_s = np.log(-np.expm1(log_u))  # survival probabilities of the order statistics
        return np.interp(log_s, logsf, xs)

    # -- learning -------------------------------------------------------------------------
    def update(self, feedback: Feedback) -> None:
        """Condition on one slate's clicks (and learn the examination curve)."""
        slate = feedback.slate
        k = len(slate)
        rows = self._items.ensure(slate)
        self._grow(max(rows))
        r = np.asarray(rows)
        pos = self._positions.get(k)
        if pos is None:
            pos = self._positions[k] = np.minimum(np.arange(k), self.max_positions - 1)
        clicked = np.zeros(k)
        if feedback.clicks:
            clicked[list(feedback.clicks)] = 1.0
        self._step += 1
        if self.discount < 1.0:
            f = self.discount ** (self._step - self._last[r]).astype(float)
            self._a[r] *= f
            self._b[r] *= f
            self._last[r] = self._step
        a = self._a[r] + self.prior_alpha
        b = self._b[r] + self.prior_beta
        rho = a / (a + b)
        exam = self.examination[pos]
        p_exam_miss = exam * (1.0 - rho) / (1.0 - exam * rho)
        self._a[r] += clicked
        self._b[r] += (1.0 - clicked) * p_exam_miss
        if self.learn_examination:
            if self.discount < 1.0:
                self._pos_clicks *= self.discount
                self._pos_expected *= self.discount
            if k <= self.max_positions:
                self._pos_clicks[:k] += clicked
                self._pos_expected[:k] += rho
            else:
                np.add.at(self._pos_clicks, pos, clicked)
                np.add.at(self._pos_expected, pos, rho)
            # pseudo-impressions at the prior click rate keep the curve near its prior early on
            s = self._exam_pseudo
            raw = (self._pos_clicks + s * self._exam_prior) / (self._pos_expected + s)
            raw /= raw[0]
            self.examination = np.minimum(np.maximum(raw, 1e-3), 1.0)
