"""Trainer service: decoded interactions, items and feedback into the incremental trainer.

The model learns from every fresh event (mini-batch steps every N events / T ms) and
publishes versioned snapshots that every scorer hot-reloads.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from models.base import OnlineModel, SlateFeedback
from models.gru import BayesGRUModel, GRUConfig, GRUModel
from models.online_trainer import OnlineTrainer, TrainerConfig
from models.registry import ModelRegistry, SnapshotError
from streams.config import Settings
from streams.runtime import SeenIds
from streams.schemas import Feedback, Interaction, Item, capped_ts

log = logging.getLogger(__name__)

MAX_PENDING_TIMINGS = 10_000  # durations kept for a metrics reader that stopped reading


@dataclass
class TrainerStats:
    """Counters the trainer's metrics read."""

    interactions: int = 0
    items: int = 0
    feedback: int = 0
    rejected: int = 0
    duplicates: int = 0  # redelivered interactions/feedback (same event_id), not learned again
    late_feedback: int = 0  # late feedback: its slate was learned from the on-time record
    snapshots: int = 0
    snapshot_failures: int = 0
    last_version: int | None = None
    last_loss: float | None = None
    last_feedback_lag_ms: float = 0.0
    steps: int = 0
    # durations (s) of the steps and snapshot writes since the metrics last took them
    step_seconds: list[float] = field(default_factory=list)
    snapshot_seconds: list[float] = field(default_factory=list)

    def learned(self, loss: float | None, started: float) -> None:
        """Count a call that returned a step's loss (None: no step was due), timed from
        `started` (a `time.perf_counter()` reading)."""
        if loss is None:
            return
        self.last_loss = loss
        self.steps += 1
        if len(self.step_seconds) < MAX_PENDING_TIMINGS:
            self.step_seconds.append(time.perf_counter() - started)

    def take_timings(self) -> tuple[list[float], list[float]]:
        """Step and snapshot durations recorded since the last call."""
        out = (self.step_seconds, self.snapshot_seconds)
        self.step_seconds, self.snapshot_seconds = [], []
        return out


def build_model(settings: Settings, registry: ModelRegistry | None = None) -> OnlineModel:
    """The newest valid snapshot if there is one (restart), else a fresh model from settings."""
    if registry is not None:
        latest = registry.latest_valid()
        if latest is not None:
            log.info("trainer resumes from snapshot v%s", latest[0])
            return latest[1]
    cfg = worker_gru_config(settings)
    return BayesGRUModel(cfg) if settings.model_kind == "bayes-gru" else GRUModel(cfg)


def worker_gru_config(settings: Settings) -> GRUConfig:
    """The trainer worker's GRU: hidden = dim (>= 64); the full softmax up to 2,048 active
    items, then a shared sampled softmax of 1,024 negatives (the full one over a 10k
    catalogue costs ~10x more per step); lr 4e-3 for a step every 256 events (on ml-100k
    one pass as good as lr 2e-3 stepping every 128, at half the steps)."""
    return GRUConfig(
        dim=settings.model_dim,
        hidden=max(settings.model_dim, 64),
        dropout=0.1,
        lr=4e-3,
        n_negatives=1024,
        full_softmax_below=2048,
    )


def worker_trainer_config(settings: Settings) -> TrainerConfig:
    """The trainer worker's cadence: a step every `train_every_events` events or
    `train_every_ms`, snapshots every `snapshot_every_s`, weights per event type."""
    return TrainerConfig(
        step_every_events=settings.train_every_events,
        step_every_ms=settings.train_every_ms,
        snapshot_every_s=settings.snapshot_every_s,
        type_weights=dict(settings.event_weights),
        default_weight=0.0,
    )


class TrainerService:
    """Feeds events to an `OnlineTrainer` and snapshots the model to the registry."""

    def __init__(
        self, trainer: OnlineTrainer, registry: ModelRegistry, clock: object = time.time
    ) -> None:
        self.trainer = trainer
        self.registry = registry
        self.stats = TrainerStats()
        # item -> (ts, category) of the version held: an older one arriving late loses
        self._items: dict[str, tuple[int, str]] = {}
        self._feedback_ts: list[int] = []
        self._seen = SeenIds()  # interactions
        self._seen_feedback = SeenIds()

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainerService:
        """Trainer with the model, cadence and registry the settings describe."""
        registry = ModelRegistry(settings.effective_registry)
        model = build_model(settings, registry)
        return cls(OnlineTrainer(model, worker_trainer_config(settings)), registry)

    def on_item(self, item: Item) -> None:
        """A catalogue item: admitted at once with its category (cold start via group prior).
        An older version arriving after a newer one changes nothing, as in the feature store."""
        ts = capped_ts(item.ts, int(time.time() * 1000))  # a fast clock must not win for a day
        held = self._items.get(item.item_id)
        if held is not None and ts < held[0]:
            return
        self._items[item.item_id] = (ts, item.category)
        self.trainer.on_item(item.item_id, item.category or None)
        self.stats.items += 1

    def on_interaction(self, ev: Interaction) -> None:
        """One interaction into the user's replay buffer (once per event_id)."""
        if not self._seen.add(ev.event_id):
            self.stats.duplicates += 1
            return
        held = self._items.get(ev.item_id)
        t0 = time.perf_counter()
        loss = self.trainer.on_interaction(
            ev.user_id, ev.item_id, ev.type, ev.ts, held[1] if held else None
        )
        self.stats.interactions += 1
        self.stats.learned(loss, t0)

    def on_feedback(self, fb: Feedback) -> None:
        """A joined slate (slate likelihood with the no-click option), once per event_id;
        late feedback is not learned: its slate was, from the on-time record."""
        if not self._seen_feedback.add(fb.event_id):
            self.stats.duplicates += 1
            return
        if fb.late:
            self.stats.late_feedback += 1
            return
        record = SlateFeedback(
            user_id=fb.user_id,
            slate=list(fb.slate),
            clicked=[p for p in fb.clicked_positions if p < len(fb.slate)],
            propensities=list(fb.propensities) if fb.propensities else None,
            ts=fb.ts,
        )
        t0 = time.perf_counter()
        loss = self.trainer.on_feedback(record)
        self.stats.feedback += 1
        if len(self._feedback_ts) < 10_000:
            self._feedback_ts.append(fb.ts)
        self.stats.last_feedback_lag_ms = max(0.0, time.time() * 1000 - fb.ts)
        self.stats.learned(loss, t0)

    def take_feedback_ts(self) -> list[int]:
        """Event times of feedback learned since the last call (for model freshness)."""
        out, self._feedback_ts = self._feedback_ts, []
        return out

    def tick(self, force_snapshot: bool = False) -> int | None:
        """Step if due and publish a snapshot if due; returns the new version, if any."""
        t0 = time.perf_counter()
        self.stats.learned(self.trainer.maybe_step(), t0)
        if force_snapshot:
            t0 = time.perf_counter()
            self.stats.learned(self.trainer.flush(), t0)
        t0 = time.perf_counter()
        try:  # the trainer tries a failed write again after snapshot_every_s
            version = self.trainer.maybe_snapshot(self.registry, force=force_snapshot)
        except (OSError, SnapshotError) as exc:  # full disk, registry unmounted: keep learning
            self.stats.snapshot_failures += 1
            log.warning(
                "snapshot not written (%s); training goes on, next try in %.0f s",
                exc,
                self.trainer.config.snapshot_every_s,
            )
            return None
        if version is not None:
            self.stats.snapshots += 1
            self.stats.last_version = version
            if len(self.stats.snapshot_seconds) < MAX_PENDING_TIMINGS:
                self.stats.snapshot_seconds.append(time.perf_counter() - t0)
        return version
