"""Faust app factory: binds broker-independent handlers (streams.runtime) as Faust agents.

Each handler becomes one agent over raw-bytes topics. Batches come from
`stream.take_events`, which acks (and so lets Faust commit) the batch's offsets only after
the handler returned and the records it emitted were acknowledged by the broker:
at-least-once delivery, made exactly-once in effect by idempotent handlers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust

from streams.config import Settings
from streams.runtime import Emit, Handler, Record

log = logging.getLogger(__name__)


def create_app(settings: Settings, group: str, **overrides: Any) -> faust.App:
    """A Faust app (consumer group `<prefix>-<group>`) on the configured broker."""
    if not settings.kafka_bootstrap:
        from streams.errors import ConfigError

        raise ConfigError("SLATESTREAM_KAFKA_BOOTSTRAP: not set (a Kafka worker needs a broker)")
    conf: dict[str, Any] = {
        "broker": ",".join(f"kafka://{b}" for b in settings.kafka_bootstrap.split(",")),
        "store": "memory://",
        "web_enabled": False,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "broker_commit_every": 5000,
        "broker_commit_interval": 1.0,
        "stream_buffer_maxsize": 8192,
        "broker_max_poll_records": 2000,
        "datadir": str(settings.state_dir / "faust" / group),
    }
    conf.update(overrides)
    # Faust creates datadir without parents: make sure a fresh state dir works
    Path(str(conf["datadir"])).parent.mkdir(parents=True, exist_ok=True)
    return faust.App(f"{settings.topic_prefix}-{group}", **conf)


def raw_topic(app: faust.App, name: str, partitions: int | None = None) -> faust.TopicT:
    """A topic of raw bytes keys and values (we validate JSON ourselves, at the edge)."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


def to_record(event: Any) -> Record:
    """Convert a Faust event to a runtime Record (topic, bytes, position, timestamp)."""
    msg = event.message
    return Record(
        topic=msg.topic,
        value=msg.value if msg.value is not None else b"",
        key=msg.key,
        partition=msg.partition,
        offset=msg.offset,
        timestamp_ms=int(msg.timestamp * 1000),
    )


async def publish(app: faust.App, emits: Sequence[Emit]) -> None:
    """Send emits through the app's producer and wait until the broker acknowledged all."""
    if not emits:
        return
    futures = [
        await app.producer.send(
            e.topic, e.key, e.value, partition=None, timestamp=None, headers=None
        )
        for e in emits
    ]
    await asyncio.gather(*futures)


def bind_handler(
    app: faust.App,
    handler: Handler,
    *,
    batch_size: int = 1000,
    within_s: float = 0.02,
    partitions: int | None = None,
    tick_interval_s: float = 0.5,
) -> Any:
    """Register `handler` as a Faust agent over its topics (plus a timer calling its optional
    `tick()` coroutine, whose emits are published); returns the agent."""
    topics = [raw_topic(app, t, partitions) for t in handler.topics]
    channel = (
        topics[0]
        if len(topics) == 1
        else app.topic(
            *handler.topics,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
    )

    async def process(stream: Any) -> None:
        async for events in stream.take_events(batch_size, within=within_s):
            records = [to_record(e) for e in events]
            emits = await handler.handle(records)
            await publish(app, emits)

    process.__name__ = f"{handler.name}_agent"
    agent = app.agent(channel, name=handler.name)(process)
    tick = getattr(handler, "tick", None) or getattr(getattr(handler, "inner", None), "tick", None)
    if tick is not None:
        # time-driven work (window closing, training steps, snapshots) when no events arrive

        async def on_timer() -> None:
            await publish(app, await tick())

        on_timer.__name__ = f"{handler.name}_tick"
        app.timer(interval=tick_interval_s)(on_timer)
    return agent
