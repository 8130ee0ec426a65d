"""Trainer service: a snapshot that cannot be written (full disk, registry gone) is counted
and retried after the snapshot interval; training goes on and never crashes the worker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from models.gru import GRUConfig, GRUModel
from models.online_trainer import OnlineTrainer, TrainerConfig
from models.registry import ModelRegistry
from streams import schemas
from streams.config import Settings
from streams.handlers.trainer import TrainerHandler
from streams.runtime import Record
from streams.services.trainer_service import TrainerService

pytestmark = pytest.mark.timeout(60)


class FlakyRegistry(ModelRegistry):
    """A registry whose disk is full until `full` is cleared."""

    full = True
    attempts = 0

    def publish(self, model: Any, extra: dict[str, Any] | None = None) -> int:
        self.attempts += 1
        if self.full:
            raise OSError(28, "No space left on device")
        return super().publish(model, extra)


def _interaction(j: int) -> schemas.Interaction:
    return schemas.Interaction(
        event_id=f"x{j}",
        ts=1_764_000_000_000 + j,
        user_id=f"u{j % 4}",
        item_id=f"i{j % 10}",
        type="click",
    )


def test_failed_snapshot_is_counted_retried_later_and_training_goes_on(tmp_path: Path) -> None:
    now = [1000.0]
    registry = FlakyRegistry(tmp_path / "reg")
    trainer = OnlineTrainer(
        GRUModel(GRUConfig(dim=8, hidden=8)),
        TrainerConfig(step_every_events=8, snapshot_every_s=30.0, snapshot_every_updates=1),
        clock=lambda: now[0],
    )
    svc = TrainerService(trainer, registry)
    for j in range(16):
        svc.on_interaction(_interaction(j))
    assert svc.tick() is None  # the write failed: no exception
    assert svc.stats.snapshot_failures == 1 and registry.attempts == 1
    for j in range(16, 32):  # learning goes on; no new attempt before the interval
        svc.on_interaction(_interaction(j))
        assert svc.tick() is None
    assert registry.attempts == 1 and trainer.updates >= 3
    registry.full = False
    now[0] += 31.0
    version = svc.tick()
    assert version == 1 and svc.stats.snapshots == 1 and svc.stats.last_version == 1
    assert svc.stats.snapshot_failures == 1


def test_an_older_item_version_arriving_late_keeps_the_newer_category(tmp_path: Path) -> None:
    trainer = OnlineTrainer(GRUModel(GRUConfig(dim=8, hidden=8)), TrainerConfig())
    svc = TrainerService(trainer, ModelRegistry(tmp_path / "reg"))
    t = 1_764_000_000_000

    def item(ts: int, path: list[str]) -> schemas.Item:
        return schemas.Item(event_id=f"m{ts}", ts=ts, item_id="i1", category_path=path)

    svc.on_item(item(t + 50, ["books"]))
    svc.on_item(item(t + 20, ["movies"]))  # older, arrives later
    assert svc._items["i1"] == (t + 50, "books")
    svc.on_item(item(t + 60, ["games"]))
    assert svc._items["i1"] == (t + 60, "games")


def test_an_item_version_from_a_fast_clock_does_not_hold_for_a_day(tmp_path: Path) -> None:
    trainer = OnlineTrainer(GRUModel(GRUConfig(dim=8, hidden=8)), TrainerConfig())
    svc = TrainerService(trainer, ModelRegistry(tmp_path / "reg"))
    now = int(time.time() * 1000)

    def item(ts: int, path: list[str]) -> schemas.Item:
        return schemas.Item(event_id=f"m{ts}", ts=ts, item_id="i1", category_path=path)

    svc.on_item(item(now + 12 * 3600_000, ["books"]))  # counted as at most a minute ahead
    svc.on_item(item(int(time.time() * 1000) + 300_000, ["games"]))
    assert svc._items["i1"][1] == "games"


def test_the_event_loop_runs_while_a_batch_trains(tmp_path: Path) -> None:
    """A batch that takes several steps trains in a worker thread, so Faust's commit and
    other timers are not held up for the whole batch."""
    trainer = OnlineTrainer(
        GRUModel(GRUConfig(dim=8, hidden=8)), TrainerConfig(step_every_events=8)
    )
    svc = TrainerService(trainer, ModelRegistry(tmp_path / "reg"))
    settings = Settings(topic_prefix="t", state_dir=tmp_path)
    handler = TrainerHandler(settings, svc)
    records = [Record("t.interactions", _interaction(j).to_json()) for j in range(80)]
    updates_seen: list[int] = []

    async def main() -> None:
        async def watch() -> None:
            while True:
                updates_seen.append(trainer.updates)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0)
        await handler.handle(records)
        watcher.cancel()

    asyncio.run(main())
    assert trainer.updates >= 8
    # the watcher ran while the batch was in the middle of its steps, not only before/after
    assert any(0 < u < trainer.updates for u in updates_seen), updates_seen


def test_steps_and_snapshot_writes_reach_the_metrics_with_their_durations(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from streams.metrics.common import InstrumentedHandler
    from streams.metrics.trainer import TrainerMetrics

    trainer = OnlineTrainer(
        GRUModel(GRUConfig(dim=8, hidden=8)),
        TrainerConfig(step_every_events=8, snapshot_every_s=1e-6, snapshot_every_updates=1),
    )
    svc = TrainerService(trainer, ModelRegistry(tmp_path / "reg"))
    reg = CollectorRegistry()
    h = InstrumentedHandler(TrainerHandler(Settings(topic_prefix="p"), svc), TrainerMetrics(reg))
    recs = [Record("p.interactions", _interaction(j).to_json()) for j in range(24)]
    asyncio.run(h.handle(recs))

    def val(name: str) -> float:
        v = reg.get_sample_value(f"slatestream_trainer_{name}")
        return 0.0 if v is None else v

    assert svc.stats.steps == 3 and val("train_steps_total") == 3
    assert val("train_step_seconds_count") == 3 and val("train_step_seconds_sum") > 0
    assert svc.stats.snapshots >= 1
    assert val("snapshot_seconds_count") == svc.stats.snapshots == val("snapshots_total")
    assert svc.stats.take_timings() == ([], [])  # the metrics took them
