"""Bayesian linear regression of clicks on item embeddings x user features: the posterior of
contextual Thompson sampling, with closed-form rank-k updates and a sampling temperature."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from bandits.base import Feedback, check_positive

__all__ = ["LinearGaussianPosterior"]


class LinearGaussianPosterior:
    """Bayesian linear regression of clicks on [1, e_item] outer [1, u_user] (context['features']),
    closed-form Woodbury update per slate; with `examination`, clicks ~ exam[p] * x.w.
    With `temperature` tau, draws of w come from N(mu, tau * Sigma) (posterior reshaping,
    Chapelle & Li 2011): tau < 1 explores less, tau -> 0 approaches greedy; means and updates
    never see tau."""

    def __init__(
        self,
        embeddings: Mapping[str, Any] | Callable[[str], Any],
        item_dim: int,
        user_dim: int = 0,
        prior_precision: float = 1.0,
        noise_variance: float = 0.25,
        examination: Sequence[float] | None = None,
        prior_mean_bias: float = 0.0,
        temperature: float = 1.0,
    ) -> None:
        if not (callable(embeddings) or isinstance(embeddings, Mapping)):
            raise ValueError("embeddings must be a mapping item id -> vector or a callable")
        if not (isinstance(item_dim, int) and item_dim >= 1):
            raise ValueError(f"item_dim must be a positive int, got {item_dim!r}")
        if not (isinstance(user_dim, int) and user_dim >= 0):
            raise ValueError(f"user_dim must be a non-negative int, got {user_dim!r}")
        check_positive(
            prior_precision=prior_precision, noise_variance=noise_variance, temperature=temperature
        )
        if examination is not None:
            ex = np.asarray(examination, dtype=float)
            if ex.ndim != 1 or ex.size == 0 or np.any(ex <= 0) or np.any(ex > 1):
                raise ValueError("examination must be a non-empty 1-d sequence in (0, 1]")
            self._exam: np.ndarray | None = ex
        else:
            self._exam = None
        self.embeddings = embeddings
        self.item_dim = item_dim
        self.user_dim = user_dim
        self.prior_precision = float(prior_precision)
        self.noise_variance = float(noise_variance)
        self.temperature = float(temperature)
        self.dim = (1 + item_dim) * (1 + user_dim)
        self.uses_context = user_dim > 0
        self.mu = np.zeros(self.dim)
        self.mu[0] = float(prior_mean_bias)
        self.cov = np.eye(self.dim) / self.prior_precision
        self._chol: np.ndarray | None = None  # Cholesky factor of tau * Sigma, until an update
        self._emb_cache: dict[str, np.ndarray] = {}

    def _embed(self, item: str) -> np.ndarray:
        v = self._emb_cache.get(item)
        if v is not None:
            return v
        e = self.embeddings(item) if callable(self.embeddings) else self.embeddings.get(item)
        if e is None:
            out = np.zeros(self.item_dim)  # never-seen item: the prior decides (bias only)
        else:
            out = np.asarray(e, dtype=float).reshape(-1)
            if out.size != self.item_dim:
                raise ValueError(f"embedding of {item!r} has size {out.size}, not {self.item_dim}")
            self._emb_cache[item] = out
        return out

    def _user(self, context: Mapping[str, Any] | None) -> np.ndarray:
        if self.user_dim == 0:
            return np.ones(1)
        feats = None if context is None else context.get("features")
        if feats is None:
            u = np.zeros(self.user_dim)
        else:
            u = np.asarray(feats, dtype=float).reshape(-1)
            if u.size != self.user_dim:
                raise ValueError(f"context features have size {u.size}, not {self.user_dim}")
        return np.concatenate([[1.0], u])

    def features(
        self, items: Sequence[str], context: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        """Design matrix, shape (len(items), dim)."""
        e = np.empty((len(items), 1 + self.item_dim))
        e[:, 0] = 1.0
        if len(items):
            e[:, 1:] = np.stack([self._embed(i) for i in items])
        u = self._user(context)
        return (e[:, :, None] * u[None, None, :]).reshape(len(items), self.dim)

    def mean_scores(
        self, candidates: Sequence[str], context: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        """Posterior-mean predicted click rate."""
        return np.asarray(self.features(candidates, context) @ self.mu)

    def sample_scores(
        self,
        candidates: Sequence[str],
        n_samples: int,
        rng: np.random.Generator,
        context: Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        """Scores under n_samples draws of w ~ N(mu, tau * Sigma), shape (n_samples, n)."""
        if self._chol is None:
            chol = np.linalg.cholesky(self.cov + 1e-12 * np.eye(self.dim))
            if self.temperature != 1.0:
                chol *= math.sqrt(self.temperature)
            self._chol = chol
        w = self.mu[:, None] + self._chol @ rng.standard_normal((self.dim, n_samples))
        return np.asarray((self.features(candidates, context) @ w).T)

    def update(self, feedback: Feedback) -> None:
        """Woodbury update of (mu, Sigma) with the slate's items as k observations."""
        x = self.features(feedback.slate, feedback.context)
        y = feedback.click_vector
        k = len(feedback.slate)
        if self._exam is not None:
            x = x * self._exam[np.minimum(np.arange(k), self._exam.size - 1)][:, None]
        noise = np.full(k, self.noise_variance)
        sx = self.cov @ x.T  # (d, k)
        s = x @ sx + np.diag(noise)
        gain = np.linalg.solve(s, sx.T).T  # (d, k)
        self.mu = self.mu + gain @ (y - x @ self.mu)
        self.cov = self.cov - gain @ sx.T
        self.cov = 0.5 * (self.cov + self.cov.T)
        self._chol = None
