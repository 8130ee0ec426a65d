"""Prometheus metrics of every worker role: one module per role, one /metrics endpoint.

- `streams.metrics.features` → `FEATURES` (`slatestream_features_…`)
- `streams.metrics.joiner`   → `JOINER`   (`slatestream_joiner_…`)
- `streams.metrics.trainer`  → `TRAINER`  (`slatestream_trainer_…`)
- `streams.metrics.scorer`   → `SCORER`   (`slatestream_scorer_…`)
- `streams.metrics.server`   → `/metrics` endpoint and the consumer-lag monitor.

Workers wrap their handler with `instrument(handler)` (events in/out per topic, batch
latency, event age, DLQ by reason, errors are then recorded automatically) and record the
role-specific figures through the role object. See docs/observability.md.
"""

from __future__ import annotations

from streams.metrics.common import InstrumentedHandler, RoleMetrics
from streams.metrics.features import FEATURES, FeaturesMetrics
from streams.metrics.joiner import JOINER, JoinerMetrics
from streams.metrics.scorer import SCORER, ScorerMetrics
from streams.metrics.trainer import TRAINER, TrainerMetrics
from streams.runtime import Handler

ROLES: dict[str, RoleMetrics] = {
    "features": FEATURES,
    "joiner": JOINER,
    "trainer": TRAINER,
    "scorer": SCORER,
}
_ALIASES = {"feature": "features"}


def for_role(role: str) -> RoleMetrics:
    """The metrics object of a worker role (`feature`/`features`, `joiner`, …)."""
    key = _ALIASES.get(role, role)
    try:
        return ROLES[key]
    except KeyError:
        raise KeyError(f"no metrics for role {role!r} (one of {sorted(ROLES)})") from None


def instrument(handler: Handler, role: str | None = None) -> InstrumentedHandler:
    """Wrap `handler` so its batches are measured under `role` (default: handler.name)."""
    return InstrumentedHandler(handler, for_role(role or handler.name))


def all_sample_names() -> set[str]:
    """Every metric sample name slatestream defines (for dashboard/rules checks)."""
    names: set[str] = set()
    for metrics in ROLES.values():
        names |= metrics.sample_names()
    return names


__all__ = [
    "FEATURES",
    "JOINER",
    "ROLES",
    "SCORER",
    "TRAINER",
    "FeaturesMetrics",
    "InstrumentedHandler",
    "JoinerMetrics",
    "RoleMetrics",
    "ScorerMetrics",
    "TrainerMetrics",
    "all_sample_names",
    "for_role",
    "instrument",
]
