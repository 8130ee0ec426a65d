"""A top-k slate from `river.bandit.ThompsonSampling`: the peer the experiments compare with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bandits.base import Feedback, Slate, SlatePolicy

__all__ = ["RiverTopKThompson"]


class RiverTopKThompson(SlatePolicy):
    """River's Beta Thompson sampling, one `pull` per slot over the unchosen candidates, each shown
    item updated with click / no click; propensities by numpy Monte Carlo on River's Betas."""

    name = "river-ts"

    def __init__(
        self,
        prior_alpha: float = 1.0,
        prior_beta: float = 20.0,
        propensity_draws: int = 16,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        from river import bandit, proba

        for nm, v in (("prior_alpha", prior_alpha), ("prior_beta", prior_beta)):
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise ValueError(f"{nm} must be a positive number, got {v!r}")
        if isinstance(propensity_draws, bool) or not isinstance(propensity_draws, int):
            raise ValueError(f"propensity_draws must be an int >= 1, got {propensity_draws!r}")
        if propensity_draws < 1:
            raise ValueError(f"propensity_draws must be an int >= 1, got {propensity_draws!r}")
        self.prior_alpha, self.prior_beta = float(prior_alpha), float(prior_beta)
        self.propensity_draws = propensity_draws
        self.river = bandit.ThompsonSampling(
            reward_obj=proba.Beta(prior_alpha, prior_beta),  # type: ignore[arg-type]
            seed=seed,
        )

    def _params(self, candidates: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        rewards: Any = self.river._rewards  # arm id -> river.proba.Beta
        a = np.full(len(candidates), self.prior_alpha)
        b = np.full(len(candidates), self.prior_beta)
        for j, c in enumerate(candidates):
            dist = rewards.get(c)
            if dist is not None:
                a[j], b[j] = dist.alpha, dist.beta
        return a, b

    def _mc(
        self, candidates: tuple[str, ...], k: int, draws: int, rng: np.random.Generator
    ) -> np.ndarray:
        """(draws, k) slates by the same slot-by-slot procedure, vectorised in numpy."""
        a, b = self._params(candidates)
        out = np.empty((draws, k), dtype=np.int64)
        taken = np.zeros((draws, len(candidates)), dtype=bool)
        rows = np.arange(draws)
        for p in range(k):
            s = rng.beta(a, b, size=(draws, len(candidates)))
            s[taken] = -1.0
            pick = s.argmax(axis=1)
            out[:, p] = pick
            taken[rows, pick] = True
        return out

    def _select(
        self,
        candidates: tuple[str, ...],
        k: int,
        context: Mapping[str, Any] | None,
        rng: np.random.Generator,
    ) -> Slate:
        remaining: list[Any] = list(candidates)
        items: list[str] = []
        for _ in range(k):
            arm = str(self.river.pull(remaining))
            items.append(arm)
            remaining.remove(arm)
        props = np.ones(k)
        if self.propensity_draws > 1:
            pos = {c: j for j, c in enumerate(candidates)}
            served = np.array([pos[i] for i in items])
            sims = self._mc(candidates, k, self.propensity_draws - 1, rng)
            props = (1.0 + (sims == served[None, :]).sum(axis=0)) / self.propensity_draws
        a, b = self._params(tuple(items))
        return Slate(tuple(items), a / (a + b), props, self.name)

    def _marginals(
        self,
        candidates: tuple[str, ...],
        k: int,
        context: Mapping[str, Any] | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        sims = self._mc(candidates, k, 2000, rng)
        out = np.zeros((len(candidates), k))
        for p in range(k):
            out[:, p] = np.bincount(sims[:, p], minlength=len(candidates))
        return out / sims.shape[0]

    def _update(self, feedback: Feedback) -> None:
        clicked = set(feedback.clicks)
        for p, item in enumerate(feedback.slate):
            self.river.update(item, p in clicked)
