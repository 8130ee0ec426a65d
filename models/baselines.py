"""Popularity baseline: (optionally time-decayed) interaction counts with a Gamma posterior."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from models.base import OnlineModel, TrainingBatch
from models.items import ItemIndex


class PopularityModel(OnlineModel):
    """Scores items by how often they were interacted with (clicks in feedback count too).

    `half_life` (in events) decays old counts so the ranking follows trends; posterior
    samples draw rates from Gamma(count + alpha, 1) for Thompson sampling.
    """

    kind: ClassVar[str] = "pop"
    is_bayesian: ClassVar[bool] = True

    def __init__(
        self, half_life: float | None = None, alpha: float = 1.0, items: ItemIndex | None = None
    ) -> None:
        super().__init__(items)
        if half_life is not None and half_life <= 0:
            raise ValueError("half_life must be > 0 or None")
        if alpha <= 0:
            raise ValueError("alpha must be > 0")
        self.half_life = half_life
        self.alpha = alpha
        self.counts = np.zeros(max(16, self.items.n_rows), np.float64)
        self._scale = 1.0  # lazy decay: stored counts are in units of 1/_scale

    def _sync_items(self) -> None:
        if self.items.n_rows > self.counts.size:
            grown = np.zeros(max(self.items.n_rows, 2 * self.counts.size))
            grown[: self.counts.size] = self.counts
            self.counts = grown
        if self.items.evicted_rows:
            self.counts[np.asarray(self.items.evicted_rows)] = 0.0
            self.items.evicted_rows.clear()

    def add(self, row: int, weight: float = 1.0) -> None:
        """Count one interaction with item `row` (the per-event fast path)."""
        if self.half_life is not None:
            self._scale *= 2.0 ** (1.0 / self.half_life)
            if self._scale > 1e100:
                self.counts /= self._scale
                self._scale = 1.0
        self.counts[row] += weight * self._scale
        self.events_seen += 1

    def _learn(self, batch: TrainingBatch) -> float:
        for seq, start in zip(batch.sequences, batch.starts, strict=True):
            for row in seq[max(1, start) :] if start > 0 else seq:
                self.add(int(row))
        for _, slate, clicked in batch.feedback:
            for pos in clicked:
                self.add(int(slate[pos]))
        self.events_seen -= batch.n_targets  # `add` already counted
        return 0.0

    def user_state(self, item_seq: Sequence[str], user_id: str | None = None) -> np.ndarray:
        """Popularity ignores the user: an empty state."""
        return np.zeros(0, np.float32)

    def _score(self, user_state: Any, rows: np.ndarray) -> np.ndarray:
        self._sync_items()
        return self.counts[rows] / self._scale

    def _sample_scores(
        self, user_state: Any, rows: np.ndarray, n_samples: int, rng: np.random.Generator
    ) -> np.ndarray:
        shape = self.counts[rows] / self._scale + self.alpha
        return rng.gamma(shape[None, :], 1.0, size=(n_samples, rows.size))

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        meta = self._base_meta()
        meta["config"] = {"half_life": self.half_life, "alpha": self.alpha}
        return {"counts": self.counts / self._scale}, meta

    @classmethod
    def from_state(
        cls, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]
    ) -> PopularityModel:
        model = cls(items=ItemIndex.from_json(meta["items"]), **meta["config"])
        model.counts = np.array(tensors["counts"], np.float64)
        model._restore_base(meta)
        return model
