"""Incremental trainer service: the pure core of the trainer worker (no Kafka here).

Feed it events (`on_interaction`, `on_item`, `on_feedback`); it keeps a bounded replay
buffer of recent per-user sequences and recent slate feedback, takes a mini-batch
gradient step every N events or T ms, and publishes snapshots to a registry every
T seconds or N updates (`maybe_snapshot`).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from models.base import OnlineModel, SequentialModel, SlateFeedback, TrainingBatch

DEFAULT_TYPE_WEIGHTS: dict[str, float] = {
    "click": 1.0,
    "view": 0.5,
    "rating": 1.0,
    "add_to_cart": 1.5,
    "purchase": 2.0,
}


class SnapshotSink(Protocol):
    """Anything with `publish(model, extra) -> version` (e.g. `ModelRegistry`)."""

    def publish(self, model: OnlineModel, extra: dict[str, Any] | None = None) -> int: ...


@dataclass
class TrainerConfig:
    """Settings of the incremental trainer (validated in `validate`)."""

    max_len: int = 50
    step_every_events: int = 128
    step_every_ms: float = 1000.0
    batch_users: int = 128
    train_len: int = 30  # rows per user per step (context + targets), <= max_len + 1
    targets_per_user: int = 12  # loss positions per user per step (fresh events always count)
    buffer_len: int = 200  # events kept per user; replay draws a random window from them
    max_users: int = 100_000
    feedback_buffer: int = 10_000
    batch_feedback: int = 32
    snapshot_every_s: float = 60.0
    snapshot_every_updates: int = 500
    type_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TYPE_WEIGHTS))
    default_weight: float = 1.0
    replay: bool | None = None  # None: replay for sequential models, fresh-only otherwise
    seed: int = 0

    def validate(self) -> None:
        """Raise ValueError on an invalid setting."""
        if min(self.max_len, self.step_every_events, self.batch_users, self.max_users) < 1:
            raise ValueError("max_len, step_every_events, batch_users, max_users must be >= 1")
        if self.train_len < 2 or self.targets_per_user < 1:
            raise ValueError("train_len must be >= 2 and targets_per_user >= 1")
        if self.buffer_len < self.max_len + 1:
            raise ValueError("buffer_len must be >= max_len + 1")
        if self.step_every_ms <= 0 or self.snapshot_every_s <= 0:
            raise ValueError("step_every_ms and snapshot_every_s must be > 0")
        if self.snapshot_every_updates < 1 or self.feedback_buffer < 1:
            raise ValueError("snapshot_every_updates and feedback_buffer must be >= 1")


class _UserBuffer:
    __slots__ = ("n_new", "rows", "weights")

    def __init__(self, maxlen: int) -> None:
        self.rows: deque[int] = deque(maxlen=maxlen)
        self.weights: deque[float] = deque(maxlen=maxlen)
        self.n_new = 0


class OnlineTrainer:
    """Learns a model incrementally from a stream of interactions, items and feedback."""

    def __init__(
        self,
        model: OnlineModel,
        config: TrainerConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.config = config or TrainerConfig()
        self.config.validate()
        self.clock = clock
        cfg = self.config
        self.replay = cfg.replay if cfg.replay is not None else isinstance(model, SequentialModel)
        self._maxlen = max(cfg.buffer_len, cfg.step_every_events + 1)
        self._users: OrderedDict[str, _UserBuffer] = OrderedDict()
        self._user_list: list[str] = []
        self._user_pos: dict[str, int] = {}
        self._dirty: OrderedDict[str, None] = OrderedDict()
        self._pending_fb: deque[tuple[np.ndarray, np.ndarray, list[int]]] = deque()
        self._fb_replay: deque[tuple[np.ndarray, np.ndarray, list[int]]] = deque(
            maxlen=cfg.feedback_buffer
        )
        self._rng = np.random.default_rng(cfg.seed)
        self.events_seen = 0
        self.updates = 0
        self.last_loss: float | None = None
        self.last_event_ts = 0
        self._since_step = 0
        self._last_step = clock()
        self._last_snap_time = clock()
        self._last_snap_updates = 0
        self._snap_retry_at = -math.inf  # after a failed write: no new try before this time

    # --- events ---------------------------------------------------------------------------
    def on_item(self, item_id: str, category_path: str | None = None) -> int:
        """Admit a new (or re-categorised) item: scorable at once; returns its row."""
        return self.model.admit(item_id, category_path)

    def on_interaction(
        self,
        user_id: str,
        item_id: str,
        type: str = "click",
        ts: int = 0,
        category: str | None = None,
    ) -> float | None:
        """Record one interaction; returns the loss if this event triggered a step."""
        weight = self.config.type_weights.get(type, self.config.default_weight)
        if weight <= 0:
            return None
        row = self.model.admit(item_id, category)
        self.model.items.touch(item_id)
        buf = self._buffer(user_id)
        buf.rows.append(row)
        buf.weights.append(weight)
        buf.n_new += 1
        self._dirty[user_id] = None
        self._event(ts)
        return self.maybe_step()

    def on_feedback(self, record: SlateFeedback | Mapping[str, Any]) -> float | None:
        """Record a served slate with its clicked positions (slate likelihood)."""
        fb = record if isinstance(record, SlateFeedback) else _feedback_from_mapping(record)
        if not fb.slate:
            raise ValueError("feedback slate is empty")
        slate = np.asarray([self.model.admit(i) for i in fb.slate], np.int64)
        buf = self._users.get(fb.user_id)
        if fb.history:
            hist = self.model.items.known_rows(fb.history)
        elif buf is not None:
            hist = np.asarray(buf.rows, np.int64)
        else:
            hist = np.zeros(0, np.int64)
        item = (hist[-self.config.max_len :], slate, list(fb.clicked))
        self._pending_fb.append(item)
        self._fb_replay.append(item)
        self._event(fb.ts)
        return self.maybe_step()

    def _event(self, ts: int) -> None:
        self.events_seen += 1
        self._since_step += 1
        if ts > self.last_event_ts:
            self.last_event_ts = int(ts)
            self.model.last_event_ts = int(ts)

    def _buffer(self, user_id: str) -> _UserBuffer:
        buf = self._users.get(user_id)
        if buf is None:
            if len(self._users) >= self.config.max_users:
                old, _ = self._users.popitem(last=False)
                self._dirty.pop(old, None)
                pos = self._user_pos.pop(old)
                last = self._user_list.pop()
                if last != old:
                    self._user_list[pos] = last
                    self._user_pos[last] = pos
            buf = _UserBuffer(self._maxlen)
            self._users[user_id] = buf
            self._user_pos[user_id] = len(self._user_list)
            self._user_list.append(user_id)
        else:
            self._users.move_to_end(user_id)
        return buf

    def history(self, user_id: str) -> list[str]:
        """The user's recent item ids (oldest first) as the trainer saw them."""
        buf = self._users.get(user_id)
        if buf is None:
            return []
        return [i for i in self.model.items.ids(list(buf.rows)) if i is not None]

    # --- steps ---------------------------------------------------------------------------------
    def maybe_step(self, now: float | None = None) -> float | None:
        """Step if N events arrived since the last step, or T ms passed with events pending."""
        if self._since_step == 0:
            return None
        if self._since_step >= self.config.step_every_events:
            return self.step()
        now = self.clock() if now is None else now
        if (now - self._last_step) * 1000.0 >= self.config.step_every_ms:
            return self.step()
        return None

    def step(self) -> float | None:
        """One mini-batch update from fresh events plus replayed recent sequences."""
        cfg = self.config
        users = list(self._dirty.keys())[-cfg.batch_users :]
        if self.replay and len(users) < cfg.batch_users and len(self._user_list) > len(users):
            chosen = set(users)
            n_extra = min(cfg.batch_users - len(users), len(self._user_list) - len(users))
            for idx in self._rng.permutation(len(self._user_list)):
                if n_extra == 0:
                    break
                uid = self._user_list[int(idx)]
                if uid not in chosen:
                    users.append(uid)
                    chosen.add(uid)
                    n_extra -= 1
        seqs, weights, starts = [], [], []
        for uid in users:
            buf = self._users[uid]
            rows = np.fromiter(buf.rows, np.int64, len(buf.rows))
            wts = np.fromiter(buf.weights, np.float32, len(buf.weights))
            if self.replay and buf.n_new:  # fresh events: the tail window
                keep = min(len(rows), max(cfg.train_len, buf.n_new + 1))
                rows, wts = rows[-keep:], wts[-keep:]
                starts.append(max(1, len(rows) - max(cfg.targets_per_user, buf.n_new)))
            elif self.replay:  # replay: a random window of the user's buffered history
                end = int(self._rng.integers(min(2, len(rows)), len(rows) + 1))
                begin = max(0, end - cfg.train_len)
                rows, wts = rows[begin:end], wts[begin:end]
                starts.append(max(1, len(rows) - cfg.targets_per_user))
            else:
                starts.append(max(0, len(rows) - buf.n_new))
            seqs.append(rows)
            weights.append(wts)
        for uid in self._dirty:
            self._users[uid].n_new = 0
        self._dirty.clear()
        fb = list(self._pending_fb)[-cfg.batch_feedback :]
        self._pending_fb.clear()
        if self.replay and len(fb) < cfg.batch_feedback and len(self._fb_replay) > len(fb):
            extra = self._rng.integers(0, len(self._fb_replay), cfg.batch_feedback - len(fb))
            fb.extend(self._fb_replay[int(i)] for i in extra)
        self._since_step = 0
        self._last_step = self.clock()
        batch = TrainingBatch(
            sequences=seqs, starts=starts, weights=weights, users=users, feedback=fb
        )
        if batch.n_targets == 0:
            return None
        loss = self.model.learn(batch)
        self.model.events_seen = self.events_seen
        self.updates += 1
        self.last_loss = loss
        return loss

    def flush(self) -> float | None:
        """Step now if any event is pending (e.g. before a snapshot or shutdown)."""
        return self.step() if self._since_step else None

    # --- snapshots -------------------------------------------------------------------------------
    def maybe_snapshot(
        self, registry: SnapshotSink, now: float | None = None, force: bool = False
    ) -> int | None:
        """Publish a snapshot if T seconds or N updates passed since the last; returns version.
        A failed write (the error is raised) is not tried again for T seconds unless forced."""
        now = self.clock() if now is None else now
        due = (now - self._last_snap_time) >= self.config.snapshot_every_s or (
            self.updates - self._last_snap_updates >= self.config.snapshot_every_updates
        )
        if not (force or (due and self.updates > self._last_snap_updates)):
            return None
        if not force and now < self._snap_retry_at:
            return None
        self.model.events_seen = self.events_seen
        try:
            version = registry.publish(self.model, extra={"updates": self.updates})
        except Exception:
            self._snap_retry_at = now + self.config.snapshot_every_s
            raise
        self._last_snap_time = now
        self._last_snap_updates = self.updates
        return version

    def stats(self) -> dict[str, Any]:
        """Counters for metrics/logging."""
        return {
            "events_seen": self.events_seen,
            "updates": self.updates,
            "users_buffered": len(self._users),
            "feedback_buffered": len(self._fb_replay),
            "items": len(self.model.items),
            "last_loss": self.last_loss,
            "last_event_ts": self.last_event_ts,
        }


def _feedback_from_mapping(record: Mapping[str, Any]) -> SlateFeedback:
    try:
        return SlateFeedback(
            user_id=str(record["user_id"]),
            slate=[str(i) for i in record["slate"]],
            clicked=[int(p) for p in record.get("clicked", record.get("clicked_positions", []))],
            propensities=record.get("propensities"),
            history=[str(i) for i in record.get("history", [])],
            ts=int(record.get("ts", 0)),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed feedback record: {exc}") from exc
