"""The feedback reader's loop without a broker: a fake consumer stands in for aiokafka."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from streams.broadcast import TopicBroadcast
from streams.kafka_access import KafkaAccess
from streams.runtime import Record

pytestmark = pytest.mark.timeout(20)


class FakeConsumer:
    """Two partitions; one fetch with three records, then nothing."""

    seeks: ClassVar[list[tuple[int, int]]] = []

    def __init__(self, **_: Any) -> None:
        self.fetches = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assign(self, tps: list[Any]) -> None:
        self.tps = tps

    async def offsets_for_times(self, wanted: dict[Any, int]) -> dict[Any, Any]:
        return {tp: (SimpleNamespace(offset=5) if tp.partition == 0 else None) for tp in wanted}

    def seek(self, tp: Any, offset: int) -> None:
        FakeConsumer.seeks.append((tp.partition, offset))

    async def seek_to_end(self, *tps: Any) -> None:
        FakeConsumer.seeks += [(tp.partition, -1) for tp in tps]

    async def position(self, tp: Any) -> int:
        return 5 if tp.partition == 0 else 9  # the window's start; partition 1: its end

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tp: FakeConsumer.ends[tp.partition] for tp in tps}

    ends: ClassVar[dict[int, int]] = {0: 8, 1: 9}

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        self.fetches += 1
        if self.fetches > 1:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        tp = self.tps[0]
        msg = [
            SimpleNamespace(value=v, key=b"k", offset=5 + i, timestamp=1)
            for i, v in enumerate([b"poison", b"ok1", b"ok2"])
        ]
        return {tp: msg}


async def test_replays_from_the_window_skips_a_failing_record_and_keeps_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aiokafka

    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", FakeConsumer)
    learned: list[Record] = []

    def learn(rec: Record) -> None:
        if rec.value == b"poison":
            raise RuntimeError("bad posterior input")
        learned.append(rec)

    reader = TopicBroadcast(KafkaAccess("127.0.0.1:9"), "t.feedback", 600.0, learn)
    monkeypatch.setattr(reader, "_partition_count", lambda: 2)
    task = asyncio.create_task(reader.run())
    for _ in range(100):
        if len(learned) == 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [r.value for r in learned] == [b"ok1", b"ok2"]
    assert [(r.partition, r.offset) for r in learned] == [(0, 6), (0, 7)]
    # partition 0 from the offset of the window's start, partition 1 (nothing that recent)
    # from its end
    assert sorted(FakeConsumer.seeks) == [(0, 5), (1, -1)]
    assert reader.records == 3


async def test_caught_up_waits_for_what_the_topic_held(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebalance waits until the answers read-back has learned every answer published so
    far; a reader that never gets there (or never started) says so after the timeout."""
    import aiokafka

    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", FakeConsumer)
    monkeypatch.setattr(FakeConsumer, "ends", {0: 8, 1: 9})
    monkeypatch.setattr(FakeConsumer, "seeks", [])  # the other test reads the class's list
    learned: list[Record] = []
    reader = TopicBroadcast(KafkaAccess("127.0.0.1:9"), "t.recs", 600.0, learned.append)
    monkeypatch.setattr(reader, "_partition_count", lambda: 2)
    assert await reader.caught_up(0.05) is False  # not reading yet
    task = asyncio.create_task(reader.run())
    try:
        assert await reader.caught_up(5.0) is True
        assert len(learned) == 3 and reader.positions == {0: 8, 1: 9}
        monkeypatch.setattr(FakeConsumer, "ends", {0: 10, 1: 9})  # two more, never fetched
        assert await reader.caught_up(0.2) is False
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
