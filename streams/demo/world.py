"""The demo's world: MovieLens-100k users who request slates and click by their tastes.

Ratings define each user's true (held-out) preferences through the semi-synthetic
`bandits.simulators.MovieLensSimulator`; the pipeline only ever sees the catalogue, an
early slice of the rating history (warm-up interactions) and the clicks on its slates.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bandits.simulators import MovieLensSimulator
from bandits.simulators import Request as SimRequest
from models.datasets import InteractionData, load_movielens_100k
from streams import schemas


@dataclass
class World:
    """Simulated users + the events that describe the catalogue and early history."""

    data: InteractionData
    sim: MovieLensSimulator
    item_ids: list[str]  # simulator index -> catalogue item id
    user_ids: list[str]
    warmup_fraction: float

    @classmethod
    def movielens(
        cls,
        horizon: int,
        warmup_fraction: float = 0.5,
        seed: int = 0,
        data: InteractionData | None = None,
    ) -> World:
        """Build the world from MovieLens-100k (offline, from the cached recbole wheel)."""
        data = data or load_movielens_100k()
        uniq_users, u_idx = np.unique(data.users, return_inverse=True)
        uniq_items, i_idx = np.unique(data.items, return_inverse=True)
        genres = sorted({data.item_categories.get(str(i), "movies/unknown") for i in uniq_items})
        g_index = {g: j for j, g in enumerate(genres)}
        cats = np.array(
            [g_index[data.item_categories.get(str(i), "movies/unknown")] for i in uniq_items]
        )
        sim = MovieLensSimulator(
            u_idx,
            i_idx,
            data.ratings,
            data.timestamps,
            cats,
            horizon=horizon,
            n_candidates=200,
            seed=seed,
        )
        return cls(
            data=data,
            sim=sim,
            item_ids=[f"movie-{i}" for i in range(len(uniq_items))],
            user_ids=[f"user-{u}" for u in range(len(uniq_users))],
            warmup_fraction=warmup_fraction,
        )

    def category(self, item_id: str) -> str:
        """Category path of a catalogue item."""
        idx = int(item_id.rsplit("-", 1)[1])
        return self._cat_names[idx]

    @property
    def _cat_names(self) -> list[str]:
        if not hasattr(self, "_cats_cache"):
            uniq_items = np.unique(self.data.items)
            self._cats_cache = [
                self.data.item_categories.get(str(i), "movies/unknown") for i in uniq_items
            ]
        return self._cats_cache

    def catalogue_events(self, now_ms: int) -> Iterator[schemas.Item]:
        """One item event per movie (category path = movies/<first genre>)."""
        uniq_items = np.unique(self.data.items)
        for idx, raw in enumerate(uniq_items):
            title = self.data.item_titles.get(str(raw))
            yield schemas.Item(
                event_id=f"item-{idx}",
                ts=now_ms,
                item_id=self.item_ids[idx],
                category_path=self._cat_names[idx].split("/"),
                text=title,
            )

    def warmup_events(self, now_ms: int) -> Iterator[schemas.Interaction]:
        """The first `warmup_fraction` of ratings (time order) as `rating` interactions,
        re-timed so the newest of them happened just now."""
        order = self.data.time_order()
        n = int(len(order) * self.warmup_fraction)
        if n == 0:
            return
        _uniq_users, u_idx = np.unique(self.data.users, return_inverse=True)
        _uniq_items, i_idx = np.unique(self.data.items, return_inverse=True)
        last = int(self.data.timestamps[order[n - 1]])
        for j in order[:n]:
            ts = now_ms - (last - int(self.data.timestamps[j]))  # seconds become ms: 1000x faster
            yield schemas.Interaction(
                event_id=f"warm-{j}",
                ts=max(ts, schemas.MIN_TS_MS + 1),
                user_id=self.user_ids[u_idx[j]],
                item_id=self.item_ids[i_idx[j]],
                type="rating",
                value=float(self.data.ratings[j]),
            )

    def next_request(self) -> SimRequest:
        """The next simulated user who asks for a slate (the rating stream's users in time
        order, `horizon` requests per pass, then again from the start)."""
        if self.sim.step >= self.sim.horizon:
            self.sim.step = 0
        return self.sim.next_request()

    def clicks(self, req: SimRequest, slate: list[str]) -> list[int]:
        """Positions the simulated user clicks on a served slate (position-based model)."""
        known = [i for i in slate if i in self.sim._index]
        if not known:
            return []
        fb = self.sim.respond(req, known)
        clicked = {known[p] for p in fb.clicks}
        return [p for p, item in enumerate(slate) if item in clicked]

    def expected_clicks(self, req: SimRequest, slate: list[str]) -> float:
        """Expected clicks of a slate under the user's true tastes."""
        known = [i for i in slate if i in self.sim._index]
        return self.sim.expected_clicks(req, known) if known else 0.0

    def now_ms(self) -> int:
        """Wall-clock event time."""
        return int(time.time() * 1000)
