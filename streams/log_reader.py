"""Read Kafka partitions from their first record up to the end offsets seen at the start.

`features rebuild` replays the feature topics this way and `dlq` reads the dead letters:
records produced while reading are left for the next run, so a read always ends.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from streams.errors import SlatestreamError
from streams.runtime import Record


async def read_to_end(
    consumer: Any, tps: Sequence[Any], *, batch: int, timeout_s: float = 30.0
) -> AsyncIterator[list[Record]]:
    """Batches of the records of `tps` (aiokafka TopicPartitions) on a started consumer
    without a group, from the beginning to the end offsets read first. SlatestreamError when
    no record arrives for `timeout_s` while some are still due."""
    consumer.assign(list(tps))
    await consumer.seek_to_beginning(*tps)
    first = await consumer.beginning_offsets(list(tps))
    ends = await consumer.end_offsets(list(tps))
    # a partition that retention emptied (or that never held a record) has nothing to wait for
    todo = {tp: end for tp, end in ends.items() if end > first[tp]}
    deadline = time.monotonic() + timeout_s
    while todo:
        got = await consumer.getmany(*todo, timeout_ms=500, max_records=batch)
        if not got and time.monotonic() > deadline:
            names = sorted({tp.topic for tp in todo})
            raise SlatestreamError(f"no records from {', '.join(names)} for {timeout_s:.0f}s")
        records: list[Record] = []
        for tp, msgs in got.items():
            end = todo.get(tp)
            if end is None:
                continue
            for m in msgs:
                if m.offset < end:
                    records.append(
                        Record(m.topic, m.value or b"", m.key, m.partition, m.offset, m.timestamp)
                    )
            if msgs and msgs[-1].offset + 1 >= end:
                del todo[tp]
        if records:
            deadline = time.monotonic() + timeout_s
            yield records
