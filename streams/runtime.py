"""Broker-independent plumbing: records in, emits out, and an in-memory event log.

Workers are *handlers*: pure-ish async objects that take a batch of raw records and
return what to publish. A Faust agent (streams.app) or the embedded in-memory log
(`MemoryLog`, used by the demo and unit tests) drives the same handler code.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol


class Record(NamedTuple):
    """One consumed Kafka record (or its in-memory twin). A named tuple, not a frozen
    dataclass: workers make one per record, and this is ~3x cheaper to build."""

    topic: str
    value: bytes
    key: bytes | None = None
    partition: int = 0
    offset: int = -1
    timestamp_ms: int = 0


@dataclass(frozen=True, slots=True)
class Emit:
    """One record a handler wants published."""

    topic: str
    value: bytes
    key: bytes | None = None


class Handler(Protocol):
    """A worker's logic: consumes `topics`, returns records to publish for each batch.

    `handle` must only return once its side effects (store writes) are durable, because
    the driver commits the batch's offsets right after it returns.
    """

    name: str

    @property
    def topics(self) -> Sequence[str]:
        """Full names of the topics this handler consumes."""
        ...

    async def handle(self, records: Sequence[Record]) -> list[Emit]:
        """Process one batch of records in order; return the records to publish."""
        ...


class SeenIds:
    """The last `capacity` event ids seen: drops redeliveries (at-least-once) of records a
    worker learns from in memory, where the feature store's dedupe marks do not reach."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> bool:
        """Remember `event_id`; False if it was already seen (a duplicate)."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


@dataclass
class MemoryLog:
    """An in-memory, append-only, partitioned-by-nothing event log with consumer offsets.

    Enough of Kafka for the embedded mode: topics are lists, consumer groups keep an
    offset per topic, and `publish` appends.
    """

    topics: dict[str, list[Record]] = field(default_factory=lambda: defaultdict(list))
    offsets: dict[tuple[str, str], int] = field(default_factory=dict)

    def publish(
        self, topic: str, value: bytes, key: bytes | None = None, timestamp_ms: int | None = None
    ) -> Record:
        """Append one record and return it with its offset."""
        log = self.topics[topic]
        rec = Record(
            topic=topic,
            value=value,
            key=key,
            partition=0,
            offset=len(log),
            timestamp_ms=int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        )
        log.append(rec)
        return rec

    def poll(self, group: str, topic: str, max_records: int = 1000) -> list[Record]:
        """Records of `topic` after the group's committed offset (not committing them)."""
        start = self.offsets.get((group, topic), 0)
        return self.topics[topic][start : start + max_records]

    def commit(self, group: str, topic: str, next_offset: int) -> None:
        """Commit the group's position on a topic."""
        self.offsets[(group, topic)] = next_offset

    def lag(self, group: str, topic: str) -> int:
        """Records not yet committed by the group."""
        return len(self.topics[topic]) - self.offsets.get((group, topic), 0)


async def drain(
    log: MemoryLog,
    handler: Handler,
    *,
    group: str | None = None,
    batch_size: int = 500,
    max_rounds: int = 1_000_000,
) -> int:
    """Feed every pending record of the handler's topics through it, publishing its emits.

    Returns the number of records processed. Offsets are committed after each batch,
    like the Kafka driver does. Bounded by `max_rounds`.
    """
    group = group or handler.name
    done = 0
    for _ in range(max_rounds):
        progressed = False
        for topic in handler.topics:
            batch = log.poll(group, topic, batch_size)
            if not batch:
                continue
            emits = await handler.handle(batch)
            for e in emits:
                log.publish(e.topic, e.value, e.key)
            log.commit(group, topic, batch[-1].offset + 1)
            done += len(batch)
            progressed = True
        if not progressed:
            break
        await asyncio.sleep(0)
    return done
