"""Faust app factory: binds broker-independent handlers (streams.runtime) as Faust agents.

Each handler becomes one agent over raw-bytes topics. The agent acks (and so lets Faust
commit) a batch's offsets only after the handler returned and the records it emitted were
acknowledged by the broker: at-least-once delivery, made exactly-once in effect by
idempotent handlers.

Batches reach the agent one of two ways:

- a *batch lane* (`BatchLane`), when every handler of the app has `direct_batches =
  True`: the consumer loop (`_fast_drain_messages`) hands the records of each fetched
  partition straight to the lanes of its topic as one `LaneChunk`, and the agent takes
  what is pending (about `batch_size` records) at once — no Faust Message, Event, channel
  queue, stream iteration, sensor call or ack coroutine per record;
- otherwise `stream.take_events` (Faust's own per-message path).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import faust

from streams.config import Settings
from streams.consumer_fixes import (
    FETCH_ATTR,
    FETCH_BATCH_BYTES,
    FetchPolicy,
    install_consumer_fixes,
)
from streams.inloop_consumer import use_in_loop_consumer
from streams.kafka_access import KafkaAccess
from streams.runtime import Emit, Handler, Record

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, group: str, *, batch_fetches: bool = False, **overrides: Any
) -> faust.App:
    """A Faust app (consumer group `<prefix>-<group>`) on the configured broker.

    `batch_fetches`: for a worker nobody waits on (no scorer role), the broker holds each
    fetch until `FETCH_BATCH_BYTES` or `fetch_batch_ms`: fewer, fuller fetches and store
    writes, at most that much later."""
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
        # Faust's 60 s default would leave a crashed worker's partitions (a scorer's
        # requests) unanswered for a minute before the group hands them to another worker;
        # heartbeats every second let the others notice a rebalance (a worker that left)
        # within a second instead of three
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": min(1.0, settings.session_timeout_s / 3),
        "producer_acks": -1,
        "broker_commit_every": 5000,
        # answers/updates not yet committed are redone after a rebalance or crash: commit
        # often (4 commit requests/s cost nothing measurable in bench_ingest)
        "broker_commit_interval": 0.25,
        "stream_buffer_maxsize": 8192,
        "broker_max_poll_records": 2000,
        "datadir": str(settings.state_dir / "faust" / group),
    }
    credentials = KafkaAccess.of(settings).faust_credentials()
    if credentials is not None:
        conf["broker_credentials"] = credentials
    conf.update(overrides)
    # Faust creates datadir without parents: make sure a fresh state dir works
    Path(str(conf["datadir"])).parent.mkdir(parents=True, exist_ok=True)
    install_fast_drain()
    install_consumer_fixes()
    use_in_loop_consumer(not settings.consumer_thread)
    app = faust.App(f"{settings.topic_prefix}-{group}", **conf)
    if batch_fetches and settings.fetch_batch_ms > 0:
        fetch = FetchPolicy(settings.fetch_batch_ms, FETCH_BATCH_BYTES)
    else:
        fetch = FetchPolicy(settings.fetch_max_wait_ms)
    setattr(app, FETCH_ATTR, fetch)
    return app


async def _fast_drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - hot loop
    """Faust's `Consumer._drain_messages` (faust-streaming 0.11-0.15), minus its per-message
    `wait_first(callback, suspend_flow)`: that call creates and cancels four asyncio tasks
    per message, ~40% of a feature worker's CPU. While the flow is not suspended the
    callback is awaited directly; when it is (rebalance), the original wait_first path
    runs, and a rebalance cancels this task through `_stop_fetcher` as before. When batch
    lanes are bound, each fetch goes through `_drain_fetch_with_lanes` instead."""
    from faust.transport.consumer import CONSUMER_FETCHING

    registry = lane_registry(self.app)
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
    num_since_yield = 0
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            if registry.by_topic:
                await _drain_fetch_with_lanes(self, registry.by_topic)
                unset_flag(CONSUMER_FETCHING)
                continue
            ait = getmany(timeout=1.0)
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > 100:
                        await asyncio.sleep(0)
                        num_since_yield = 0
                    await _deliver_one(self, tp, message)
                unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            return
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


async def _drain_fetch_with_lanes(
    self: Any, by_topic: dict[str, tuple[BatchLane, ...]]
) -> None:  # pragma: no cover - hot loop, covered by the worker integration tests
    """One fetch (what Faust's `Consumer.getmany` + the drain loop do), with the records of
    lane topics handed over per partition as one `LaneChunk` — no `Message` per record.

    Per lane partition: the fetched end offset goes to the monitor, records below the
    read offset are skipped, offset gaps are registered (`_add_gap`) as the per-message
    loop does, and the read offset moves to the last record. While the flow is suspended
    (a rebalance) the chunk is dropped and its partition sought back to it (`fetch_again`).
    Lanes are only enabled when every agent of the app has one (`LaneRegistry`); records of
    other topics (Faust's own leader topic) take the per-message path.
    """
    records, active = await self._wait_next_records(1.0)
    if not records or self.should_stop:
        return
    if not self.flow_active:  # a rebalance began while this fetch waited
        for tp, recs in records.items():
            if tp.topic in by_topic:
                await fetch_again(self, tp, recs)
        return
    app = self.app
    generation = app.consumer_generation_id
    get_read_offset = self._read_offset.__getitem__
    acks_enabled_for = app.topics.acks_enabled_for
    flow_control_active = app.flow_control.is_active
    suspended = self.suspend_flow.is_set
    buffered = self._buffered_partitions
    filled: set[BatchLane] = set()
    rest = {}
    for tp, recs in records.items():
        lanes = by_topic.get(tp.topic)
        if lanes is None:  # a topic of Faust's own (the leader topic): its usual path
            rest[tp] = recs
            continue
        if not recs or not (active is None or tp in active or tp in buffered):
            continue
        if app.consumer_generation_id != generation:
            break
        app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        r_offset = get_read_offset(tp)
        if r_offset is not None and recs[0].offset < r_offset:
            recs = [r for r in recs if r.offset >= r_offset]
            if not recs:
                continue
        if suspended() or not flow_control_active():
            await fetch_again(self, tp, recs)
            continue
        if acks_enabled_for(tp.topic) and (
            (r_offset and recs[0].offset - r_offset > 1)
            or recs[-1].offset - recs[0].offset != len(recs) - 1
        ):
            last = r_offset
            for r in recs:
                if last and r.offset - last > 1:
                    await self._add_gap(tp, last + 1, r.offset)
                last = r.offset
        self._read_offset[tp] = recs[-1].offset
        chunk = LaneChunk(tp, recs, generation, len(lanes), self)
        for lane in lanes:
            lane.put(chunk)
            filled.add(lane)
    if self._commit_every is not None and self._n_acked >= self._commit_every:
        self._n_acked = 0
        await self.commit()
    for lane in filled:
        lane.publish()
    if rest:
        await _deliver_per_message(self, rest, active, generation)
    for lane in filled:
        await lane.wait_for_space()


async def fetch_again(consumer: Any, tp: Any, records: Sequence[Any]) -> None:
    """Seek a partition back to the first of `records` not read yet: they were fetched
    while a rebalance suspends the flow and are dropped. The rebalance's own seek to the
    committed offset brings them back only if it runs later, but Faust resumes partitions
    and seeks before it resumes the flow: a fetch landing in between was lost, the position
    already past it (a scorer left ~1 s of requests unanswered in ~1 of 12 failovers). A
    partition no longer assigned is left alone: its new owner starts from the committed
    offset."""
    r_offset = consumer._read_offset[tp]
    unread = [r.offset for r in records if r_offset is None or r.offset >= r_offset]
    if not unread:
        return
    try:
        await seek_in_thread(consumer, tp, unread[0])
    except Exception as exc:  # IllegalStateError: revoked meanwhile
        log.debug("not fetching %s again from %d: %r", tp, unread[0], exc)
    else:
        log.info("rebalance: fetching %s again from offset %d", tp, unread[0])


async def seek_in_thread(consumer: Any, tp: Any, offset: int) -> None:
    """Faust's `Consumer.seek`, run in the consumer's thread: Faust's own calls aiokafka's
    seek from the app's loop, which completes futures of the thread's loop."""
    thread = consumer._thread
    await thread.call_thread(thread._ensure_consumer().seek, tp, offset)
    consumer._read_offset[tp] = offset


async def _deliver_per_message(
    self: Any, records: Any, active: Any, generation: int
) -> None:  # pragma: no cover - hot loop
    """The non-lane records of a fetch through Faust's conductor, one message at a time
    (the body of `Consumer.getmany` and of the fast drain loop)."""
    num_since_yield = 0
    for tp, record in self.scheduler.iterate(records):
        if not self.flow_active or self.app.consumer_generation_id != generation:
            break
        if not (active is None or tp in active or tp in self._buffered_partitions):
            continue
        self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        message = self._to_message(tp, record)
        num_since_yield += 1
        if num_since_yield > 100:
            await asyncio.sleep(0)
            num_since_yield = 0
        await _deliver_one(self, tp, message)


async def _deliver_one(self: Any, tp: Any, message: Any) -> None:  # pragma: no cover - hot loop
    """One message through Faust's conductor as its drain loop does it: skip what was read,
    record an offset gap, commit every `commit_every` acks, await the callback (raced with
    a suspended flow, so a rebalance can interrupt it), then advance the read offset."""
    offset = message.offset
    r_offset = self._read_offset[tp]
    if r_offset is not None and offset < r_offset:
        return
    gap = offset - (r_offset or 0)
    if gap > 1 and r_offset and self.app.topics.acks_enabled_for(message.topic):
        await self._add_gap(tp, r_offset + 1, offset)
    if self._commit_every is not None and self._n_acked >= self._commit_every:
        self._n_acked = 0
        await self.commit()
    if self.suspend_flow.is_set():
        await self.wait_first(self.callback(message), self.suspend_flow.wait())
    else:
        await self.callback(message)
    self._read_offset[tp] = offset


def install_fast_drain() -> bool:
    """Replace Faust's per-message consumer loop by `_fast_drain_messages` (idempotent);
    only on the faust-streaming versions it was copied from. Returns whether it is active."""
    from faust.transport import consumer as faust_consumer

    cls = faust_consumer.Consumer
    if getattr(cls, "_drain_messages", None) is _fast_drain_messages:
        return True
    version = tuple(int(x) for x in faust.__version__.split(".")[:2])
    needed = ("_wait_next_records", "_to_message", "_add_gap", "highwater", "ack")
    if (
        not (0, 11) <= version < (0, 16)
        or not hasattr(faust_consumer, "CONSUMER_FETCHING")
        or not all(hasattr(cls, name) for name in needed)
    ):
        log.warning("faust %s: keeping Faust's own consumer loop", faust.__version__)
        return False
    cls._drain_messages = _fast_drain_messages  # type: ignore[method-assign]
    return True


class LaneChunk:
    """The records of one partition from one fetch: the unit a lane tracks and acks.

    While a lane agent works on it, it sits in Faust's set of in-flight messages (what
    rebalances and shutdown wait for), with the `acked`/`refcount` attributes Faust reads
    there. `refcount` counts the lanes that still hold it (several agents of one app may
    read a topic); each lane ends its hold with `ack_chunk` (processed) or `release_chunk`
    (dropped unprocessed). The last one untracks it, and acks its offsets only if no lane
    dropped it.
    """

    __slots__ = (
        "__weakref__",
        "acked",
        "consumer",
        "dropped",
        "generation_id",
        "records",
        "refcount",
        "tp",
    )

    def __init__(
        self,
        tp: Any,
        records: list[Any],
        generation_id: int,
        refcount: int,
        consumer: Any = None,
    ) -> None:
        self.tp = tp
        self.records = records
        self.generation_id = generation_id
        self.refcount = refcount
        self.consumer = consumer  # the Faust consumer that fetched it
        self.acked = False
        self.dropped = False

    def __repr__(self) -> str:
        return f"<LaneChunk {self.tp} {len(self.records)} records>"


def ack_chunk(consumer: Any, chunk: LaneChunk) -> bool:
    """One lane processed `chunk`; when it was the last holder (and none dropped it),
    mark every record's offset acked exactly as `Consumer.ack` does per message (so Faust
    may commit past them). Returns whether the offsets were acked."""
    return _end_hold(consumer, chunk, processed=True)


def release_chunk(consumer: Any, chunk: LaneChunk) -> None:
    """One lane drops `chunk` unprocessed (old generation, rebalance, failed batch): its
    offsets are never acked (Faust fetches the records again from the committed offset);
    the last holder untracks it, so rebalances and shutdown do not wait for it."""
    _end_hold(consumer, chunk, processed=False)


def _end_hold(consumer: Any, chunk: LaneChunk, processed: bool) -> bool:
    from faust.types.tuples import ack_lock
    from mode.utils.futures import notify

    with ack_lock:
        if not processed:
            chunk.dropped = True
        chunk.refcount -= 1
        if chunk.refcount > 0 or chunk.acked:
            return False
        unacked = consumer._unacked_messages
        unacked.discard(chunk)
        if chunk.dropped:
            notify(consumer._waiting_for_ack)
            return False
        chunk.acked = True
        tp = chunk.tp
        if consumer.app.topics.acks_enabled_for(tp.topic):
            committed = consumer._committed_offset[tp]
            index = consumer._acked_index[tp]
            acked = consumer._acked[tp]
            n = 0
            for r in chunk.records:
                offset = r.offset
                if (committed is None or offset >= committed) and offset not in index:
                    index.add(offset)
                    acked.append(offset)
                    n += 1
            consumer._n_acked += n
        notify(consumer._waiting_for_ack)
        return True


class BatchLane:
    """Fetched records of one batch handler's topics, waiting for its agent.

    The consumer loop `put()`s one `LaneChunk` per fetched partition and calls `publish()`
    after each fetch; the agent `take()`s chunks up to about n records as one batch. The
    loop waits while `maxsize` or more records are pending (backpressure, like Faust's full
    channel queue), and `clear()` — registered with `app.flow_control`, which calls it when
    a rebalance starts, as it clears the channel queues — drops what is pending
    (`release_chunk`): those records are not acked, so they are fetched again from the
    committed offset.
    """

    def __init__(self, topics: Sequence[str], maxsize: int) -> None:
        self.topics = tuple(topics)
        self.maxsize = maxsize
        self.enabled = False  # set by the registry: on only when every agent of the app has a lane
        self.pending: list[LaneChunk] = []
        self.n_pending = 0
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def put(self, chunk: LaneChunk) -> None:
        """Queue one chunk (consumer loop)."""
        self.pending.append(chunk)
        self.n_pending += len(chunk.records)

    def publish(self) -> None:
        """Wake the agent; close the gate when the lane is full (consumer loop)."""
        if self.pending:
            self._ready.set()
            if self.n_pending >= self.maxsize:
                self._space.clear()

    async def wait_for_space(self) -> None:
        """Return once fewer than `maxsize` records are pending (consumer loop)."""
        await self._space.wait()

    async def take(self, n: int) -> list[LaneChunk]:
        """Whole chunks, oldest first, until they hold `n` records or more or the lane is
        empty; waits until there is one (agent)."""
        while not self.pending:
            self._ready.clear()
            await self._ready.wait()
        count = 0
        k = 0
        for chunk in self.pending:
            if count >= n:
                break
            count += len(chunk.records)
            k += 1
        batch = self.pending[:k]
        del self.pending[:k]
        self.n_pending -= count
        if self.n_pending < self.maxsize:
            self._space.set()
        return batch

    def clear(self) -> None:
        """Drop everything pending (a rebalance started), ending this lane's hold."""
        for chunk in self.pending:
            if chunk.consumer is not None:
                release_chunk(chunk.consumer, chunk)
        self.pending.clear()
        self.n_pending = 0
        self._ready.clear()
        self._space.set()


class LaneRegistry:
    """The batch lanes of one app and which topics they own (`by_topic`)."""

    def __init__(self) -> None:
        self.bindings: list[tuple[tuple[str, ...], BatchLane | None]] = []
        self.by_topic: dict[str, tuple[BatchLane, ...]] = {}

    def bind(self, topics: Sequence[str], lane: BatchLane | None) -> None:
        """Record an agent over `topics` (`lane` None: a take_events agent) and recompute
        `by_topic`: lanes are enabled only when every agent of the app has one, so a fetch
        is either all lanes or all Faust's per-message path (never a mix to keep apart)."""
        self.bindings.append((tuple(topics), lane))
        all_lanes = all(b is not None for _, b in self.bindings)
        by_topic: dict[str, list[BatchLane]] = {}
        for _, lane_ in self.bindings:
            if lane_ is not None:
                lane_.enabled = all_lanes
                if all_lanes:
                    for t in lane_.topics:
                        by_topic.setdefault(t, []).append(lane_)
        self.by_topic = {t: tuple(v) for t, v in by_topic.items()}


def lane_registry(app: Any) -> LaneRegistry:
    """The app's lane registry (created on first use)."""
    reg = getattr(app, "_slatestream_lanes", None)
    if reg is None:
        reg = LaneRegistry()
        app._slatestream_lanes = reg
    return reg


async def run_lane(app: faust.App, handler: Handler, lane: BatchLane, batch_size: int) -> None:
    """The agent loop of a batch lane: take, track, handle, publish, then ack.

    Chunks are tracked as in flight when taken (Faust's rebalance and shutdown wait for
    them) and acked, which lets Faust commit their offsets, only after the handler returned
    and its emits were acknowledged. Chunks fetched in an older consumer generation (or
    taken while a rebalance suspends the flow) are released unacked: Faust fetches them
    again from the committed offset. If the handler raises, the batch is released (not
    acked: its partitions commit no further until they are fetched again) and the error
    ends the agent, which Faust's supervisor restarts.

    A handler with `overlap_batches = True` (its `handle` calls may overlap and complete
    their writes in call order; a call whose predecessor failed raises) gets the next
    batch while the previous one is still in flight, at most two at once: batch N+1 is
    decoded while N's write runs. Batches are still finished — published, then acked — one
    at a time in order; when one fails, the one behind it is cancelled and released too.
    """
    consumer = app.consumer
    if getattr(handler, "overlap_batches", False):
        await _run_lane_overlapped(app, handler, lane, batch_size)
        return
    while True:
        batch = await _take_batch(app, lane, batch_size)
        if batch is not None:
            chunks, records = batch
            await _finish(app, consumer, handler.handle(records), chunks)


async def _run_lane_overlapped(
    app: faust.App, handler: Handler, lane: BatchLane, batch_size: int
) -> None:
    """`run_lane` for a handler with `overlap_batches`: up to two batches in flight."""
    consumer = app.consumer
    inflight: deque[tuple[asyncio.Future[list[Emit]], list[LaneChunk]]] = deque()
    try:
        while True:
            if inflight and not lane.pending:
                # nothing to overlap with: finish (ack) now rather than after the next fetch
                await _finish(app, consumer, *inflight.popleft())
            batch = await _take_batch(app, lane, batch_size)
            if batch is None:
                continue
            chunks, records = batch
            inflight.append((asyncio.ensure_future(handler.handle(records)), chunks))
            if len(inflight) > 1:
                await _finish(app, consumer, *inflight.popleft())
    finally:
        # a batch failed or the agent stops: what is still in flight is never acked
        for task, chunks in inflight:
            task.cancel()
            for c in chunks:
                release_chunk(consumer, c)


async def _take_batch(
    app: faust.App, lane: BatchLane, batch_size: int
) -> tuple[list[LaneChunk], list[Record]] | None:
    """The next batch of a lane, its chunks tracked as in flight; None when every chunk
    taken was stale (older generation, suspended flow) and released."""
    consumer = app.consumer
    taken = await lane.take(batch_size)
    generation = app.consumer_generation_id
    active = app.flow_control.is_active()
    chunks = []
    for c in taken:
        if active and c.generation_id == generation:
            chunks.append(c)
        else:
            release_chunk(consumer, c)
    if not chunks:
        return None
    unacked: Any = consumer.unacked  # a WeakSet of in-flight messages (and chunks)
    monitor = app.monitor
    now = time.monotonic()
    for c in chunks:
        unacked.add(c)
        if monitor is not None:  # Faust's "stream is idle" check reads this
            monitor.stream_inbound_time[c.tp] = now
    records = [
        Record(
            r.topic,
            r.value if r.value is not None else b"",
            r.key,
            r.partition,
            r.offset,
            r.timestamp,
        )
        for c in chunks
        for r in c.records
    ]
    return chunks, records


async def _finish(
    app: faust.App, consumer: Any, handled: Awaitable[list[Emit]], chunks: list[LaneChunk]
) -> None:
    """Wait for a batch's handler, publish its emits, then ack its chunks; release them
    unacked (and re-raise) if any of that fails or is cancelled."""
    try:
        emits = await handled
        await publish(app, emits)
    except BaseException:
        for c in chunks:
            release_chunk(consumer, c)
        raise
    for c in chunks:
        ack_chunk(consumer, c)


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
    `tick()` coroutine, whose emits are published, and its optional
    `on_partitions_revoked({(topic, partition)})` on rebalances); returns the agent."""
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

    lane = None
    # only the fast consumer loop feeds lanes: without it, take_events as before
    if getattr(handler, "direct_batches", False) and install_fast_drain():
        lane = BatchLane(handler.topics, int(app.conf.stream_buffer_maxsize))
        # a rebalance clears the lane as it clears the channel queues
        app.flow_control.manage_queue(lane)  # type: ignore[arg-type]
    lane_registry(app).bind(handler.topics, lane)

    async def process(stream: Any) -> None:
        if lane is not None and lane.enabled:
            # register the topics with the conductor (what take_events' aiter does), so
            # the consumer subscribes; the messages themselves come through the lane
            aiter(stream.channel)
            await run_lane(app, handler, lane, batch_size)
            return
        async for events in stream.take_events(batch_size, within=within_s):
            records = [to_record(e) for e in events]
            emits = await handler.handle(records)
            await publish(app, emits)

    process.__name__ = f"{handler.name}_agent"
    agent = app.agent(channel, name=handler.name)(process)
    on_revoked = getattr(handler, "on_partitions_revoked", None)
    if on_revoked is not None:
        # stateful handlers (the joiner) drop partitions they no longer own, so a
        # rebalance never leaves two workers writing the same partition's state

        async def revoked(sender: Any, /, *args: Any, signal: Any = None, **_: Any) -> None:
            await on_revoked({(tp.topic, tp.partition) for tp in args[0]})

        revoked.__name__ = f"{handler.name}_revoked"
        app.on_partitions_revoked.connect(revoked)
    tick = getattr(handler, "tick", None) or getattr(getattr(handler, "inner", None), "tick", None)
    if tick is not None:
        # time-driven work (window closing, training steps, snapshots) when no events arrive

        async def on_timer() -> None:
            await publish(app, await tick())

        on_timer.__name__ = f"{handler.name}_tick"
        app.timer(interval=tick_interval_s)(on_timer)
    return agent
