"""Slate-policy interface: the `Slate` result, the `Feedback` record and the sampler protocols;
a policy ranks item-id candidates into k slots and logs per-position propensities."""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Ask",
    "BanditError",
    "BatchSampler",
    "CandidateSet",
    "Feedback",
    "FeedbackError",
    "PosteriorSampler",
    "PropensityError",
    "Slate",
    "SlatePolicy",
    "TopKSampler",
    "UpdatablePosterior",
]


class BanditError(ValueError):
    """Root of the errors the bandits package raises on purpose (a ValueError: bad input)."""


class FeedbackError(BanditError):
    """A feedback record is malformed (unknown keys are fine, wrong types/ranges are not)."""


class PropensityError(BanditError):
    """A logged propensity is missing or outside (0, 1]; off-policy evaluation needs all."""


# one slate to choose: (candidates, k, context), as `SlatePolicy.select` takes them
Ask = tuple[Sequence[str], int, Mapping[str, Any] | None]
# what a batched posterior draw needs of one ask: its candidates and context
CandidateSet = tuple[Sequence[str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Slate:
    """An ordered slate: item ids, the score that ranked each, and per-position propensities."""

    items: tuple[str, ...]
    scores: np.ndarray
    propensities: np.ndarray
    policy: str = ""

    def __len__(self) -> int:
        return len(self.items)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists of plain floats), as the scorer publishes it."""
        return {
            "slate": list(self.items),
            "scores": [float(s) for s in self.scores],
            "propensities": [float(p) for p in self.propensities],
            "policy": self.policy,
        }


@dataclass(frozen=True)
class Feedback:
    """What happened to one served slate: its items, the clicked positions (0-based), and
    optionally the logged propensities, the user and the context (e.g. user features)."""

    slate: tuple[str, ...]
    clicks: tuple[int, ...] = ()
    propensities: tuple[float, ...] | None = None
    user_id: str | None = None
    context: Mapping[str, Any] | None = None
    candidates: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        slate = tuple(self.slate)
        object.__setattr__(self, "slate", slate)
        if not slate:
            raise FeedbackError("feedback slate is empty")
        if not all(isinstance(i, str) for i in slate):
            raise FeedbackError("feedback slate items must be item-id strings")
        if len(set(slate)) != len(slate):
            raise FeedbackError("feedback slate has duplicate items")
        clicks = tuple(self.clicks)
        for c in clicks:
            if isinstance(c, bool) or not isinstance(c, int | np.integer):
                raise FeedbackError(f"clicked position {c!r} is not an integer")
            if not 0 <= c < len(slate):
                raise FeedbackError(f"clicked position {c} outside slate of length {len(slate)}")
        if len(set(clicks)) != len(clicks):
            raise FeedbackError("clicked positions repeat")
        object.__setattr__(self, "clicks", tuple(int(c) for c in clicks))
        if self.propensities is not None:
            props = tuple(float(p) for p in self.propensities)
            if len(props) != len(slate):
                raise PropensityError(
                    f"{len(props)} propensities for a slate of {len(slate)} items"
                )
            for pos, p in enumerate(props):
                if not (math.isfinite(p) and 0.0 < p <= 1.0):
                    raise PropensityError(f"propensity at position {pos} is {p}; need (0, 1]")
            object.__setattr__(self, "propensities", props)
        if self.candidates is not None:
            object.__setattr__(self, "candidates", tuple(self.candidates))

    @property
    def click_vector(self) -> np.ndarray:
        """0/1 float vector over slate positions."""
        v = np.zeros(len(self.slate))
        if self.clicks:
            v[list(self.clicks)] = 1.0
        return v

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Feedback:
        """Build from a JSON feedback record: slate, clicks (positions), propensities, user_id,
        context, candidates; raises FeedbackError/PropensityError with the reason."""
        if not isinstance(record, Mapping):
            raise FeedbackError("feedback record is not a JSON object")
        if "slate" not in record:
            raise FeedbackError("feedback record has no 'slate'")
        slate = record["slate"]
        if not isinstance(slate, list | tuple):
            raise FeedbackError("'slate' must be a list of item ids")
        clicks = record.get("clicks", [])
        if not isinstance(clicks, list | tuple):
            raise FeedbackError("'clicks' must be a list of clicked positions")
        props = record.get("propensities")
        if props is not None and not isinstance(props, list | tuple):
            raise PropensityError("'propensities' must be a list of numbers")
        if props is not None:
            for pos, p in enumerate(props):
                if isinstance(p, bool) or not isinstance(p, int | float):
                    raise PropensityError(f"propensity at position {pos} is not a number: {p!r}")
        cands = record.get("candidates")
        if cands is not None and not isinstance(cands, list | tuple):
            raise FeedbackError("'candidates' must be a list of item ids")
        context = record.get("context")
        if context is not None and not isinstance(context, Mapping):
            raise FeedbackError("'context' must be an object")
        user = record.get("user_id")
        return cls(
            slate=tuple(slate),
            clicks=tuple(clicks),
            propensities=None if props is None else tuple(props),
            user_id=None if user is None else str(user),
            context=context,
            candidates=None if cands is None else tuple(str(c) for c in cands),
        )


@runtime_checkable
class PosteriorSampler(Protocol):
    """Anything that can score candidates under posterior draws (Beta per item, Bayesian linear,
    the Bayesian GRU through an adapter): scores are comparable within one draw (row)."""

    def sample_scores(
        self,
        candidates: Sequence[str],
        n_samples: int,
        rng: np.random.Generator,
        context: Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        """Posterior draws of the candidates' scores, shape (n_samples, len(candidates))."""
        ...

    def mean_scores(
        self, candidates: Sequence[str], context: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        """Posterior-mean scores, shape (len(candidates),)."""
        ...


@runtime_checkable
class QuantileScorer(Protocol):
    """Optional: each candidate's posterior q-quantile, for index policies (Bayes-UCB)."""

    def quantile_scores(
        self, candidates: Sequence[str], q: float, context: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        """The q-quantile of each candidate's posterior score, shape (len(candidates),)."""
        ...


@runtime_checkable
class TopKSampler(Protocol):
    """Optional fast path: only the top-k of each posterior draw, without dense scores."""

    def sample_topk(
        self,
        candidates: Sequence[str],
        n_samples: int,
        k: int,
        rng: np.random.Generator,
        context: Mapping[str, Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores), each (n_samples, min(k, n)); per row sorted by score, descending."""
        ...


@runtime_checkable
class BatchSampler(Protocol):
    """Optional fast path: draws for many candidate lists in one call (a scorer's batch of
    requests), so the per-call numpy overhead is paid once per batch, not once per request."""

    def sample_scores_many(
        self,
        asks: Sequence[CandidateSet],
        n_samples: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """(len(asks), n_samples, longest list) draws of each (candidates, context); -inf past
        the end of each list."""
        ...


@runtime_checkable
class UpdatablePosterior(Protocol):
    """A sampler the policy itself keeps up to date (external ones are trained elsewhere)."""

    def update(self, feedback: Feedback) -> None:
        """Condition the posterior on one feedback record."""
        ...


def check_positive(**values: Any) -> None:
    """Validate hyperparameters that must be positive finite numbers (name=value)."""
    for name, v in values.items():
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")


def check_seed(seed: int | None) -> None:
    """Validate a seed hyperparameter."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")


class SlatePolicy(abc.ABC):
    """Base slate policy: public `select`/`update`/`marginals` check input, subclasses implement
    `_select`/`_update`/`_marginals` on a de-duplicated candidate tuple."""

    name: str = "policy"

    @property
    def uses_context(self) -> bool:
        """Whether slates depend on the request context (OPE caches marginals when not)."""
        return False

    def __init__(self, seed: int | None = None) -> None:
        check_seed(seed)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._checked: tuple[str, ...] | None = None  # last validated candidate tuple

    def select(
        self,
        candidates: Sequence[str],
        k: int,
        context: Mapping[str, Any] | None = None,
        rng: np.random.Generator | None = None,
    ) -> Slate:
        """Choose min(k, len(candidates)) distinct candidates in order, with propensities."""
        if candidates is self._checked:  # the same (immutable) tuple as last time: known valid
            cands: tuple[str, ...] = candidates
        else:
            cands = self._check_candidates(candidates)
            if cands is candidates:
                self._checked = cands
        self._check_k(k)
        gen = self._rng if rng is None else rng
        if not cands:
            return self._empty()
        slate = self._select(cands, min(k, len(cands)), context, gen)
        return slate

    def select_many(
        self, asks: Sequence[Ask], rng: np.random.Generator | None = None
    ) -> list[Slate]:
        """One slate per (candidates, k, context), each as `select` would choose it; a policy
        over a `BatchSampler` draws for all of them at once (a scorer's batch of requests)."""
        checked = []
        for candidates, k, context in asks:
            cands = self._check_candidates(candidates)
            self._check_k(k)
            checked.append((cands, min(k, len(cands)), context))
        return self._select_many(checked, self._rng if rng is None else rng)

    def _select_many(
        self,
        asks: list[tuple[tuple[str, ...], int, Mapping[str, Any] | None]],
        rng: np.random.Generator,
    ) -> list[Slate]:
        """Default: one `_select` per ask (an empty slate for no candidates)."""
        return [self._select(c, k, ctx, rng) if c else self._empty() for c, k, ctx in asks]

    def _empty(self) -> Slate:
        return Slate((), np.zeros(0), np.zeros(0), self.name)

    def update(self, feedback: Feedback) -> None:
        """Learn from one feedback record (the slate, its clicks, its context)."""
        if not isinstance(feedback, Feedback):
            raise TypeError(f"update expects a Feedback, got {type(feedback).__name__}")
        self._update(feedback)

    def marginals(
        self,
        candidates: Sequence[str],
        k: int,
        context: Mapping[str, Any] | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """P(candidate i at position p), shape (len(candidates), min(k, n)); rows sum to <= 1."""
        cands = self._check_candidates(candidates)
        self._check_k(k)
        gen = self._rng if rng is None else rng
        if not cands:
            return np.zeros((0, 0))
        return self._marginals(cands, min(k, len(cands)), context, gen)

    @abc.abstractmethod
    def _select(
        self,
        candidates: tuple[str, ...],
        k: int,
        context: Mapping[str, Any] | None,
        rng: np.random.Generator,
    ) -> Slate: ...

    @abc.abstractmethod
    def _marginals(
        self,
        candidates: tuple[str, ...],
        k: int,
        context: Mapping[str, Any] | None,
        rng: np.random.Generator,
    ) -> np.ndarray: ...

    def _update(self, feedback: Feedback) -> None:  # noqa: B027 - stateless policies learn nothing
        """Default: nothing to learn (random policy)."""

    @staticmethod
    def _check_k(k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")

    @staticmethod
    def _check_candidates(candidates: Sequence[str]) -> tuple[str, ...]:
        if isinstance(candidates, str):
            raise TypeError("candidates must be a sequence of item ids, not one string")
        cands = candidates if isinstance(candidates, tuple) else tuple(candidates)
        if len(set(cands)) != len(cands):
            raise ValueError("candidates contain duplicate item ids")
        return cands

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed!r})"
