"""Scorer service: a request becomes candidates, a slate from a policy, and a recommendation.

Pure logic (no Kafka): reads the user's features through `ScorerFeatures`, the newest
model snapshot through a `SnapshotWatcher`, gathers candidates (model top-N, popular now,
fresh items; minus exclusions), and asks the slate policy of the user's A/B arm for a
slate with per-position propensities. Shadow policies rank every request without serving;
their agreement with the served slate feeds an off-policy (per-position IPS) CTR estimate.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Protocol

import numpy as np

from bandits.base import CandidateSet, Slate, SlatePolicy
from bandits.base import Feedback as PolicyFeedback
from bandits.posteriors import BetaBernoulliPosterior
from features.base import StoreUnavailable
from models.base import OnlineModel, SequentialModel
from models.registry import SnapshotWatcher
from streams.config import POLICY_NAMES
from streams.malloc_tuning import keep_large_blocks
from streams.runtime import SeenIds
from streams.schemas import Feedback, Recommendation, Request, derived_id
from streams.threads import limit_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserView:
    """What the scorer needs of one user: recent items (oldest first) and category affinities."""

    user_id: str
    recent: list[str] = field(default_factory=list)
    affinity: dict[str, float] = field(default_factory=dict)


class ScorerFeatures(Protocol):
    """The reads the scorer makes of the feature store (batched per request batch). A read
    that cannot reach the store raises `features.StoreUnavailable`: the scorer then serves
    without it (see `ScorerService`)."""

    async def user_views(self, user_ids: Sequence[str]) -> dict[str, UserView]:
        """Recent items and affinities for each user (empty view for unknown users)."""
        ...

    async def popular(self, n: int) -> list[tuple[str, float]]:
        """The n most popular items now (decayed popularity), best first."""
        ...

    async def fresh(self, n: int) -> list[str]:
        """The n newest catalogue items, newest first."""
        ...

    async def categories(self, item_ids: Sequence[str]) -> dict[str, str]:
        """Category path ('a/b') of each known item."""
        ...

    async def retired(self, since_ms: int = 0) -> dict[str, int]:
        """Items retired now -> when (epoch ms, the store's clock), those at `since_ms` or later."""
        ...

    async def restored(self, since_ms: int = 0) -> dict[str, int]:
        """Items brought back since their retirement -> when (epoch ms, the store's clock)."""
        ...


@dataclass
class ScorerConfig:
    """Knobs of candidate generation, blending and the policy experiment."""

    candidates_model: int = 100
    candidates_popular: int = 30
    candidates_fresh: int = 10
    exclude_interacted: bool = True
    exclude_shown_slates: int = 1
    model_weight: float = 1.0
    ctr_weight: float = 10.0
    affinity_weight: float = 2.0
    popularity_weight: float = 0.5
    arms: dict[str, float] = field(default_factory=lambda: {"in-slate-ts": 1.0})
    shadows: tuple[str, ...] = ()
    propensity_draws: int = 16
    # item-CTR draws from Beta(a / T, b / T): the posterior mean, ~T x its variance
    ts_temperature: float = 1.0
    reload_interval_s: float = 1.0
    category_ttl_s: float = 30.0
    # popular-now and fresh lists are shared by every request: re-read at most this often
    # (with the items retired since the last read: a retired item is never served later)
    lists_ttl_s: float = 0.25
    # every retired item re-read this often (a safety net: items brought back are read with
    # the shared lists, `FeatureStore.restored`)
    retired_reload_s: float = 30.0
    reuse_user_states: bool = True  # keep a user's GRU state until their sequence changes
    reload_in_background: bool = True
    max_users_tracked: int = 100_000
    seed: int = 0

    def validate(self) -> None:
        """Raise ValueError on an invalid setting."""
        if min(self.candidates_model, self.candidates_popular, self.candidates_fresh) < 0:
            raise ValueError("candidate counts must be >= 0")
        if not self.arms or any(w < 0 for w in self.arms.values()) or sum(self.arms.values()) <= 0:
            raise ValueError("arms need non-negative weights with a positive sum")
        for name in [*self.arms, *self.shadows]:
            if name not in POLICY_NAMES:
                raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")
        if self.propensity_draws < 1:
            raise ValueError("propensity_draws must be >= 1")
        if not 0.0 < self.ts_temperature <= 10.0:
            raise ValueError("ts_temperature must be in (0, 10]")
        if min(self.lists_ttl_s, self.category_ttl_s, self.retired_reload_s) < 0:
            raise ValueError("lists_ttl_s, category_ttl_s and retired_reload_s must be >= 0")


class BlendedPosterior:
    """Posterior over candidate scores: model draws (standardised) + item CTR Thompson draws
    (Beta-Bernoulli, learned from feedback) + a fixed boost (affinity, popularity).

    Request-specific parts (model, user state, boost, standardisation) come in `context`.
    Without a model snapshot the CTR posterior and the boost rank alone: popularity with TS.
    """

    def __init__(self, ctr: BetaBernoulliPosterior, model_weight: float, ctr_weight: float):
        self.ctr = ctr
        self.model_weight = model_weight
        self.ctr_weight = ctr_weight

    def _model_part(self, ctx: Mapping[str, Any]) -> tuple[OnlineModel | None, Any, float, float]:
        return ctx.get("model"), ctx.get("user_state"), ctx.get("mu", 0.0), ctx.get("sd", 1.0)

    def sample_scores(
        self,
        candidates: Sequence[str],
        n_samples: int,
        rng: np.random.Generator,
        context: Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        """(n_samples, n) blended posterior draws."""
        return self.sample_scores_many([(candidates, context)], n_samples, rng)[0]

    def sample_scores_many(
        self,
        asks: Sequence[CandidateSet],
        n_samples: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """(len(asks), n_samples, longest list) blended draws of a batch of requests, -inf
        past the end of each list: one CTR draw over all their candidates, one model draw
        for all their users (the scorer's contexts share one model snapshot)."""
        ctxs = [ctx or {} for _, ctx in asks]
        lens = [len(c) for c, _ in asks]
        width = max(lens)
        # where each (ask, slot) is in the concatenated candidates; past the end: slot 0
        starts = np.cumsum([0, *lens[:-1]])
        past_end = np.arange(width)[None, :] >= np.asarray(lens)[:, None]
        flat_at = np.where(past_end, 0, starts[:, None] + np.arange(width)[None, :])
        flat = [i for c, _ in asks for i in c]
        ctr = self.ctr.sample_scores(flat, n_samples, rng, None)  # (S, total)
        out = self.ctr_weight * ctr[:, flat_at].transpose(1, 0, 2)  # (asks, S, width)
        model = ctxs[0].get("model")
        if any(ctx.get("model") is not model for ctx in ctxs[1:]):
            raise ValueError("a batch of asks must share one model (or none)")
        if model is not None and self.model_weight:
            draws = model.sample_scores_many(
                [ctx.get("user_state") for ctx in ctxs],
                [ctx.get("rows", list(c)) for (c, _), ctx in zip(asks, ctxs, strict=True)],
                n_samples,
                rng,
            )
            mu = np.asarray([ctx.get("mu", 0.0) for ctx in ctxs])[:, None, None]
            sd = np.asarray([ctx.get("sd", 1.0) for ctx in ctxs])[:, None, None]
            out += self.model_weight * _standardise(draws, mu, sd)
        if any(ctx.get("boost") is not None for ctx in ctxs):
            boosts = [
                np.zeros(n) if ctx.get("boost") is None else ctx["boost"]
                for ctx, n in zip(ctxs, lens, strict=True)
            ]
            out += np.concatenate(boosts)[flat_at][:, None, :]
        out[np.broadcast_to(past_end[:, None, :], out.shape)] = -np.inf
        return out

    def mean_scores(
        self, candidates: Sequence[str], context: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        """Posterior-mean blended scores."""
        ctx = context or {}
        out = self.ctr_weight * np.asarray(self.ctr.mean_scores(candidates, ctx), dtype=float)
        model, state, mu, sd = self._model_part(ctx)
        if model is not None and self.model_weight:
            z = ctx.get("model_z")  # the scorer's context carries the standardised means
            if z is None:
                z = _standardise(model.score(state, ctx.get("rows", list(candidates))), mu, sd)
            out = out + self.model_weight * z
        boost = ctx.get("boost")
        if boost is not None:
            out = out + boost
        return out

    def update(self, feedback: PolicyFeedback) -> None:
        """Condition the CTR part on a served slate's clicks."""
        self.ctr.update(feedback)


def make_policy(name: str, posterior: BlendedPosterior, draws: int, seed: int) -> SlatePolicy:
    """A named slate policy (`bandits.make_policy`) over the shared blended posterior; the
    scorer updates that posterior itself, once per feedback record, for every policy."""
    from bandits import make_policy as bandit_policy

    if name == "random":
        return bandit_policy(name, seed=seed)
    kw: dict[str, Any] = {"posterior": posterior, "update_posterior": False, "seed": seed}
    if name in ("ts", "in-slate-ts"):
        kw["propensity_draws"] = draws
    # in-slate TS keeps its default propensity pool of k extra draws (the served slate's k
    # draws + k): the least biased setting in bench_bandits' propensity check, and 20 instead
    # of 42 posterior draws per k=10 request
    return bandit_policy(name, **kw)


def arm_for(user_id: str, arms: Mapping[str, float]) -> str:
    """A/B arm of a user: a stable hash of user_id mapped onto the cumulative arm weights."""
    h = int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big")
    u = h / 2**64 * sum(arms.values())
    acc = 0.0
    for name, w in arms.items():
        acc += w
        if u < acc:
            return name
    return next(reversed(list(arms)))


@dataclass
class ShadowStats:
    """Per-position IPS estimate of a shadow policy's CTR from served slates and their clicks."""

    slates: int = 0
    weighted_clicks: float = 0.0

    @property
    def ctr(self) -> float:
        """Estimated clicks per slate had the shadow policy served."""
        return self.weighted_clicks / self.slates if self.slates else 0.0


@dataclass
class Served:
    """What the scorer produced for one request (the recommendation and its bookkeeping)."""

    recommendation: Recommendation
    arm: str
    n_candidates: int
    shadows: dict[str, list[str]] = field(default_factory=dict)
    request_ts: int = 0
    explored: int = 0  # served positions that differ from the greedy (posterior-mean) ranking


# a user's model scores of all items (rows ascending, scores) and the model's top-N item ids
_ModelTop = tuple[tuple[np.ndarray, np.ndarray], list[str]]


@dataclass
class _Ask:
    """A request being answered: its candidates, arm and posterior context, then its slate
    and the shadow policies' slates once ranked."""

    req: Request
    cands: tuple[str, ...]
    arm: str
    ctx: dict[str, Any]
    slate: Slate | None = None
    shadows: dict[str, list[str]] = field(default_factory=dict)


class ScorerService:
    """Answers requests with slates; learns item CTRs from feedback; hot-reloads the model.

    A feature-store outage does not stop it: without the users' features a batch is served
    as for new users, without fresh lists the last ones read are kept, and items whose
    category could not be read count as uncategorised (`pop_store_failures` counts them)."""

    def __init__(
        self,
        features: ScorerFeatures,
        watcher: SnapshotWatcher | None = None,
        config: ScorerConfig | None = None,
        clock: Any = time.time,
    ) -> None:
        self.features = features
        self.watcher = watcher
        self.config = config or ScorerConfig()
        self.config.validate()
        self.clock = clock
        limit_threads()
        keep_large_blocks()  # its batches' numpy temporaries: ~15% less CPU per request
        cfg = self.config
        self.posterior = BlendedPosterior(
            BetaBernoulliPosterior(temperature=cfg.ts_temperature),
            cfg.model_weight,
            cfg.ctr_weight,
        )
        names = list(dict.fromkeys([*cfg.arms, *cfg.shadows]))
        self.policies = {
            n: make_policy(n, self.posterior, cfg.propensity_draws, cfg.seed + i)
            for i, n in enumerate(names)
        }
        # SFC64: ~30% faster normal draws than the default PCG64 on this project's CPUs
        self.rng = np.random.Generator(np.random.SFC64(cfg.seed))
        # tuples of str: the cyclic GC stops tracking them, so large caches cost no GC time
        self._shown: OrderedDict[str, deque[tuple[str, ...]]] = OrderedDict()
        self._shadow_log: OrderedDict[str, tuple[list[str], list[float], dict[str, list[str]]]] = (
            OrderedDict()
        )
        self.shadow_stats = {n: ShadowStats() for n in cfg.shadows}
        self.model: OnlineModel | None = None
        self.model_version = "none"
        self.model_loaded_at = 0.0
        self.snapshot_written_at: float | None = None
        self._prefix_cache: dict[str, list[str]] = {}
        self._cat_cache: dict[str, str] = {}
        self._cat_cache_at = time.monotonic()
        self._last_reload = -math.inf
        self._lists: tuple[list[str], dict[str, float], list[str]] | None = None
        self._lists_at = -math.inf
        # retired items (never served), the newest retirement time read, the last full read,
        # a version bumped when the set changes, and (rows, version, positions) of the
        # retired items among the model's rows (`_retired_positions`)
        self.retired: set[str] = set()
        self._retired_upto = 0
        self._restored_upto = 0
        self._retired_full_at = -math.inf
        self._retired_version = 0
        self._retired_pos: tuple[np.ndarray, int, np.ndarray] | None = None
        self._states: OrderedDict[str, tuple[bytes, np.ndarray]] = OrderedDict()
        self._states_model: OnlineModel | None = None
        self._reload_task: asyncio.Task[OnlineModel | None] | None = None
        # reads that failed (store unavailable) since the last `pop_store_failures`, by read
        self._store_failures: Counter[str] = Counter()
        # (read, seconds) of the reads that succeeded since the last `pop_store_timings`
        self._store_timings: list[tuple[str, float]] = []
        self._feedback_seen = SeenIds(cfg.max_users_tracked)
        self.feedback_skipped: Counter[str] = Counter()  # "duplicate", "late"

    # --- model -------------------------------------------------------------------------------
    def maybe_reload(self) -> bool:
        """Poll the registry (rate-limited) and switch to a newer valid snapshot, in this
        thread. True if switched. Workers use `refresh_model`, which loads off the loop."""
        if self.watcher is None or not self._due():
            return False
        return self._install(self.watcher.maybe_reload())

    async def refresh_model(self) -> bool:
        """Like `maybe_reload`, but the snapshot is read and built in a worker thread while
        requests keep being served by the current model (a load can take seconds)."""
        task = self._reload_task
        if task is not None and task.done():
            self._reload_task = None
            try:
                return self._install(task.result())
            except Exception as exc:  # keep serving the current model
                log.warning("snapshot reload failed: %s", exc)
                return False
        if task is None and self.watcher is not None and self._due():
            self._reload_task = asyncio.create_task(asyncio.to_thread(self.watcher.maybe_reload))
        return False

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._last_reload < self.config.reload_interval_s:
            return False
        self._last_reload = now
        return True

    def _install(self, model: OnlineModel | None) -> bool:
        if model is None or self.watcher is None:
            return False
        self.model = model
        self.model_version = f"v{self.watcher.version}"
        self.model_loaded_at = self.clock()
        try:
            meta = self.watcher.registry.read_meta(int(self.watcher.version or 0))
            self.snapshot_written_at = float(meta.get("created_at", 0.0)) or None
        except (OSError, ValueError, KeyError):
            self.snapshot_written_at = None
        log.info("scorer loaded model %s", self.model_version)
        return True

    # --- serving -------------------------------------------------------------------------------
    async def recommend_many(self, requests: Sequence[Request]) -> list[Served]:
        """Answer a batch of requests: one feature-store round trip for all users, then each
        arm (and shadow policy) ranks all of its requests in one batched call."""
        if not requests:
            return []
        t0 = time.perf_counter()
        if self.config.reload_in_background:
            await self.refresh_model()
        else:
            self.maybe_reload()
        users = list({r.user_id for r in requests})
        try:
            t_read = time.perf_counter()
            views = await self.features.user_views(users)
            self._read_took("user_views", t_read)
        except StoreUnavailable as exc:  # answer now, as for new users, rather than not at all
            self._store_failed("user_views", exc)
            views = {}
        popular, pop_score, fresh = await self._shared_lists()
        states = self._user_states(views)
        tops = self._model_tops(states)
        asks = []
        for req in requests:
            view = views.get(req.user_id) or UserView(req.user_id)
            uid = req.user_id
            asks.append(
                await self._ask(
                    req, view, states.get(uid), tops.get(uid), popular, pop_score, fresh
                )
            )
        self._rank(asks)
        return [self._served(a, t0) for a in asks]

    async def _shared_lists(self) -> tuple[list[str], dict[str, float], list[str]]:
        """Popular-now items, their popularity scores and fresh items: read from the store at
        most every `lists_ttl_s` (they change slowly; a user's own features are read per batch)."""
        now = time.monotonic()
        cached = self._lists
        if cached is not None and now - self._lists_at < self.config.lists_ttl_s:
            return cached
        cfg = self.config
        try:
            t0 = time.perf_counter()
            ranked = await self.features.popular(max(cfg.candidates_popular, 200))
            fresh = await self.features.fresh(cfg.candidates_fresh)
            self._read_took("lists", t0)
        except StoreUnavailable as exc:  # keep serving the lists read last (or none)
            self._store_failed("lists", exc)
            self._lists_at = now  # retried after lists_ttl_s, not on every batch
            self._lists = cached or ([], {}, [])
            return self._lists
        popular = [i for i, _ in ranked[: cfg.candidates_popular]]
        await self._categories([*popular, *fresh])
        await self._read_retired(now)
        self._lists, self._lists_at = (popular, dict(ranked), fresh), now
        return self._lists

    async def _read_retired(self, now: float) -> None:
        """Add the items retired since the last read and drop those brought back since (1 s
        of overlap: the store's clock may stamp two changes alike); every `retired_reload_s`
        read the whole retired set instead. An outage keeps the set read last."""
        full = now - self._retired_full_at >= self.config.retired_reload_s
        try:
            t0 = time.perf_counter()
            if full:
                got, back = await self.features.retired(0), {}
            else:
                got = await self.features.retired(max(self._retired_upto - 1000, 0))
                # read after the retired ones: an item retired and brought back between the
                # two reads is in both, and dropped (each change moves an item between sets)
                back = await self.features.restored(max(self._restored_upto - 1000, 0))
            self._read_took("retired", t0)
        except StoreUnavailable as exc:
            self._store_failed("retired", exc)
            return
        if full:
            if self.retired != got.keys():
                self.retired = set(got)
                self._retired_version += 1
            self._retired_full_at = now
        else:  # update only adds and difference_update only removes: sizes tell a change
            n0 = len(self.retired)
            self.retired.update(got)
            n1 = len(self.retired)
            self.retired.difference_update(back)
            if n1 != n0 or len(self.retired) != n1:
                self._retired_version += 1
        if got:
            self._retired_upto = max(self._retired_upto, max(got.values()))
        if back:
            self._restored_upto = max(self._restored_upto, max(back.values()))

    def _user_states(self, views: Mapping[str, UserView]) -> dict[str, Any]:
        """Every user's model state: reused while the user's sequence and the snapshot are
        unchanged (a GRU pass over 50 steps costs ~0.2-0.3 ms for one user), the rest
        batched through the GRU."""
        model = self.model
        if model is None or not self.config.candidates_model:
            return {}
        users = list(views)
        batched = getattr(model, "user_states_rows", None)
        if batched is None or not isinstance(model, SequentialModel):
            return {u: model.user_state(views[u].recent, u) for u in users}
        if not self.config.reuse_user_states:
            seqs = [model.user_rows(views[u].recent) for u in users]
            return dict(zip(users, batched(seqs), strict=True))
        cache = self._states
        if self._states_model is not model:  # a new snapshot: every state changes
            cache.clear()
            self._states_model = model
        out: dict[str, Any] = {}
        todo: list[tuple[str, np.ndarray, bytes]] = []
        for u in users:
            rows = model.user_rows(views[u].recent)
            key = rows.tobytes()
            hit = cache.get(u)
            if hit is not None and hit[0] == key:
                cache.move_to_end(u)
                out[u] = hit[1]
            else:
                todo.append((u, rows, key))
        if todo:
            states = batched([rows for _, rows, _ in todo])
            states.setflags(write=False)  # shared by later requests of the same user
            for (u, _, key), state in zip(todo, states, strict=True):
                out[u] = state
                cache[u] = (key, state)
                cache.move_to_end(u)
            while len(cache) > self.config.max_users_tracked:
                cache.popitem(last=False)
        return out

    async def _ask(
        self,
        req: Request,
        view: UserView,
        state: Any,
        top: _ModelTop | None,
        popular: list[str],
        pop_score: Mapping[str, float],
        fresh: list[str],
    ) -> _Ask:
        """A request's candidates (model top-N, popular, fresh; minus exclusions and retired
        items), its arm and its posterior context: everything its ranking needs."""
        cfg = self.config
        model = self.model
        if model is not None and state is None:
            state = model.user_state(view.recent, req.user_id)
        scored, model_top = top if top is not None else (None, [])
        retired = self.retired
        excluded = set(req.exclusions)
        if cfg.exclude_interacted:
            excluded.update(view.recent)
        for shown in self._shown.get(req.user_id, ()):
            excluded.update(shown)
        pool = list(dict.fromkeys([*model_top, *popular, *fresh]))
        if req.candidate_filter and req.candidate_filter.item_ids is not None:
            pool = list(dict.fromkeys(req.candidate_filter.item_ids))
        cands = [i for i in pool if i not in excluded and i not in retired]
        if not cands:  # never empty when candidates exist: relax the soft exclusions
            hard = set(req.exclusions)
            cands = [i for i in pool if i not in hard and i not in retired]
        cats = await self._categories(cands) if cands else {}
        if req.candidate_filter and req.candidate_filter.categories:
            prefixes = tuple(req.candidate_filter.categories)
            cands = [i for i in cands if _in_categories(cats.get(i, ""), prefixes)]
        ctx: dict[str, Any] = {}
        if cands:
            if model is not None:
                from_model = set(model_top)
                for item in cands:
                    if item not in from_model and item not in model.items:
                        # a catalogue item the snapshot has not seen: scorable at once
                        # through its category (hierarchical prior)
                        model.admit(item, cats.get(item) or None)
            ctx = self._context(model, state, cands, view, cats, pop_score, scored)
        return _Ask(req, tuple(cands), arm_for(req.user_id, cfg.arms), ctx)

    def _model_tops(self, states: Mapping[str, Any]) -> dict[str, _ModelTop]:
        """Each user's model scores of all items and top `candidates_model` of those still on
        offer, from one scoring product for the whole batch where the model has one."""
        model = self.model
        if model is None or not states or self.config.candidates_model <= 0:
            return {}
        rows = model.all_rows()
        if not rows.size:
            return {}
        n = min(self.config.candidates_model, rows.size)
        users = list(states)
        batched = getattr(model, "score_batch", None)
        if batched is not None and isinstance(model, SequentialModel):
            scores = np.asarray(batched(np.stack([states[u] for u in users]), rows), np.float32)
        else:
            scores = np.stack([model.score(states[u], rows) for u in users])
        pick = scores
        gone = self._retired_positions(model, rows)
        if gone.size:  # the model's top-N from the items still on offer
            pick = scores.copy()
            pick[:, gone] = -np.inf
        top = _top_columns(pick, n)
        ids = model.items.ids(rows[top].ravel())
        return {
            u: ((rows, scores[j]), [i for i in ids[j * n : (j + 1) * n] if i is not None])
            for j, u in enumerate(users)
        }

    def _rank(self, asks: Sequence[_Ask]) -> None:
        """Set each request's slate from its arm, and each shadow policy's, ranking all the
        requests of a policy in one batched call (a request without candidates gets none)."""
        with_cands = [a for a in asks if a.cands]
        for arm in dict.fromkeys(a.arm for a in with_cands):
            mine = [a for a in with_cands if a.arm == arm]
            got = self.policies[arm].select_many(
                [(a.cands, a.req.k, a.ctx) for a in mine], self.rng
            )
            for a, slate in zip(mine, got, strict=True):
                a.slate = slate
        for name in self.config.shadows:
            got = self.policies[name].select_many(
                [(a.cands, a.req.k, a.ctx) for a in with_cands], self.rng
            )
            for a, slate in zip(with_cands, got, strict=True):
                a.shadows[name] = list(slate.items)

    def _served(self, ask: _Ask, started: float) -> Served:
        """The recommendation of a ranked request (and the scorer's own bookkeeping)."""
        req, cands, slate = ask.req, ask.cands, ask.slate
        slate_items: list[str] = []
        scores: list[float] = []
        props: list[float] = []
        explored = 0
        if slate is not None:
            slate_items = list(slate.items)
            scores = [float(x) for x in slate.scores]
            props = [float(min(1.0, max(p, 1e-6))) for p in slate.propensities]
            greedy = np.argsort(-self.posterior.mean_scores(cands, ask.ctx), kind="stable")
            explored = sum(1 for p, item in enumerate(slate_items) if cands[int(greedy[p])] != item)
            self._remember(req.user_id, slate_items)
            if ask.shadows:  # kept only for the shadow policies' estimates
                self._shadow_log[req.request_id] = (slate_items, props, ask.shadows)
                while len(self._shadow_log) > self.config.max_users_tracked:
                    self._shadow_log.popitem(last=False)
        served_at = int(self.clock() * 1000)
        # built from validated parts (request, catalogue ids, floats): validating again would
        # cost ~12 µs a request
        rec = Recommendation.model_construct(
            event_id=derived_id("rec-", req.request_id),
            ts=served_at,
            request_id=req.request_id,
            user_id=req.user_id,
            slate=slate_items,
            scores=scores,
            propensities=props,
            policy=ask.arm,
            arm=ask.arm,
            model_version=self.model_version,
            served_at=served_at,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            error=None if slate_items else "no_candidates",
        )
        return Served(rec, ask.arm, len(cands), ask.shadows, req.ts, explored)

    def _retired_positions(self, model: OnlineModel, rows: np.ndarray) -> np.ndarray:
        """Positions in `rows` (the model's rows, ascending) of the retired items the model
        knows; kept until the rows or the retired set change."""
        cached = self._retired_pos
        if cached is not None and cached[0] is rows and cached[1] == self._retired_version:
            return cached[2]
        known = np.sort(model.items.known_rows(self.retired))
        pos = np.searchsorted(rows, known)
        inside = pos < rows.size
        pos, known = pos[inside], known[inside]
        pos = pos[rows[pos] == known]
        self._retired_pos = (rows, self._retired_version, pos)
        return pos

    def _context(
        self,
        model: OnlineModel | None,
        state: Any,
        cands: list[str],
        view: UserView,
        cats: Mapping[str, str],
        pop_score: Mapping[str, float],
        scored: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> dict[str, Any]:
        """Per-request posterior context: the fixed boost (affinity, popularity) and the model's
        standardised candidate scores (taken from the all-item scores when already computed)."""
        cfg = self.config
        n = len(cands)
        boost = np.zeros(n)
        aff = view.affinity
        total_aff = sum(v for v in aff.values() if v > 0)
        if total_aff > 0 and cfg.affinity_weight:
            cat_of = list(map(cats.get, cands, repeat("")))
            by_cat = {cat: self._best_affinity(aff, cat) for cat in set(cat_of)}
            best = np.fromiter(map(by_cat.__getitem__, cat_of), float, n)
            boost += (cfg.affinity_weight / total_aff) * best
        if pop_score and cfg.popularity_weight:
            top = max(pop_score.values())
            if top > 0:
                pops = np.fromiter(map(pop_score.get, cands, repeat(0.0)), float, n)
                boost += cfg.popularity_weight * np.log1p(pops) / math.log1p(top)
        ctx: dict[str, Any] = {"boost": boost}
        if model is not None:
            rows = model.items.rows(cands)
            ctx["rows"] = rows
            s = _candidate_scores(model, state, rows, scored).astype(float)
            finite = np.isfinite(s)
            f = s if finite.all() else s[finite]
            mu, sd = 0.0, 1.0
            if f.size > 1:  # mean and std in two reductions (np.std costs ~5x more)
                mu = float(f.sum()) / f.size
                # floor 1: an untrained model's near-constant scores must not become noise
                sd = max(math.sqrt(max(float(f @ f) / f.size - mu * mu, 0.0)), 1.0)
            elif f.size:
                mu = float(f[0])
            ctx.update(model=model, user_state=state, mu=mu, sd=sd, model_z=_standardise(s, mu, sd))
        return ctx

    async def _categories(self, items: Sequence[str]) -> Mapping[str, str]:
        """Category paths, from a cache refreshed every `category_ttl_s` (one store round trip
        per batch for the items not cached; catalogue metadata changes rarely). Returns the
        cache itself: a mapping that holds at least `items`, valid until the next call."""
        now = time.monotonic()
        if now - self._cat_cache_at > self.config.category_ttl_s:
            self._cat_cache.clear()
            self._cat_cache_at = now
        cache = self._cat_cache
        missing = [i for i in items if i not in cache]
        if missing:
            try:
                t0 = time.perf_counter()
                found = await self.features.categories(missing)
                self._read_took("categories", t0)
            except StoreUnavailable as exc:  # uncached items count as uncategorised for now
                self._store_failed("categories", exc)
                return cache
            for i in missing:
                cache[i] = found.get(i, "")
        return cache

    def _store_failed(self, read: str, exc: StoreUnavailable) -> None:
        """Count and log a failed read (a worker passes one such line per 10 s:
        `streams.log_limits`)."""
        self._store_failures[read] += 1
        log.warning("feature store unavailable (%s: %s): serving without it", read, exc)

    def _read_took(self, read: str, started: float) -> None:
        if len(self._store_timings) < 10_000:  # bounded for a caller that never pops them
            self._store_timings.append((read, time.perf_counter() - started))

    def pop_store_timings(self) -> list[tuple[str, float]]:
        """(read, seconds) of the feature reads since the last call (for the handler's
        `store_op_seconds{op}`; the same read names as `pop_store_failures`)."""
        out, self._store_timings = self._store_timings, []
        return out

    def pop_store_failures(self) -> dict[str, int]:
        """Failed reads by kind since the last call (the handler turns them into a metric)."""
        out = dict(self._store_failures)
        self._store_failures.clear()
        return out

    def _best_affinity(self, aff: Mapping[str, float], cat: str) -> float:
        """The user's affinity to a category: the best over its path prefixes ('a', 'a/b'),
        a missing prefix counting 0 (0 for an item without category)."""
        prefixes = self._prefixes(cat)
        if not prefixes:
            return 0.0
        get = aff.get
        best = get(prefixes[0], 0.0)
        for p in prefixes[1:]:
            v = get(p, 0.0)
            if v > best:
                best = v
        return best

    def _prefixes(self, cat: str) -> list[str]:
        out = self._prefix_cache.get(cat)
        if out is None:
            out = _prefixes(cat)
            if len(self._prefix_cache) < 100_000:
                self._prefix_cache[cat] = out
        return out

    def _remember(self, user_id: str, slate: list[str]) -> None:
        n = self.config.exclude_shown_slates
        if n <= 0:
            return
        q = self._shown.get(user_id)
        if q is None:
            q = deque(maxlen=n)
            self._shown[user_id] = q
            while len(self._shown) > self.config.max_users_tracked:
                self._shown.popitem(last=False)
        else:
            self._shown.move_to_end(user_id)
        q.append(tuple(slate))

    # --- learning from feedback ---------------------------------------------------------------
    def on_feedback(self, fb: Feedback) -> bool:
        """Update the CTR posterior with a joined slate, and the shadow policies' estimates;
        True when the posterior learned from it.

        Each slate counts once: a redelivered record (same event_id) and a late record (a
        click after the window: its slate was already counted by the on-time record, with the
        attribution window deciding the label) are skipped and counted."""
        if not self._feedback_seen.add(fb.event_id):
            self.feedback_skipped["duplicate"] += 1
            return False
        if fb.late:
            self.feedback_skipped["late"] += 1
            return False
        clicked = tuple(fb.clicked_positions)
        try:
            pf = PolicyFeedback(slate=tuple(fb.slate), clicks=clicked, user_id=fb.user_id)
        except ValueError as exc:
            log.debug("feedback %s not usable by the policy: %s", fb.request_id, exc)
            return False
        self.posterior.update(pf)
        logged = self._shadow_log.pop(fb.request_id, None)
        if logged is None:
            return True
        served, props, shadows = logged
        for name, shadow in shadows.items():
            st = self.shadow_stats[name]
            st.slates += 1
            for pos in clicked:
                if pos < len(shadow) and pos < len(served) and shadow[pos] == served[pos]:
                    st.weighted_clicks += 1.0 / props[pos]
        return True


def _prefixes(cat: str) -> list[str]:
    parts = [p for p in cat.split("/") if p]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _in_categories(cat: str, prefixes: tuple[str, ...]) -> bool:
    return any(cat == p or cat.startswith(p.rstrip("/") + "/") for p in prefixes)


def _top_columns(scores: np.ndarray, n: int) -> np.ndarray:
    """Per row, the columns of its n largest scores, in no particular order (NaN never
    among them). torch's top-k takes ~43 µs a row of 10k items, np.argpartition ~100 µs."""
    import torch

    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    scores = np.require(scores, requirements=["C", "W"])  # torch shares a writable block
    picked = torch.topk(torch.from_numpy(scores), n, dim=1, sorted=False).indices
    return picked.numpy()


def _standardise(s: np.ndarray, mu: Any, sd: Any) -> np.ndarray:
    """(s - mu) / sd as float64; -inf (unknown item) becomes -10, NaN 0. In place on one
    copy, -inf replaced directly (nan_to_num is slow; a batch's padding is always -inf):
    a third less time than the out-of-place version on a scorer batch."""
    z = np.array(s, dtype=float)
    z -= mu
    z /= sd
    neg = np.isneginf(z)
    if neg.any():
        np.copyto(z, -10.0, where=neg)
    if not np.isfinite(z).all():
        z = np.nan_to_num(z)
    return z


def _candidate_scores(
    model: OnlineModel,
    state: Any,
    rows: np.ndarray,
    scored: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """Model scores of candidate rows, looked up in the all-item scores of this request where
    present; rows not among them (items admitted since, unknown ids) are scored directly."""
    if scored is None:
        return model.score(state, rows)
    all_rows, all_scores = scored
    idx = np.minimum(np.searchsorted(all_rows, rows), all_rows.size - 1)
    hit = all_rows[idx] == rows
    out = all_scores[idx]
    if not hit.all():
        out = out.copy()
        miss = ~hit
        out[miss] = model.score(state, rows[miss])
    return out
