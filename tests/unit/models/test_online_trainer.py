"""OnlineTrainer: step cadence, replay buffer bounds, feedback, items, snapshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.baselines import PopularityModel
from models.gru import GRUConfig, GRUModel
from models.online_trainer import OnlineTrainer, TrainerConfig
from models.registry import ModelRegistry, SnapshotWatcher

pytestmark = pytest.mark.timeout(30)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _gru() -> GRUModel:
    return GRUModel(GRUConfig(dim=16, hidden=32, capacity=8, lr=0.02, dropout=0.0, seed=3))


def test_steps_every_n_events() -> None:
    trainer = OnlineTrainer(_gru(), TrainerConfig(step_every_events=5, step_every_ms=1e9))
    results = [trainer.on_interaction("u1", f"i{k % 3}", "click", ts=k) for k in range(12)]
    stepped = [i for i, r in enumerate(results) if r is not None]
    assert stepped == [4, 9]
    assert trainer.updates == 2 and trainer.events_seen == 12
    assert trainer.model.events_seen == 10  # stream events up to the last step
    assert trainer.last_event_ts == 11


def test_steps_after_time_with_pending_events() -> None:
    clock = FakeClock()
    cfg = TrainerConfig(step_every_events=1000, step_every_ms=50)
    trainer = OnlineTrainer(_gru(), cfg, clock=clock)
    trainer.on_interaction("u1", "a")
    assert trainer.on_interaction("u1", "b") is None
    clock.t = 0.06
    assert trainer.maybe_step() is not None
    clock.t = 0.2
    assert trainer.maybe_step() is None  # nothing pending


def test_replay_buffer_is_bounded() -> None:
    cfg = TrainerConfig(max_users=3, max_len=4, step_every_events=10_000, step_every_ms=1e9)
    trainer = OnlineTrainer(_gru(), cfg)
    for u in range(10):
        for k in range(30):
            trainer.on_interaction(f"u{u}", f"i{k}")
    assert trainer.stats()["users_buffered"] == 3
    assert trainer.history("u0") == []  # evicted, least recently active
    assert len(trainer.history("u9")) <= max(cfg.max_len + 1, cfg.step_every_events + 1)
    assert trainer.history("u9")[-1] == "i29"


def test_streaming_training_learns_next_item() -> None:
    model = _gru()
    trainer = OnlineTrainer(model, TrainerConfig(step_every_events=8, batch_users=8))
    rng = np.random.default_rng(0)
    for _ in range(250):
        u = int(rng.integers(0, 8))
        n = len(trainer.history(f"u{u}"))
        trainer.on_interaction(f"u{u}", f"i{(u + n) % 10}", "click")
    assert trainer.updates > 20
    assert model.rank(model.user_state(["i3", "i4", "i5"]), 1) == ["i6"]


def test_zero_weight_types_are_ignored() -> None:
    cfg = TrainerConfig(type_weights={"view": 0.0, "click": 1.0}, step_every_events=100)
    trainer = OnlineTrainer(_gru(), cfg)
    trainer.on_interaction("u", "a", "view")
    assert trainer.events_seen == 0 and "a" not in trainer.model.items


def test_item_event_makes_item_scorable_at_once() -> None:
    model = _gru()
    trainer = OnlineTrainer(model, TrainerConfig(step_every_events=4))
    for k in range(20):
        trainer.on_interaction("u", f"i{k % 5}", category="shop/x")
    trainer.on_item("brand-new", "shop/x")
    score = model.score(model.user_state(trainer.history("u")), ["brand-new"])
    assert np.isfinite(score).all()


def test_feedback_records_train_the_slate_likelihood() -> None:
    model = _gru()
    trainer = OnlineTrainer(model, TrainerConfig(step_every_events=4, batch_feedback=8))
    record = {"user_id": "u", "slate": ["s0", "s1", "s2"], "clicked": [1], "propensities": None}
    for _ in range(200):
        trainer.on_feedback(record)
    probs = model.slate_probabilities(model.user_state([]), ["s0", "s1", "s2"])
    assert int(np.argmax(probs)) == 2  # position 1 (after the no-click entry)
    with pytest.raises(ValueError):
        trainer.on_feedback({"user_id": "u", "slate": ["s0"], "clicked": [3]})
    with pytest.raises(ValueError):
        trainer.on_feedback({"slate": ["s0"]})


def test_fresh_only_models_count_each_event_once() -> None:
    pop = PopularityModel()
    trainer = OnlineTrainer(pop, TrainerConfig(step_every_events=3, batch_users=4))
    for item in ["a", "b", "a", "a", "c", "a"]:
        trainer.on_interaction("u", item)
    assert not trainer.replay
    scores = pop.score(pop.user_state([]), ["a", "b", "c"])
    assert scores.tolist() == [4.0, 1.0, 1.0]


def test_maybe_snapshot_by_updates_and_time(tmp_path: Path) -> None:
    clock = FakeClock()
    cfg = TrainerConfig(step_every_events=2, snapshot_every_updates=3, snapshot_every_s=100)
    trainer = OnlineTrainer(_gru(), cfg, clock=clock)
    reg = ModelRegistry(tmp_path)
    watcher = SnapshotWatcher(reg)
    assert trainer.maybe_snapshot(reg) is None  # no updates yet
    for k in range(6):
        trainer.on_interaction("u", f"i{k}", ts=1000 + k)
    assert trainer.updates == 3
    assert trainer.maybe_snapshot(reg) == 1
    assert trainer.maybe_snapshot(reg) is None
    trainer.on_interaction("u", "i9")
    trainer.on_interaction("u", "i8")
    clock.t = 101.0
    assert trainer.maybe_snapshot(reg) == 2
    loaded = watcher.maybe_reload()
    assert loaded is not None and loaded.events_seen == 8 and loaded.last_event_ts == 1005


def test_invalid_trainer_config() -> None:
    with pytest.raises(ValueError):
        OnlineTrainer(_gru(), TrainerConfig(step_every_events=0))


def test_step_trains_recent_window_of_each_user() -> None:
    seen: list[tuple[int, int]] = []
    model = _gru()
    original = model.learn

    def spy(batch):  # type: ignore[no-untyped-def]
        seen.extend((len(s), st) for s, st in zip(batch.sequences, batch.starts, strict=True))
        return original(batch)

    model.learn = spy  # type: ignore[method-assign]
    cfg = TrainerConfig(step_every_events=40, train_len=10, targets_per_user=3, batch_users=1)
    trainer = OnlineTrainer(model, cfg)
    for k in range(40):
        trainer.on_interaction("u", f"i{k}")
    assert seen == [(40, 1)]  # all fresh events train (position 0 has no context)
    seen.clear()
    for k in range(40, 80):
        trainer.on_interaction("v", f"i{k}")
    # replayed user "u" is not stepped (batch_users=1 keeps the fresh user only)
    assert seen == [(40, 1)]
    trainer.config.batch_users = 2
    for k in range(80, 82):
        trainer.on_interaction("w", f"i{k}")
    trainer.step()
    lengths = sorted(seen[1:])
    assert (2, 1) in lengths  # fresh user w: its second event is a target
    replayed = [x for x in lengths if x != (2, 1)]
    assert len(replayed) == 1  # one replayed user: a random window of <= 10 rows, 3 targets
    length, st = replayed[0]
    assert 2 <= length <= 10 and st == max(1, length - 3)
