"""River online models learned per event: a CTR logistic regression and an FM (biased MF).

Both learn one event at a time with River (``learn_one``); positives are fresh
interactions and clicks, negatives are shown-but-not-clicked slate items plus uniformly
sampled items. Scoring reads the learned weights into numpy so a whole catalogue is ranked
in one vectorised pass (usable as a re-ranker and as a baseline). Snapshots store the
weights as arrays + JSON -- no pickle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from river import facto, linear_model, optim

from models.base import OnlineModel, TrainingBatch
from models.items import ItemIndex

RiverState = tuple[str | None, str | None]
"""(user_id, category path of the user's last item)."""


class _RiverBase(OnlineModel):
    """Shared event loop: positives + sampled negatives, one `learn_one` each."""

    def __init__(self, n_negatives: int = 2, seed: int = 0, items: ItemIndex | None = None) -> None:
        super().__init__(items)
        if n_negatives < 0:
            raise ValueError("n_negatives must be >= 0")
        self.n_negatives = n_negatives
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._cache: dict[str, Any] = {}

    def _learn(self, batch: TrainingBatch) -> float:
        users: list[str | None] = [None] * len(batch.sequences)
        if batch.users is not None:
            users = list(batch.users)
        active = self.all_rows()
        loss = 0.0
        n = 0
        for seq, start, user in zip(batch.sequences, batch.starts, users, strict=True):
            for p in range(max(0, start), len(seq)):
                prev = int(seq[p - 1]) if p > 0 else 0
                loss += self._pair(user, prev, int(seq[p]), True)
                n += 1
                if active.size:
                    for neg in self._rng.choice(active, size=self.n_negatives):
                        if int(neg) != int(seq[p]):
                            self._pair(user, prev, int(neg), False)
        for hist, slate, clicked in batch.feedback:
            prev = int(hist[-1]) if len(hist) else 0
            for pos, row in enumerate(slate):
                loss += self._pair(None, prev, int(row), pos in clicked)
                n += 1
        self._cache.clear()
        return loss / max(n, 1)

    def _pair(self, user: str | None, prev_row: int, row: int, label: bool) -> float:
        raise NotImplementedError

    def _cat(self, row: int) -> str | None:
        item = self.items.item_id(row) if row else None
        return self.items.category(item) if item is not None else None

    def user_state(self, item_seq: Sequence[str], user_id: str | None = None) -> RiverState:
        """(user id, category of the last item) -- all these models condition on."""
        last = next((i for i in reversed(item_seq) if i in self.items), None)
        return (user_id, self.items.category(last) if last is not None else None)


class RiverLogRegModel(_RiverBase):
    """CTR logistic regression over item, category prefixes, user x category and
    last-category x category crosses (River ``LogisticRegression``, SGD)."""

    kind: ClassVar[str] = "river-lr"

    def __init__(
        self,
        lr: float = 0.05,
        l2: float = 0.0,
        n_negatives: int = 2,
        seed: int = 0,
        items: ItemIndex | None = None,
    ) -> None:
        super().__init__(n_negatives, seed, items)
        self.lr, self.l2 = lr, l2
        self.model = linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2)

    def _features(self, user: str | None, prev_cat: str | None, row: int) -> dict[str, float]:
        item = self.items.item_id(row)
        cat = self.items.category(item) if item is not None else None
        x = {f"item={item}": 1.0}
        for pre in self.items.categories.prefixes(cat) if cat else []:
            x[f"cat={pre}"] = 1.0
            if user is not None:
                x[f"u={user}|cat={pre}"] = 1.0
            if prev_cat:
                x[f"prev={prev_cat}|cat={pre}"] = 1.0
        return x

    def _pair(self, user: str | None, prev_row: int, row: int, label: bool) -> float:
        x = self._features(user, self._cat(prev_row), row)
        p = self.model.predict_proba_one(x).get(True, 0.5)
        self.model.learn_one(x, label)
        return float(-np.log(max(p if label else 1 - p, 1e-12)))

    def _score(self, user_state: Any, rows: np.ndarray) -> np.ndarray:
        user, prev_cat = user_state if user_state else (None, None)
        w = self.model._weights
        out = np.full(rows.size, self.model.intercept, np.float64)
        for j, row in enumerate(rows):
            if row == 0:
                continue
            item = self.items.item_id(int(row))
            cat = self.items.category(item) if item is not None else None
            s = w.get(f"item={item}", 0.0)
            for pre in self.items.categories.prefixes(cat) if cat else []:
                s += w.get(f"cat={pre}", 0.0)
                if user is not None:
                    s += w.get(f"u={user}|cat={pre}", 0.0)
                if prev_cat:
                    s += w.get(f"prev={prev_cat}|cat={pre}", 0.0)
            out[j] += s
        return out

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        keys = list(self.model._weights.keys())
        meta = self._base_meta()
        meta["config"] = {"lr": self.lr, "l2": self.l2, "n_negatives": self.n_negatives}
        meta["config"]["seed"] = self.seed
        meta["weight_keys"] = keys
        meta["intercept"] = float(self.model.intercept)
        vals = np.asarray([self.model._weights[k] for k in keys], np.float64)
        return {"weights": vals}, meta

    @classmethod
    def from_state(
        cls, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]
    ) -> RiverLogRegModel:
        model = cls(items=ItemIndex.from_json(meta["items"]), **meta["config"])
        for k, v in zip(meta["weight_keys"], tensors["weights"], strict=True):
            model.model._weights[k] = float(v)
        model.model.intercept = float(meta["intercept"])
        model._restore_base(meta)
        return model


class RiverFMModel(_RiverBase):
    """Biased matrix factorisation as a River ``FMClassifier`` over {user, item} one-hots."""

    kind: ClassVar[str] = "river-mf"

    def __init__(
        self,
        n_factors: int = 16,
        lr: float = 0.05,
        n_negatives: int = 2,
        seed: int = 0,
        items: ItemIndex | None = None,
    ) -> None:
        super().__init__(n_negatives, seed, items)
        self.n_factors, self.lr = n_factors, lr
        self.model = facto.FMClassifier(
            n_factors=n_factors,
            weight_optimizer=optim.SGD(lr),
            latent_optimizer=optim.SGD(lr),
            l2_weight=1e-4,
            l2_latent=1e-4,
            seed=seed,
        )

    def _pair(self, user: str | None, prev_row: int, row: int, label: bool) -> float:
        x: dict[str, Any] = {"i": self.items.item_id(row)}
        if user is not None:
            x["u"] = user
        p = self.model.predict_proba_one(x).get(True, 0.5)
        self.model.learn_one(x, label)
        return float(-np.log(max(p if label else 1 - p, 1e-12)))

    def _item_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if "bias" not in self._cache:
            n = self.items.n_rows
            bias = np.zeros(n)
            lat = np.zeros((n, self.n_factors))
            weights, latents = self.model.weights, self.model.latents
            for row in range(1, n):
                key = f"i_{self.items.item_id(row)}"
                if key in latents:
                    lat[row] = latents[key]
                bias[row] = weights.get(key, 0.0)
            self._cache["bias"], self._cache["lat"] = bias, lat
        return self._cache["bias"], self._cache["lat"]

    def _score(self, user_state: Any, rows: np.ndarray) -> np.ndarray:
        user = user_state[0] if user_state else None
        bias, lat = self._item_arrays()
        rows = np.clip(rows, 0, bias.size - 1)
        out = self.model.intercept + bias[rows]
        key = f"u_{user}"
        if user is not None and key in self.model.latents:
            out = out + self.model.weights.get(key, 0.0) + lat[rows] @ self.model.latents[key]
        return np.asarray(out, np.float64)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        keys = list(self.model.latents.keys())
        wkeys = list(self.model.weights.keys())
        meta = self._base_meta()
        meta["config"] = {"n_factors": self.n_factors, "lr": self.lr}
        meta["config"].update({"n_negatives": self.n_negatives, "seed": self.seed})
        meta.update({"latent_keys": keys, "weight_keys": wkeys})
        meta["intercept"] = float(self.model.intercept)
        lat = np.asarray([self.model.latents[k] for k in keys]).reshape(len(keys), self.n_factors)
        w = np.asarray([self.model.weights[k] for k in wkeys], np.float64)
        return {"latents": lat, "weights": w}, meta

    @classmethod
    def from_state(cls, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> RiverFMModel:
        model = cls(items=ItemIndex.from_json(meta["items"]), **meta["config"])
        for k, v in zip(meta["latent_keys"], tensors["latents"], strict=True):
            model.model.latents[k] = np.array(v)
        for k, v in zip(meta["weight_keys"], tensors["weights"], strict=True):
            model.model.weights[k] = float(v)
        model.model.intercept = float(meta["intercept"])
        model._restore_base(meta)
        return model
