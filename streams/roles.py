"""Worker roles: which handler does what, built from settings over one feature store.

`features` (feature store from interactions, impressions, items; dead-letters bad input),
`joiner` (impression ⋈ clicks → feedback), `trainer` (incremental model + snapshots),
`scorer` (requests → recommendations). One process may run several roles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streams.config import Settings
from streams.errors import ConfigError
from streams.runtime import Handler

ROLES = ("features", "joiner", "trainer", "scorer")


def parse_roles(text: str) -> list[str]:
    """`features,joiner` → ['features', 'joiner'], `all` → every role; clear error otherwise."""
    roles = list(ROLES) if text.strip() == "all" else [r.strip() for r in text.split(",") if r]
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise ConfigError(
            f"--role: unknown role(s) {bad or text!r}; choose from {', '.join(ROLES)}"
        )
    return list(dict.fromkeys(roles))


def build_handlers(settings: Settings, roles: Sequence[str], store: Any = None) -> list[Handler]:
    """Handlers for `roles`, sharing one feature store (opened from settings if not given)."""
    from streams.services.feature_service import open_feature_store

    # role imports stay inside their branch: trainer/scorer pull in torch and river
    # (~550 MB RSS), which a features/joiner worker must not pay for
    store = store if store is not None else open_feature_store(settings)
    out: list[Handler] = []
    for role in roles:
        if role == "features":
            from streams.handlers.ingest import FeatureHandler

            out.append(FeatureHandler(settings, store))
        elif role == "joiner":
            from streams.handlers.ingest import JoinerHandler

            out.append(JoinerHandler(settings, store))
        elif role == "trainer":
            from streams.handlers.trainer import TrainerHandler

            out.append(TrainerHandler(settings))
        elif role == "scorer":
            from models.registry import ModelRegistry, SnapshotWatcher
            from streams.handlers.scorer import ScorerHandler
            from streams.services.scorer_service import ScorerConfig, ScorerService
            from streams.services.store_view import StoreView

            # every value was checked by Settings (policy names and arms included)
            cfg = ScorerConfig(
                arms=settings.arms,
                shadows=tuple(settings.shadow_policies),
                reload_interval_s=settings.reload_interval_s,
                candidates_model=settings.candidates_model,
                candidates_popular=settings.candidates_popular,
                candidates_fresh=settings.candidates_fresh,
                ts_temperature=settings.ts_temperature,
                exclude_interacted=settings.exclude_interacted,
                exclude_shown_slates=settings.exclude_shown_slates,
            )
            watcher = SnapshotWatcher(ModelRegistry(settings.effective_registry))
            out.append(ScorerHandler(settings, ScorerService(StoreView(store), watcher, cfg)))
    return out
