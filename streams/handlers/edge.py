"""Validation at the edge: decode a record into a contract event or a dead-letter emit."""

from __future__ import annotations

from typing import TypeVar

from streams import schemas
from streams.config import Settings
from streams.errors import SchemaError
from streams.runtime import Emit, Record
from streams.topics import topic_name

E = TypeVar("E", bound=schemas.Event)


def decode_or_dead_letter(
    record: Record, cls: type[E], settings: Settings, worker: str
) -> tuple[E | None, Emit | None, SchemaError | None]:
    """Decode `record` as `cls`; on failure return the DLQ emit (original bytes + reason)."""
    try:
        return schemas.decode_under(settings, cls, record.value), None, None
    except SchemaError as exc:
        dl = schemas.DeadLetter.of(
            record.value,
            exc,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            worker=worker,
        )
        return None, Emit(topic_name(settings, "dlq"), dl.to_json(), record.key), exc
