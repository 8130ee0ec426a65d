"""Topic names, partition counts and keys: one place that knows the Kafka layout."""

from __future__ import annotations

from dataclasses import dataclass

from streams.config import Settings


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the contract: logical name, full name, partitions, the event kind it holds."""

    logical: str
    name: str
    partitions: int
    kind: str
    key: str


def topic_specs(settings: Settings) -> dict[str, TopicSpec]:
    """Every topic of the pipeline, keyed by logical name (`interactions`, `dlq`, ...)."""
    p, n = settings.topic_prefix, settings.partitions
    rows = [
        ("interactions", n, "interaction", "user_id"),
        ("impressions", n, "impression", "user_id"),
        ("items", n, "item", "item_id"),
        ("requests", n, "request", "user_id"),
        ("recommendations", n, "recommendation", "user_id"),
        ("feedback", n, "feedback", "user_id"),
        ("dlq", 1, "dead_letter", "original key"),
    ]
    return {
        logical: TopicSpec(logical, f"{p}.{logical}", parts, kind, key)
        for logical, parts, kind, key in rows
    }


def topic_name(settings: Settings, logical: str) -> str:
    """Full topic name of a logical topic."""
    return f"{settings.topic_prefix}.{logical}"
