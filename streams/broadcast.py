"""Readers outside the scorer group, on every partition of a topic, starting some seconds
back: what each scorer must see from all partitions, not only its group's share.

- Feedback: the CTR posterior is per item and lives in each scorer's memory. Learning only
  from its own partitions, each of N scorers saw 1/N of the clicks, and a restarted scorer
  started from the prior. Every scorer reads all feedback and relearns the last window at
  start; the group path keeps owning dead letters and the feedback metrics.
- Recommendations: the request_ids every scorer has answered, so a request delivered again
  after a failover (a scorer killed before it committed) is not answered twice.

No group, no commits: a reader keeps its positions in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from streams.kafka_access import KafkaAccess
from streams.runtime import Record

log = logging.getLogger(__name__)

CHUNK = 20  # records per fetch: learning yields the event loop every ~2 ms (91 us a record)
# how long the broker may hold a fetch to fill it: without it every few records arriving
# cost a fetch round trip (hundreds a second per reader at 500 requests/s), CPU the
# scorer's requests and the broker then lack on a small machine
FETCH_WAIT_MS = 100
# what a fetch waits for before the broker answers it (or FETCH_WAIT_MS passed)
FETCH_MIN_BYTES = 256 * 1024


class TopicBroadcast:
    """Reads `topic` from every partition (from `replay_s` ago, then live) into `learn`, at
    most `chunk` records per fetch (the loop is given back for as long as they took); the
    broker holds a fetch up to FETCH_WAIT_MS to fill it."""

    def __init__(
        self,
        access: KafkaAccess,
        topic: str,
        replay_s: float,
        learn: Callable[[Record], object],
        retry_s: float = 5.0,
        chunk: int = CHUNK,
    ) -> None:
        self.access = access
        self.topic = topic
        self.replay_s = replay_s
        self.learn = learn
        self.retry_s = retry_s
        self.chunk = chunk
        self.records = 0
        # per partition, the next offset to learn from (set at the seek, moved after learning)
        self.positions: dict[int, int] = {}
        self._consumer: Any = None  # the live consumer and its partitions, while reading
        self._tps: list[Any] = []

    async def caught_up(self, timeout_s: float) -> bool:
        """Wait until this reader has learned every record the topic held when called (at most
        `timeout_s`, then False): before a scorer answers requests of partitions it was just
        given, the answers their previous owner published are known."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._consumer is None:  # not reading yet (starting, or restarting)
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        try:
            ends = await asyncio.wait_for(
                self._consumer.end_offsets(self._tps), max(deadline - loop.time(), 0.01)
            )
        except Exception:  # a broker error or the wait: not known to be caught up
            return False
        while any(self.positions.get(tp.partition, -1) < end for tp, end in ends.items()):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def run(self) -> None:
        """Read until cancelled; a failure is logged and the reader starts again (from where
        it was: the offsets it reached are kept), never taking the worker down."""
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the worker must go on serving: retry later
                log.warning("%s reader: %s; restarting in %.0f s", self.topic, exc, self.retry_s)
                await asyncio.sleep(self.retry_s)

    async def _read(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            **self.access.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=FETCH_WAIT_MS,
            fetch_min_bytes=FETCH_MIN_BYTES,
        )
        await consumer.start()
        try:
            tps = await self._partitions(TopicPartition)
            consumer.assign(tps)
            positions = self.positions
            await self._seek(consumer, tps)
            for tp in tps:  # where the seek put a partition with nothing to learn yet
                if tp.partition not in positions:
                    positions[tp.partition] = await consumer.position(tp)
            self._consumer, self._tps = consumer, tps
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=self.chunk)
                t0 = time.perf_counter()
                for tp, msgs in batch.items():
                    for m in msgs:
                        rec = Record(
                            self.topic, m.value, m.key, tp.partition, m.offset, m.timestamp
                        )
                        try:
                            self.learn(rec)
                        except Exception as exc:  # one record must not stall the reader
                            log.warning(
                                "%s reader: skipped %s:%d (%s)", self.topic, tp, m.offset, exc
                            )
                        self.records += 1
                    positions[tp.partition] = msgs[-1].offset + 1
                # give the loop back for as long as learning held it: a replay takes at most
                # about half of the scorer's time while requests wait (live feedback: ~0)
                await asyncio.sleep(time.perf_counter() - t0)
        finally:
            self._consumer = None
            await consumer.stop()

    async def _partitions(self, tp_cls: Any) -> list[Any]:
        """Every partition of the topic (the workers create it before they start)."""
        for _ in range(30):
            n = await asyncio.to_thread(self._partition_count)
            if n:
                return [tp_cls(self.topic, p) for p in range(n)]
            await asyncio.sleep(1.0)
        raise RuntimeError(f"topic {self.topic} has no partitions")

    def _partition_count(self) -> int:
        """The topic's partition count from the broker's metadata (aiokafka's consumer only
        knows topics it subscribed to or was assigned)."""
        from streams.broker import admin_client, partition_counts

        admin = admin_client(self.access, timeout_s=10.0)
        try:
            return partition_counts(admin, [self.topic]).get(self.topic, 0)
        finally:
            admin.close()

    async def _seek(self, consumer: Any, tps: list[Any]) -> None:
        """Resume where this reader was; otherwise `replay_s` back (the end if 0 or older)."""
        positions = self.positions
        fresh = [tp for tp in tps if tp.partition not in positions]
        for tp in tps:
            if tp.partition in positions:
                consumer.seek(tp, positions[tp.partition])
        if not fresh:
            return
        if self.replay_s <= 0:
            await consumer.seek_to_end(*fresh)
            return
        since = int((time.time() - self.replay_s) * 1000)
        found = await consumer.offsets_for_times({tp: since for tp in fresh})
        for tp in fresh:
            at = found.get(tp)
            if at is None:  # nothing that recent: only what comes from now on
                await consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, at.offset)
