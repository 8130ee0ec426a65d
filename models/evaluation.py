"""Offline (`loo`) and prequential evaluation of the models on interaction data.

`loo` follows RecBole's sequential quick start: per user, interactions in time order;
last item = test, second-to-last = validation, the rest train; inputs are the last 50
items; every item is ranked (already-seen items are NOT excluded unless
``exclude_seen``); early stopping on validation MRR@10. `prequential` walks the whole
stream in time order and ranks every item for each event before learning from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.base import OnlineModel, TrainingBatch
from models.baselines import PopularityModel
from models.datasets import InteractionData
from models.gru import BayesGRUModel, GRUConfig, GRUModel
from models.metrics import summarize, target_ranks
from models.online_trainer import OnlineTrainer, TrainerConfig
from models.river_models import RiverFMModel, RiverLogRegModel

MODEL_NAMES = ("gru", "bayes-gru", "pop", "river-mf", "river-lr")
Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


def make_model(name: str, seed: int = 0, **overrides: Any) -> OnlineModel:
    """A fresh model by CLI name (`MODEL_NAMES`); overrides go to the GRU config."""
    if name in ("gru", "bayes-gru"):
        cfg = GRUConfig(seed=seed, **overrides)
        return GRUModel(cfg) if name == "gru" else BayesGRUModel(cfg)
    if name == "pop":
        return PopularityModel()
    if name == "river-mf":
        return RiverFMModel(seed=seed)
    if name == "river-lr":
        return RiverLogRegModel(seed=seed)
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")


@dataclass
class LooSplit:
    """Leave-one-out split in item-id form."""

    users: list[str]
    train: list[list[str]]  # per user, time-ordered training items
    valid: list[str]
    test: list[str]
    train_events: list[tuple[int, str, str]]  # (ts, user, item) of the train part, time order


def loo_split(data: InteractionData) -> LooSplit:
    """Per user: last item test, second-to-last validation, the rest train (users with < 3
    interactions keep everything in train and are not evaluated)."""
    seqs = data.user_sequences()
    users, train, valid, test = [], [], [], []
    events: list[tuple[int, int, str, str]] = []
    order = 0
    for user, seq in seqs.items():
        items = [i for i, _ in seq]
        cut = len(items) - 2 if len(items) >= 3 else len(items)
        for item, ts in seq[:cut]:
            events.append((ts, order, user, item))
            order += 1
        if len(items) < 3:
            continue
        users.append(user)
        train.append(items[:-2])
        valid.append(items[-2])
        test.append(items[-1])
    # global time order, ties kept in per-user order (stable by original position)
    pos = {id(e): k for k, e in enumerate(events)}
    events.sort(key=lambda e: (e[0], pos[id(e)]))
    return LooSplit(users, train, valid, test, [(t, u, i) for t, _, u, i in events])


def _all_item_rows(model: OnlineModel, data: InteractionData) -> None:
    for item in data.all_items():
        model.admit(item, data.item_categories.get(item))


def evaluate_targets(
    model: OnlineModel,
    users: Sequence[str],
    inputs: Sequence[Sequence[str]],
    targets: Sequence[str],
    exclude_seen: bool = False,
    batch: int = 256,
) -> np.ndarray:
    """0-based ranks of each target among all known items given the input sequences."""
    rows = model.all_rows()
    col = {int(r): j for j, r in enumerate(rows)}
    ranks = np.zeros(len(targets), np.int64)
    for s in range(0, len(targets), batch):
        e = min(len(targets), s + batch)
        if isinstance(model, GRUModel):
            states = model.user_states_rows([model.user_rows(x) for x in inputs[s:e]])
            scores = model.score_batch(states, rows).astype(np.float64)
        else:
            scores = np.stack(
                [model.score(model.user_state(inputs[i], users[i]), rows) for i in range(s, e)]
            ).astype(np.float64)
        tcol = np.asarray([col[int(model.items.rows([t])[0])] for t in targets[s:e]])
        if exclude_seen:
            for j, i in enumerate(range(s, e)):
                seen = [col[int(r)] for r in model.items.rows(inputs[i]) if int(r) in col]
                seen_cols = np.asarray([c for c in seen if c != tcol[j]], np.int64)
                scores[j, seen_cols] = -np.inf
        ranks[s:e] = target_ranks(scores, tcol)
    return ranks


def _windows(seqs: Sequence[np.ndarray], max_len: int, stride: int) -> list[tuple[np.ndarray, int]]:
    """Cut each sequence into windows of <= max_len+1 rows; every target is trained once,
    with at least max_len - stride items of context after the first window."""
    out = []
    for s in seqs:
        n = len(s)
        covered = 1
        while covered < n:
            end = min(n, max_len + 1) if covered == 1 else min(n, covered + stride)
            start = max(0, end - (max_len + 1))
            out.append((s[start:end], covered - start))
            covered = end
    return out


def run_loo(
    model_name: str,
    data: InteractionData,
    seed: int = 0,
    epochs: int = 100,
    patience: int = 10,
    one_pass: bool = False,
    exclude_seen: bool = False,
    batch_size: int = 64,
    log: Log = _quiet,
    **overrides: Any,
) -> dict[str, Any]:
    """Leave-one-out evaluation; returns metrics, timings and the protocol settings."""
    t0 = time.perf_counter()
    np.random.seed(seed)
    split = loo_split(data)
    model_kw = {k: v for k, v in overrides.items() if not k.startswith("trainer_")}
    model = make_model(model_name, seed, **model_kw)
    if isinstance(model, BayesGRUModel) and model.config.kl_n is None:
        model.config.kl_n = sum(max(0, len(t) - 1) for t in split.train)
    _all_item_rows(model, data)
    valid_in = [t[-50:] for t in split.train]
    test_in = [[*t, v][-50:] for t, v in zip(split.train, split.valid, strict=True)]
    info: dict[str, Any] = {}

    def val_metrics() -> dict[str, float]:
        return summarize(evaluate_targets(model, split.users, valid_in, split.valid, exclude_seen))

    if isinstance(model, GRUModel) and not one_pass:
        rng = np.random.default_rng(seed)
        train_rows = [model.items.rows(t) for t in split.train]
        wins = _windows(train_rows, model.config.max_len, stride=25)
        best, best_state, best_epoch, bad = -1.0, None, 0, 0
        history = []
        for epoch in range(1, epochs + 1):
            te = time.perf_counter()
            order = rng.permutation(len(wins))
            losses = []
            for b in range(0, len(order), batch_size):
                sel = [wins[int(i)] for i in order[b : b + batch_size]]
                tb = TrainingBatch(sequences=[w for w, _ in sel], starts=[s for _, s in sel])
                losses.append(model.learn(tb))
            vm = val_metrics()
            history.append({"epoch": epoch, "loss": round(float(np.mean(losses)), 4), **vm})
            log(
                f"epoch {epoch} loss {np.mean(losses):.4f} valid {vm} "
                f"{time.perf_counter() - te:.1f}s"
            )
            if vm["mrr@10"] > best:
                best, best_epoch, bad = vm["mrr@10"], epoch, 0
                best_state = model.state()
            else:
                bad += 1
                if bad >= patience:
                    break
        assert best_state is not None
        model = type(model).from_state(*best_state)
        info = {"epochs_run": len(history), "best_epoch": best_epoch, "history": history}
    elif isinstance(model, GRUModel):
        trainer = OnlineTrainer(
            model, TrainerConfig(step_every_ms=1e12, seed=seed, **_tc(overrides))
        )
        for ts, user, item in split.train_events:
            trainer.on_interaction(user, item, "rating", ts)
        trainer.flush()
        info = {"updates": trainer.updates, "trainer": trainer.config.__dict__}
    else:
        for ts, user, item in split.train_events:
            row = model.items.rows([item])
            model.learn(TrainingBatch([row], starts=[0], users=[user]))
            model.last_event_ts = ts
    train_s = time.perf_counter() - t0
    vm = val_metrics()
    test_ranks = evaluate_targets(model, split.users, test_in, split.test, exclude_seen)
    return {
        "dataset": data.name,
        "protocol": "loo",
        "model": model_name,
        "one_pass": one_pass,
        "seed": seed,
        "exclude_seen": exclude_seen,
        "n_users": len(split.users),
        "n_items": len(model.items),
        "valid": vm,
        "test": summarize(test_ranks),
        "train_seconds": round(train_s, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        **info,
    }


def _tc(overrides: dict[str, Any]) -> dict[str, Any]:
    keys = {"step_every_events", "batch_users", "max_len", "train_len", "targets_per_user"}
    return {k[8:]: v for k, v in overrides.items() if k.startswith("trainer_") and k[8:] in keys}


def run_prequential(
    model_name: str,
    data: InteractionData,
    seed: int = 0,
    bucket: int = 5000,
    chunk: int | None = None,
    max_events: int | None = None,
    log: Log = _quiet,
    **overrides: Any,
) -> dict[str, Any]:
    """Test-then-train over the time-ordered stream; HR/NDCG/MRR@10 overall and per bucket.

    Parameters change only at trainer steps (every `chunk` events, by default the trainer's
    `step_every_events`), so ranking a chunk's
    events with the parameters from its start is exactly test-then-train; histories
    include every earlier event.
    """
    t0 = time.perf_counter()
    tc = _tc(overrides)
    chunk = int(chunk or tc.get("step_every_events", TrainerConfig().step_every_events))
    tc["step_every_events"] = chunk
    torch_overrides = {k: v for k, v in overrides.items() if not k.startswith("trainer_")}
    model = make_model(model_name, seed, **torch_overrides)
    _all_item_rows(model, data)
    order = data.time_order()
    if max_events is not None:
        order = order[:max_events]
    users = [str(u) for u in data.users[order]]
    items = [str(i) for i in data.items[order]]
    stamps = data.timestamps[order]
    rows_all = model.all_rows()
    col = {int(r): j for j, r in enumerate(rows_all)}
    hist: dict[str, list[int]] = {}
    ranks = np.zeros(len(order), np.int64)
    trainer = None
    if isinstance(model, GRUModel):
        cfg = TrainerConfig(step_every_ms=1e12, seed=seed, **tc)
        trainer = OnlineTrainer(model, cfg)
    for s in range(0, len(order), chunk):
        e = min(len(order), s + chunk)
        if isinstance(model, PopularityModel):
            for i in range(s, e):
                counts = model.counts[rows_all]
                c = counts[col[model.items.rows([items[i]])[0]]]
                ranks[i] = int((counts > c).sum() + (counts == c).sum() - 1)
                model.add(int(model.items.rows([items[i]])[0]))
            continue
        if isinstance(model, GRUModel):
            states = model.user_states_rows(
                [np.asarray(hist.get(users[i], [])[-50:], np.int64) for i in range(s, e)]
            )
            scores = model.score_batch(states, rows_all)
        else:
            scores = np.stack(
                [
                    model.score(
                        model.user_state(_ids(model, hist.get(users[i], [])), users[i]), rows_all
                    )
                    for i in range(s, e)
                ]
            )
        tcol = np.asarray([col[int(model.items.rows([items[i]])[0])] for i in range(s, e)])
        ranks[s:e] = target_ranks(scores.astype(np.float64), tcol)
        for i in range(s, e):
            row = int(model.items.rows([items[i]])[0])
            if trainer is not None:
                trainer.on_interaction(users[i], items[i], "rating", int(stamps[i]))
            else:
                prev = hist.get(users[i], [])[-1:]
                seq = np.asarray([*prev, row], np.int64)
                model.learn(TrainingBatch([seq], starts=[len(prev)], users=[users[i]]))
            hist.setdefault(users[i], []).append(row)
        if s // chunk % 200 == 0:
            log(f"{e} events, hit@10 so far {float((ranks[:e] < 10).mean()):.4f}")
    series = []
    for b in range(0, len(ranks), bucket):
        r = ranks[b : b + bucket]
        series.append({"events": int(min(len(ranks), b + bucket)), **summarize(r)})
    return {
        "dataset": data.name,
        "protocol": "prequential",
        "model": model_name,
        "seed": seed,
        "n_events": len(ranks),
        "chunk": chunk,
        "overall": summarize(ranks),
        "series": series,
        "total_seconds": round(time.perf_counter() - t0, 1),
    }


def _ids(model: OnlineModel, rows: Sequence[int]) -> list[str]:
    return [i for i in model.items.ids(list(rows)[-1:]) if i is not None]


def plot_prequential(results: Sequence[dict[str, Any]], path: str, metric: str = "hit@10") -> None:
    """Line plot of `metric` per bucket for several prequential results (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for res in results:
        xs = [p["events"] for p in res["series"]]
        ys = [p[metric] for p in res["series"]]
        label = f"{res['model']} (overall {res['overall'][metric]:.3f})"
        ax.plot(xs, ys, marker="o", markersize=3, label=label)
    ax.set_xlabel("events seen (time order)")
    ax.set_ylabel(f"{metric.upper()} per bucket")
    ax.set_title(f"Prequential {metric.upper()} on {results[0]['dataset']} (test-then-train)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
