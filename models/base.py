"""Model interfaces: OnlineModel (learn from fresh events, score, snapshot) and SequentialModel.

Every model keeps an `ItemIndex` (string item id -> row). Scores are aligned with the
candidates passed in; unknown candidate ids score ``-inf`` (admit items first with
`admit`). Snapshots are ``(tensors, meta)``: a flat dict of numpy arrays (written with
safetensors) plus JSON-serialisable metadata -- never pickle.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from models.items import ItemIndex

Candidates = Sequence[str] | np.ndarray | None
"""Item ids (str), table rows (int ndarray), or None for every known item (``all_rows``)."""


@dataclass
class SlateFeedback:
    """A served slate and what happened: the slate likelihood's observation.

    `history` are the user's item ids before the slate (oldest first); `clicked` are
    0-based positions in `slate` (empty = no click).
    """

    user_id: str
    slate: list[str]
    clicked: list[int] = field(default_factory=list)
    propensities: list[float] | None = None
    history: list[str] = field(default_factory=list)
    ts: int = 0

    def __post_init__(self) -> None:
        for pos in self.clicked:
            if not 0 <= pos < len(self.slate):
                raise ValueError(
                    f"clicked position {pos} outside slate of length {len(self.slate)}"
                )


@dataclass
class TrainingBatch:
    """A batch of fresh events in row form (see `TrainingBatch.from_ids`).

    sequences[i] are table rows in time order; positions p >= starts[i] are fresh events
    (sequence models train on those with p >= 1, each predicted from the rows before it);
    weights[i][p] weights position p.
    feedback holds (history_rows, slate_rows, clicked_positions) triples.
    """

    sequences: list[np.ndarray] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    weights: list[np.ndarray] | None = None
    users: list[str] | None = None
    feedback: list[tuple[np.ndarray, np.ndarray, list[int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.starts:
            self.starts = [1] * len(self.sequences)
        if len(self.starts) != len(self.sequences):
            raise ValueError("starts must align with sequences")
        if self.weights is not None and len(self.weights) != len(self.sequences):
            raise ValueError("weights must align with sequences")
        if self.users is not None and len(self.users) != len(self.sequences):
            raise ValueError("users must align with sequences")

    @property
    def n_targets(self) -> int:
        """Fresh events in the batch: sequence positions >= start, plus feedback records."""
        n = sum(
            max(0, len(s) - max(0, st)) for s, st in zip(self.sequences, self.starts, strict=True)
        )
        return n + len(self.feedback)

    @classmethod
    def from_ids(
        cls,
        items: ItemIndex,
        sequences: Sequence[Sequence[str]] = (),
        users: Sequence[str] | None = None,
        feedback: Sequence[SlateFeedback] = (),
        categories: Mapping[str, str] | None = None,
    ) -> TrainingBatch:
        """Build a batch from item-id sequences, admitting unseen ids (with categories)."""
        cats = categories or {}

        def admit(ids: Sequence[str]) -> np.ndarray:
            return np.asarray([items.admit(i, cats.get(i)) for i in ids], dtype=np.int64)

        seqs = [admit(s) for s in sequences]
        fb = [(admit(f.history), admit(f.slate), list(f.clicked)) for f in feedback]
        return cls(
            sequences=seqs,
            starts=[1] * len(seqs),
            users=list(users) if users is not None else None,
            feedback=fb,
        )


class OnlineModel(abc.ABC):
    """A model learned incrementally from batches of fresh events.

    Public methods check inputs; subclasses implement `_learn`, `_score`, `_state`.
    """

    kind: ClassVar[str] = "abstract"
    is_bayesian: ClassVar[bool] = False
    #: True: `admit` leaves the tables to `_sync_items` at the next use (every method that
    #: reads them calls it), so a burst of admissions costs one refresh, not one each
    lazy_tables: ClassVar[bool] = False

    def __init__(self, items: ItemIndex | None = None) -> None:
        self.items = items if items is not None else ItemIndex()
        self.events_seen = 0
        self.last_event_ts = 0

    # --- items -------------------------------------------------------------------------
    def admit(self, item_id: str, category: str | None = None) -> int:
        """Admit a (possibly new) item so it is scorable at once; returns its row."""
        if not isinstance(item_id, str) or not item_id:
            raise ValueError("item_id must be a non-empty string")
        row = self.items.admit(item_id, category)
        if not self.lazy_tables:
            self._sync_items()
        return row

    def _sync_items(self) -> None:  # noqa: B027 - optional hook
        """Hook: grow/reset tables after the index changed."""

    def all_rows(self) -> np.ndarray:
        """Rows of every known item (ascending)."""
        return self.items.active_rows()

    def _rows(self, candidates: Candidates) -> np.ndarray:
        if candidates is None:
            return self.all_rows()
        if isinstance(candidates, np.ndarray) and candidates.dtype.kind in "iu":
            return candidates.astype(np.int64, copy=False)
        return self.items.rows([str(c) for c in candidates])

    # --- learning ------------------------------------------------------------------------
    def learn(self, batch: TrainingBatch) -> float:
        """Take one update from a batch of fresh events; returns the training loss."""
        if not isinstance(batch, TrainingBatch):
            raise TypeError("learn expects a TrainingBatch")
        self._sync_items()
        if batch.n_targets == 0:
            return 0.0
        loss = self._learn(batch)
        self.events_seen += batch.n_targets
        return loss

    @abc.abstractmethod
    def _learn(self, batch: TrainingBatch) -> float: ...

    # --- scoring ---------------------------------------------------------------------------
    @abc.abstractmethod
    def user_state(self, item_seq: Sequence[str], user_id: str | None = None) -> Any:
        """User state from the user's recent item ids (oldest first)."""

    def score(self, user_state: Any, candidates: Candidates = None) -> np.ndarray:
        """Scores (float32) aligned with `candidates`; unknown candidates score -inf."""
        rows = self._rows(candidates)
        out = self._score(user_state, rows).astype(np.float32, copy=False)
        if rows.size and (rows == 0).any():
            out = out.copy()
            out[rows == 0] = -np.inf
        return out

    @abc.abstractmethod
    def _score(self, user_state: Any, rows: np.ndarray) -> np.ndarray: ...

    def sample_scores(
        self,
        user_state: Any,
        candidates: Candidates,
        n_samples: int,
        rng: np.random.Generator | int | None = None,
    ) -> np.ndarray:
        """(n_samples, n_candidates) posterior score samples for Thompson sampling.

        Point-estimate models return their scores repeated (a degenerate posterior).
        """
        if n_samples < 1:
            raise ValueError("n_samples must be >= 1")
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        rows = self._rows(candidates)
        out = self._sample_scores(user_state, rows, n_samples, gen).astype(np.float32, copy=False)
        if rows.size and (rows == 0).any():
            out = out.copy()
            out[:, rows == 0] = -np.inf
        return out

    def _sample_scores(
        self, user_state: Any, rows: np.ndarray, n_samples: int, rng: np.random.Generator
    ) -> np.ndarray:
        return np.repeat(self._score(user_state, rows)[None, :], n_samples, axis=0)

    def sample_scores_many(
        self,
        user_states: Sequence[Any],
        candidates: Sequence[Candidates],
        n_samples: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """(users, n_samples, longest list) posterior score samples of each user's candidates
        in one call (a scorer's batch); -inf for unknown candidates and past each list's end."""
        if n_samples < 1:
            raise ValueError("n_samples must be >= 1")
        if len(user_states) != len(candidates) or not candidates:
            raise ValueError("sample_scores_many needs one candidate list per user state")
        lists = [self._rows(c) for c in candidates]
        rows = np.zeros((len(lists), max(r.size for r in lists)), np.int64)  # 0 = unknown
        for b, r in enumerate(lists):
            rows[b, : r.size] = r
        out = self._sample_scores_many(user_states, rows, n_samples, rng)
        out = out.astype(np.float32, copy=False)
        unknown = rows == 0
        if unknown.any():
            out[np.broadcast_to(unknown[:, None, :], out.shape)] = -np.inf
        return out

    def _sample_scores_many(
        self,
        user_states: Sequence[Any],
        rows: np.ndarray,
        n_samples: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Default: `_sample_scores` per user, stacked."""
        return np.stack(
            [
                self._sample_scores(u, r, n_samples, rng)
                for u, r in zip(user_states, rows, strict=True)
            ]
        )

    def rank(
        self,
        user_state: Any,
        k: int,
        candidates: Candidates = None,
        exclude: Sequence[str] = (),
    ) -> list[str]:
        """Top-k item ids by score (greedy), skipping `exclude`."""
        rows = self._rows(candidates)
        scores = self.score(user_state, rows).astype(np.float64)
        if exclude:
            scores[np.isin(rows, self.items.rows(exclude))] = -np.inf
        k = min(k, rows.size)
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [str(self.items.item_id(int(rows[i]))) for i in top if np.isfinite(scores[i])]

    # --- snapshots ---------------------------------------------------------------------------
    @abc.abstractmethod
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Snapshot as (named numpy arrays, JSON-serialisable metadata)."""

    @classmethod
    @abc.abstractmethod
    def from_state(cls, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> OnlineModel:
        """Rebuild a model from `state()` output."""

    def _base_meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "items": self.items.to_json(),
            "events_seen": self.events_seen,
            "last_event_ts": self.last_event_ts,
        }

    def _restore_base(self, meta: Mapping[str, Any]) -> None:
        self.events_seen = int(meta.get("events_seen", 0))
        self.last_event_ts = int(meta.get("last_event_ts", 0))


class SequentialModel(OnlineModel):
    """An OnlineModel whose user state is computed from the user's recent item sequence."""

    max_len: int = 50

    def user_rows(self, item_seq: Sequence[str]) -> np.ndarray:
        """Rows of the last `max_len` known items of `item_seq`."""
        rows = self.items.known_rows(item_seq)
        return rows[-self.max_len :]
