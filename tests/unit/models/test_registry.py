"""Model registry: versioned checksummed snapshots, hot reload, corruption, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.base import TrainingBatch
from models.baselines import PopularityModel
from models.gru import GRUConfig, GRUModel
from models.registry import ModelRegistry, SnapshotError, SnapshotWatcher

pytestmark = pytest.mark.timeout(20)


def _gru(seed: int = 0, steps: int = 3) -> GRUModel:
    model = GRUModel(GRUConfig(dim=8, hidden=8, capacity=4, seed=seed, lr=0.05))
    seqs = [["x1", "x2", "x3", "x4"], ["x3", "x1", "x2"]]
    for _ in range(steps):
        model.learn(TrainingBatch.from_ids(model.items, seqs, categories={"x1": "c/a"}))
    model.last_event_ts = 1234
    return model


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_publish_list_load_round_trip(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    model = _gru()
    v = reg.publish(model)
    assert v == 1 and reg.versions() == [1]
    info = reg.list()[0]
    assert info.valid and info.kind == "gru" and info.last_event_ts == 1234
    assert info.events_seen == model.events_seen
    meta = json.loads((tmp_path / "v00000001" / "meta.json").read_text())
    assert set(meta["sha256"]) == {"model.safetensors", "state.json"}
    loaded = reg.load(v)
    assert isinstance(loaded, GRUModel)
    state = model.user_state(["x1", "x2"])
    np.testing.assert_allclose(loaded.score(loaded.user_state(["x1", "x2"])), model.score(state))
    assert not list(tmp_path.glob(".tmp-*"))  # no leftovers of the atomic write


def test_snapshot_files_are_not_pickles(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    reg.publish(_gru())
    raw = (tmp_path / "v00000001" / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")  # safetensors: u64 length + JSON header
    header = json.loads(raw[8 : 8 + header_len])
    assert "offset" in header and "gru.weight_ih_l0" in header
    json.loads((tmp_path / "v00000001" / "state.json").read_text())


def test_watcher_picks_up_new_snapshot_without_restart(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    watcher = SnapshotWatcher(reg)
    assert watcher.maybe_reload() is None  # empty registry
    reg.publish(_gru(seed=0))
    first = watcher.maybe_reload()
    assert first is not None and watcher.version == 1
    assert watcher.maybe_reload() is None  # nothing new
    newer = _gru(seed=1, steps=6)
    reg.publish(newer)
    second = watcher.maybe_reload()
    assert second is not None and second is not first and watcher.version == 2
    assert second.events_seen == newer.events_seen


def test_corrupted_snapshot_rejected_previous_kept(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    watcher = SnapshotWatcher(reg)
    reg.publish(_gru(seed=0))
    good = watcher.maybe_reload()
    assert good is not None
    reg.publish(_gru(seed=1))
    _corrupt(tmp_path / "v00000002" / "model.safetensors")
    assert watcher.maybe_reload() is None
    assert watcher.model is good and watcher.version == 1
    assert "checksum mismatch" in watcher.rejected[2]
    with pytest.raises(SnapshotError, match="checksum"):
        reg.load(2)
    info = {i.version: i for i in reg.list()}
    assert info[1].valid and not info[2].valid and "checksum" in info[2].reason
    best = reg.latest_valid()
    assert best is not None and best[0] == 1 and 2 in reg.rejected
    reg.publish(_gru(seed=2))  # a later good one is picked up again
    assert watcher.maybe_reload() is not None and watcher.version == 3


def test_corrupted_state_json_and_missing_meta_rejected(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    reg.publish(_gru())
    reg.publish(_gru())
    (tmp_path / "v00000001" / "state.json").write_text("{}")
    (tmp_path / "v00000002" / "meta.json").unlink()
    with pytest.raises(SnapshotError, match=r"state\.json"):
        reg.load(1)
    with pytest.raises(SnapshotError, match="missing meta"):
        reg.load(2)
    assert reg.latest_valid() is None


def test_rollback_republishes_old_version(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    reg.publish(PopularityModel())
    pop = PopularityModel()
    pop.learn(TrainingBatch.from_ids(pop.items, [["a", "b", "b"]]))
    reg.publish(pop)
    new_v = reg.rollback(1)
    assert new_v == 3
    assert json.loads((tmp_path / "v00000003" / "meta.json").read_text())["rollback_of"] == 1
    assert len(reg.load(3).items) == 0
    with pytest.raises(SnapshotError):
        reg.rollback(99)


def test_prune_keeps_newest(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, keep=2)
    for _ in range(4):
        reg.publish(PopularityModel())
    assert reg.versions() == [3, 4]


def test_watcher_poll_interval(tmp_path: Path) -> None:
    now = [0.0]
    reg = ModelRegistry(tmp_path)
    watcher = SnapshotWatcher(reg, min_interval_s=5.0, clock=lambda: now[0])
    assert watcher.maybe_reload() is None
    reg.publish(PopularityModel())
    now[0] = 1.0
    assert watcher.maybe_reload() is None  # too soon to poll again
    now[0] = 6.0
    assert watcher.maybe_reload() is not None
