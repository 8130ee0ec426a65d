"""Topic names, partition counts and keys: one place that knows the Kafka layout."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.config import Settings


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the contract: logical name, full name, partitions, the event kind it holds,
    its key, and the topic configs the workers create it with."""

    logical: str
    name: str
    partitions: int
    kind: str
    key: str
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> dict[str, TopicSpec]:
    """Every topic of the pipeline, keyed by logical name (`interactions`, `dlq`, ...)."""
    p, n = settings.topic_prefix, settings.partitions
    # the interaction log is what `features rebuild` replays: its retention is the user's
    # choice (unset: the broker's default, 7 days unless changed)
    log: dict[str, str] = {}
    if settings.event_retention_ms is not None:
        log["retention.ms"] = str(settings.event_retention_ms)
    # the catalogue: the latest record of every item is kept for good (a rebuild after the
    # retention period still finds every item); records need the item_id key
    catalogue = {"cleanup.policy": "compact"}
    rows = [
        ("interactions", n, "interaction", "user_id", log),
        ("impressions", n, "impression", "user_id", log),
        ("items", n, "item", "item_id", catalogue),
        ("requests", n, "request", "user_id", {}),
        ("recommendations", n, "recommendation", "user_id", {}),
        ("feedback", n, "feedback", "user_id", {}),
        ("dlq", 1, "dead_letter", "original key", {}),
    ]
    return {
        logical: TopicSpec(logical, f"{p}.{logical}", parts, kind, key, dict(configs))
        for logical, parts, kind, key, configs in rows
    }


def topic_name(settings: Settings, logical: str) -> str:
    """Full topic name of a logical topic."""
    return f"{settings.topic_prefix}.{logical}"
