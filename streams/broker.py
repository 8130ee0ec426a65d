"""Broker chores done with kafka-python's admin client: reachability check, topic creation."""

from __future__ import annotations

import contextlib
import logging
import socket

from streams.config import Settings
from streams.errors import BrokerUnavailable, ConfigError
from streams.topics import topic_specs


def check_broker(settings: Settings, timeout_s: float = 5.0) -> None:
    """Raise a one-line error naming SLATESTREAM_KAFKA_BOOTSTRAP when no broker answers."""
    if not settings.kafka_bootstrap:
        raise ConfigError("SLATESTREAM_KAFKA_BOOTSTRAP: not set (this command needs a broker)")
    errors = []
    for addr in settings.kafka_bootstrap.split(","):
        host, port = addr.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=timeout_s).close()
            return
        except OSError as exc:
            errors.append(f"{addr}: {exc.strerror or exc}")
    raise BrokerUnavailable(f"SLATESTREAM_KAFKA_BOOTSTRAP: no broker answers ({'; '.join(errors)})")


def ensure_topics(settings: Settings) -> list[str]:
    """Create the pipeline's topics with their partition counts if missing; return created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    check_broker(settings)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(
                s.name, num_partitions=s.partitions, replication_factor=settings.replication_factor
            )
            for s in topic_specs(settings).values()
            if s.name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
        return [t.name for t in new]
    finally:
        admin.close()
