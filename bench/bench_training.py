"""Benchmark: incremental training throughput (events/s) and single-user scoring latency.

`run(quick)` returns measured numbers; `python -m bench.bench_training [--quick]` prints
them as JSON. Synthetic stream: 10,000 items in 50 categories, 2,000 users whose next
item follows a noisy walk in item space; embedding dim 64. The model is the one the trainer
worker builds (`worker_gru_config`: hidden 64, sampled softmax of 1,024 negatives above 2,048
items), beside a bare torch GRU of the same shapes and cadence.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from typing import Any

import numpy as np
import torch

from models.gru import BayesGRUModel, GRUConfig, GRUModel
from models.online_trainer import OnlineTrainer, TrainerConfig

N_ITEMS = 10_000
N_CATS = 50


def _stream(n_events: int, n_users: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_events)
    pos = rng.integers(0, N_ITEMS, n_users)
    items = np.empty(n_events, np.int64)
    for k, u in enumerate(users):
        pos[u] = (pos[u] + rng.integers(1, 20)) % N_ITEMS
        items[k] = pos[u]
    return users, items


def _catalogue(model: GRUModel) -> None:
    for i in range(N_ITEMS):
        model.admit(f"i{i}", f"cat{i % N_CATS}/sub{i % 7}")


def worker_model_config(dim: int = 64) -> GRUConfig:
    """The GRU the trainer worker builds (streams.services.trainer_service), at `dim`."""
    from streams.config import load_settings
    from streams.services.trainer_service import worker_gru_config

    return worker_gru_config(load_settings(model_dim=dim))


def worker_trainer_cfg() -> TrainerConfig:
    """The trainer worker's cadence (streams.services.trainer_service) with default settings."""
    from streams.config import load_settings
    from streams.services.trainer_service import worker_trainer_config

    return worker_trainer_config(load_settings())


def bench_training(n_events: int, cfg: TrainerConfig, model_cfg: GRUConfig) -> dict[str, Any]:
    """Events/s of OnlineTrainer.on_interaction (gradient steps included)."""
    seed = model_cfg.seed
    model = GRUModel(model_cfg)
    _catalogue(model)
    trainer = OnlineTrainer(model, cfg)
    users, items = _stream(n_events + 2000, 2000, seed)
    user_ids = [f"u{u}" for u in users]
    item_ids = [f"i{i}" for i in items]
    for k in range(2000):  # warm-up: fill the replay buffer, first steps
        trainer.on_interaction(user_ids[k], item_ids[k], "click", k)
    updates0 = trainer.updates
    t0 = time.perf_counter()
    for k in range(2000, 2000 + n_events):
        trainer.on_interaction(user_ids[k], item_ids[k], "click", k)
    dt = time.perf_counter() - t0
    return {
        "events": n_events,
        "seconds": round(dt, 3),
        "events_per_s": round(n_events / dt),
        "updates": trainer.updates - updates0,
        "ms_per_update": round(1000 * dt / max(1, trainer.updates - updates0), 2),
        "step_every_events": cfg.step_every_events,
        "batch_users": cfg.batch_users,
        "n_negatives": model_cfg.n_negatives,
        "full_softmax_below": model_cfg.full_softmax_below,
        "dim": model_cfg.dim,
        "hidden": model_cfg.hidden,
    }


class _BareGRU(torch.nn.Module):
    """Peer for the trainer: a plain GRU4Rec-style net (item embedding, GRU, shared sampled
    softmax) with the trainer's shapes and none of its bookkeeping (no replay buffer, id
    maps, category prior, slate likelihood or snapshots)."""

    def __init__(self, n_items: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(n_items, dim)
        self.gru = torch.nn.GRU(dim, hidden, batch_first=True)
        self.out = torch.nn.Linear(hidden, dim)

    def loss(self, seq: torch.Tensor, targets: torch.Tensor, negs: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(self.emb(seq))
        u = self.out(h[:, -targets.shape[1] :]).reshape(-1, self.emb.embedding_dim)
        pos = (u * self.emb(targets.reshape(-1))).sum(-1, keepdim=True)  # (B*T, 1)
        logits = torch.cat([pos, u @ self.emb(negs).T], dim=1)  # target, then shared negatives
        labels = torch.zeros(logits.shape[0], dtype=torch.long)
        return torch.nn.functional.cross_entropy(logits, labels)


def bench_bare_training(n_events: int, cfg: TrainerConfig, model_cfg: GRUConfig) -> dict[str, Any]:
    """Events/s of the bare torch peer taking one step per `step_every_events` events, on
    batches of the trainer's shape (batch_users x train_len, targets_per_user targets)."""
    seed, n_negatives = model_cfg.seed, model_cfg.n_negatives
    torch.manual_seed(seed)
    net = _BareGRU(N_ITEMS, model_cfg.dim, model_cfg.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    rng = np.random.default_rng(seed)
    steps = max(1, n_events // cfg.step_every_events)
    shape = (cfg.batch_users, cfg.train_len)
    batches = [torch.from_numpy(rng.integers(0, N_ITEMS, shape)) for _ in range(min(steps, 8))]
    t0 = time.perf_counter()
    for k in range(steps):
        seq = batches[k % len(batches)]
        negs = torch.from_numpy(rng.integers(0, N_ITEMS, n_negatives))
        loss = net.loss(seq[:, :-1], seq[:, -cfg.targets_per_user :], negs)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    events = steps * cfg.step_every_events
    return {
        "events": events,
        "seconds": round(dt, 3),
        "events_per_s": round(events / dt),
        "ms_per_update": round(1000 * dt / steps, 2),
    }


def _timeit(fn: Any, repeats: int) -> dict[str, float]:
    for _ in range(min(20, repeats)):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1000
    return {
        "p50_ms": round(float(np.median(ms)), 4),
        "p99_ms": round(float(np.quantile(ms, 0.99)), 4),
    }


def bench_scoring(repeats: int, dim: int = 64, seed: int = 0) -> dict[str, Any]:
    """Latency of scoring one user over all 10,000 items (and related calls)."""
    out: dict[str, Any] = {"n_items": N_ITEMS, "dim": dim}
    for cls in (GRUModel, BayesGRUModel):
        model = cls(dataclasses.replace(worker_model_config(dim), seed=seed))
        _catalogue(model)
        trainer = OnlineTrainer(model, TrainerConfig(step_every_events=64))
        users, items = _stream(2000, 200, seed)
        for u, i in zip(users, items, strict=True):
            trainer.on_interaction(f"u{u}", f"i{i}")
        hist = trainer.history("u1")
        state = model.user_state(hist)
        model.score(state)  # build the scoring cache once (rebuilt after each update)
        res = {
            "score_all_items": _timeit(lambda m=model, s=state: m.score(s), repeats),
            "user_state_50": _timeit(lambda m=model, h=hist: m.user_state(h[-50:]), repeats // 2),
            "rank_top10": _timeit(lambda m=model, s=state: m.rank(s, 10), repeats // 2),
        }
        matrix = np.random.default_rng(seed).standard_normal((N_ITEMS, dim), dtype=np.float32)
        u = matrix[0].copy()
        res["bare_numpy_score"] = _timeit(lambda m=matrix, v=u: m @ v, repeats)
        res["bare_numpy_top10"] = _timeit(
            lambda m=matrix, v=u: np.argpartition(-(m @ v), 10)[:10], repeats // 2
        )
        if cls is BayesGRUModel:
            rng = np.random.default_rng(0)
            res["sample_scores_10x10000"] = _timeit(
                lambda m=model, s=state, g=rng: m.sample_scores(s, None, 10, g), repeats // 5
            )
        out[cls.kind] = res
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Run both benchmarks; `quick` uses fewer events/repeats (numbers are still measured)."""
    # 40k events even when quick: with fewer, most users' histories are still shorter than
    # the training window, steps are cheaper and events/s reads ~3x too high
    n_events = 40_000
    repeats = 200 if quick else 2000
    machine: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "loadavg_1m_before": round(os.getloadavg()[0], 2),
    }
    model_cfg = worker_model_config()
    default_cfg = worker_trainer_cfg()
    step128 = dataclasses.replace(default_cfg, step_every_events=128)
    big_steps = dataclasses.replace(default_cfg, step_every_events=1024, batch_users=256)
    out: dict[str, Any] = {
        "machine": machine,
        "quick": quick,
        "model": dataclasses.asdict(model_cfg),
        "training_default": bench_training(n_events, default_cfg, model_cfg),
        "training_step128": bench_training(n_events, step128, model_cfg),
        "training_big_steps": bench_training(n_events, big_steps, model_cfg),
        "bare_torch_default": bench_bare_training(n_events, default_cfg, model_cfg),
        "bare_torch_step128": bench_bare_training(n_events, step128, model_cfg),
        "scoring": bench_scoring(repeats),
    }
    machine["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    return out


def main() -> None:
    """CLI entry: print the measurements as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(run(quick=args.quick), indent=1))


if __name__ == "__main__":
    main()
