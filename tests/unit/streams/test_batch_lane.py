"""Batch lanes (streams.app): which agents get one, and the take/ack/drop rules of run_lane."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams.app import BatchLane, LaneRegistry, create_app, lane_registry, run_lane
from streams.config import Settings
from streams.runtime import Emit, Record

pytestmark = pytest.mark.timeout(30)


def test_registry_enables_lanes_only_when_every_agent_has_one() -> None:
    reg = LaneRegistry()
    features = BatchLane(["p.interactions", "p.items"], 10)
    reg.bind(features.topics, features)
    assert features.enabled and reg.by_topic["p.items"] == (features,)

    # a second lane agent on a shared topic: both keep their lanes, the topic fans out
    joiner = BatchLane(["p.interactions", "p.impressions"], 10)
    reg.bind(joiner.topics, joiner)
    assert features.enabled and joiner.enabled
    assert set(reg.by_topic["p.interactions"]) == {features, joiner}

    # any take_events agent, even on other topics: every agent takes Faust's path
    reg.bind(["p.requests"], None)
    assert not joiner.enabled and not features.enabled
    assert reg.by_topic == {}


def test_bind_handler_gives_direct_batch_handlers_a_lane(tmp_path: Path) -> None:
    from streams.app import bind_handler

    class Direct:
        name = "direct"
        topics = ("x.interactions",)
        direct_batches = True

        async def handle(self, records: object) -> list[Emit]:
            return []

    class Plain(Direct):
        name = "plain"
        topics = ("x.requests",)
        direct_batches = False

    app = create_app(Settings(kafka_bootstrap="127.0.0.1:9", state_dir=tmp_path), group="l")
    bind_handler(app, Direct())  # type: ignore[arg-type]
    reg = lane_registry(app)
    assert list(reg.by_topic) == ["x.interactions"]
    bind_handler(app, Plain())  # type: ignore[arg-type]
    assert reg.by_topic == {}  # a mixed app keeps Faust's per-message path for all


@dataclass
class Rec:
    """Stands in for an aiokafka ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp: int = 1500


def _chunk(partition: int, offsets: list[int], generation: int = 1, refcount: int = 1) -> Any:
    from faust.types import TP

    from streams.app import LaneChunk

    recs = [Rec("t", partition, o, f"v{o}".encode()) for o in offsets]
    return LaneChunk(TP("t", partition), recs, generation, refcount)


def _filled_lane(*chunks: Any) -> BatchLane:
    """A lane (topic t, room for 100) holding `chunks`, its agent woken."""
    lane = BatchLane(["t"], 100)
    for c in chunks:
        lane.put(c)
    lane.publish()
    return lane


async def test_lane_take_publish_backpressure_and_clear() -> None:
    lane = BatchLane(["t"], maxsize=3)
    taker = asyncio.ensure_future(lane.take(2))
    await asyncio.sleep(0)
    assert not taker.done()  # nothing pending: the agent waits
    a, b, c = _chunk(0, [1]), _chunk(1, [7, 8]), _chunk(0, [2])
    for ch in (a, b, c):
        lane.put(ch)
    lane.publish()
    # whole chunks until they hold >= 2 records
    assert await taker == [a, b]
    await asyncio.wait_for(lane.wait_for_space(), 1)  # 1 pending < 3
    d = _chunk(2, [4, 5, 6])
    lane.put(d)
    lane.publish()
    gate = asyncio.ensure_future(lane.wait_for_space())
    await asyncio.sleep(0)
    assert not gate.done()  # 4 records pending >= 3: the consumer loop waits
    assert await lane.take(10) == [c, d]
    await asyncio.wait_for(gate, 1)
    lane.put(_chunk(0, [3]))
    lane.publish()
    lane.clear()  # a rebalance: what is pending is dropped, never handed out
    assert lane.n_pending == 0
    taker = asyncio.ensure_future(lane.take(5))
    await asyncio.sleep(0)
    assert not taker.done()
    taker.cancel()


# --- run_lane and ack_chunk against a real (unstarted) Faust app ----------------------------


_apps: list[Any] = []


def _app(tmp_path: Path) -> Any:
    app = create_app(Settings(kafka_bootstrap="127.0.0.1:9", state_dir=tmp_path), group="lane")
    app.topics.acking_topics.add("t")  # what the conductor does for a subscribed topic
    app.flow_control.resume()
    app.consumer_generation_id = 1
    _apps.append(app)
    return app


@pytest.fixture(autouse=True)
def _close_consumer_loops() -> Iterator[None]:
    """Close the event loop each unstarted consumer made for its thread (else the garbage
    collector may finalise its self-pipe first and warn about a closed descriptor)."""
    yield
    while _apps:
        thread = getattr(_apps.pop().consumer, "_thread", None)
        loop = getattr(thread, "thread_loop", None)
        if loop is not None and not loop.is_closed():
            loop.close()


class Recorder:
    name = "rec"
    topics = ("t",)

    def __init__(self, app: Any, fail: bool = False) -> None:
        self.app = app
        self.fail = fail
        self.batches: list[Sequence[Record]] = []
        self.in_flight: list[int] = []

    async def handle(self, records: Sequence[Record]) -> list[Emit]:
        # while the handler runs, its chunks are in flight and nothing is acked
        consumer = self.app.consumer
        self.in_flight.append(len(consumer.unacked))
        assert not any(consumer._acked.values())
        self.batches.append(records)
        if self.fail:
            raise RuntimeError("boom")
        return [Emit("dlq", b"x", r.key) for r in records if r.value == b"v9"]


async def _run_until_idle(app: Any, handler: Recorder, lane: BatchLane) -> None:
    """Run the lane loop until it waits for more chunks, then stop it."""
    task = asyncio.ensure_future(run_lane(app, handler, lane, 100))
    for _ in range(200):
        await asyncio.sleep(0)
        if not lane.pending and not lane._ready.is_set():
            for _ in range(10):  # the last batch's publish and acks
                await asyncio.sleep(0)
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Emit]:
    out: list[Emit] = []

    async def publish(app: Any, emits: list[Emit]) -> None:
        out.extend(emits)

    monkeypatch.setattr("streams.app.publish", publish)
    return out


async def test_run_lane_tracks_handles_publishes_then_acks(
    tmp_path: Path, sent: list[Emit]
) -> None:
    from faust.types import TP

    app = _app(tmp_path)
    lane = _filled_lane(_chunk(0, [5, 6]), _chunk(1, [9]))
    handler = Recorder(app)
    await _run_until_idle(app, handler, lane)
    assert handler.in_flight == [2]  # two chunks in flight
    [batch] = handler.batches
    assert [(r.topic, r.partition, r.offset, r.value) for r in batch] == [
        ("t", 0, 5, b"v5"),
        ("t", 0, 6, b"v6"),
        ("t", 1, 9, b"v9"),
    ]
    assert batch[0].timestamp_ms == 1500
    assert [e.topic for e in sent] == ["dlq"]
    consumer = app.consumer
    assert not consumer.unacked
    assert consumer._acked[TP("t", 0)] == [5, 6] and consumer._acked[TP("t", 1)] == [9]
    assert consumer._n_acked == 3
    # Faust's own commit bookkeeping now commits past them
    assert consumer._new_offset(TP("t", 0)) == 7


async def test_chunk_shared_by_two_lanes_is_acked_by_the_last(tmp_path: Path) -> None:
    from faust.types import TP

    from streams.app import ack_chunk

    app = _app(tmp_path)
    chunk = _chunk(0, [1, 2], refcount=2)
    app.consumer.unacked.add(chunk)
    assert not ack_chunk(app.consumer, chunk)
    assert not app.consumer._acked[TP("t", 0)] and chunk in app.consumer.unacked
    assert ack_chunk(app.consumer, chunk)
    assert app.consumer._acked[TP("t", 0)] == [1, 2] and not app.consumer.unacked
    # offsets below the committed one are not acked again
    app.consumer._committed_offset[TP("t", 3)] = 10
    assert ack_chunk(app.consumer, _chunk(3, [9, 10]))
    assert app.consumer._acked[TP("t", 3)] == [10]


async def test_chunk_dropped_by_one_of_two_lanes_is_untracked_but_never_acked(
    tmp_path: Path,
) -> None:
    from faust.types import TP

    from streams.app import ack_chunk, release_chunk

    app = _app(tmp_path)
    consumer = app.consumer
    for first, second in ((ack_chunk, release_chunk), (release_chunk, ack_chunk)):
        chunk = _chunk(0, [1, 2], refcount=2)
        consumer.unacked.add(chunk)
        first(consumer, chunk)
        assert chunk in consumer.unacked  # the other lane still holds it
        second(consumer, chunk)
        assert chunk not in consumer.unacked and not chunk.acked
        assert not consumer._acked[TP("t", 0)] and consumer._n_acked == 0

    # a rebalance clears a lane whose chunk the other lane already processed: untracked
    chunk = _chunk(0, [3], refcount=2)
    chunk.consumer = consumer
    consumer.unacked.add(chunk)
    ack_chunk(consumer, chunk)
    lane = BatchLane(["t"], 10)
    lane.put(chunk)
    lane.clear()
    assert not consumer.unacked and consumer._n_acked == 0


async def test_run_lane_drops_old_generation_and_suspended_flow_unacked(
    tmp_path: Path, sent: list[Emit]
) -> None:
    app = _app(tmp_path)
    app.consumer_generation_id = 2
    lane = _filled_lane(_chunk(0, [1], generation=1), _chunk(1, [2], generation=2))
    handler = Recorder(app)
    await _run_until_idle(app, handler, lane)
    assert [[r.offset for r in b] for b in handler.batches] == [[2]]
    assert app.consumer._n_acked == 1

    app.flow_control.suspend()
    lane.put(_chunk(1, [3], generation=2))
    lane.publish()
    await _run_until_idle(app, handler, lane)
    assert len(handler.batches) == 1 and app.consumer._n_acked == 1


async def test_run_lane_failure_acks_nothing_and_untracks(tmp_path: Path, sent: list[Emit]) -> None:
    app = _app(tmp_path)
    lane = _filled_lane(_chunk(0, [1, 2]))
    with pytest.raises(RuntimeError, match="boom"):
        await run_lane(app, Recorder(app, fail=True), lane, 100)
    assert app.consumer._n_acked == 0 and not app.consumer.unacked


class Overlapping(Recorder):
    """A handler whose calls may overlap; each waits for the test to finish it."""

    overlap_batches = True

    def __init__(self, app: Any, fail_first: bool = False) -> None:
        super().__init__(app)
        self.fail_first = fail_first
        self.done: list[asyncio.Future[None]] = []

    async def handle(self, records: Sequence[Record]) -> list[Emit]:
        self.batches.append(records)
        fut = asyncio.get_running_loop().create_future()
        self.done.append(fut)
        await fut
        if self.fail_first and fut is self.done[0]:
            raise RuntimeError("write failed")
        return []


async def _spin(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_run_lane_overlaps_two_batches_and_acks_in_order(
    tmp_path: Path, sent: list[Emit]
) -> None:
    from faust.types import TP

    app = _app(tmp_path)
    consumer = app.consumer
    lane = _filled_lane(*(_chunk(0, offsets) for offsets in ([1, 2], [3], [4])))
    handler = Overlapping(app)
    task = asyncio.ensure_future(run_lane(app, handler, lane, 1))
    await _spin()
    # batch 2 was handed over while batch 1 runs; batch 3 waits (at most two in flight)
    assert [[r.offset for r in b] for b in handler.batches] == [[1, 2], [3]]
    handler.done[1].set_result(None)  # the second finishes first: nothing is acked yet
    await _spin()
    assert consumer._acked[TP("t", 0)] == [] and len(handler.batches) == 2
    handler.done[0].set_result(None)
    await _spin()
    assert consumer._acked[TP("t", 0)] == [1, 2, 3]
    assert [[r.offset for r in b] for b in handler.batches] == [[1, 2], [3], [4]]
    handler.done[2].set_result(None)  # the lane is empty: acked without waiting for more
    await _spin()
    assert consumer._acked[TP("t", 0)] == [1, 2, 3, 4] and not consumer.unacked
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_run_lane_overlapped_failure_releases_the_batch_behind_it(
    tmp_path: Path, sent: list[Emit]
) -> None:
    app = _app(tmp_path)
    lane = _filled_lane(_chunk(0, [1]), _chunk(0, [2]))
    handler = Overlapping(app, fail_first=True)
    task = asyncio.ensure_future(run_lane(app, handler, lane, 1))
    await _spin()
    assert len(handler.batches) == 2
    handler.done[1].set_result(None)  # the later batch succeeds ...
    handler.done[0].set_result(None)  # ... but the earlier one fails
    with pytest.raises(RuntimeError, match="write failed"):
        await task
    assert app.consumer._n_acked == 0 and not app.consumer.unacked


def _fetching(
    app: Any, records: dict[Any, list[Rec]], monkeypatch: pytest.MonkeyPatch
) -> list[tuple[Any, int]]:
    """Make the app's consumer return `records` from its next fetch; returns its seeks."""
    consumer = app.consumer
    seeks: list[tuple[Any, int]] = []

    async def wait_next_records(timeout: float) -> tuple[dict[Any, list[Rec]], None]:
        return records, None

    async def seek(c: Any, tp: Any, offset: int) -> None:
        seeks.append((tp, offset))
        c._read_offset[tp] = offset  # as Faust's seek does

    consumer._wait_next_records = wait_next_records
    consumer.highwater = lambda tp: 100
    monkeypatch.setattr("streams.app.seek_in_thread", seek)
    return seeks


async def test_drain_seeks_back_what_it_fetched_while_a_rebalance_suspends_the_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records fetched during a rebalance are dropped and their partition sought back to
    them: Faust's own seek to the committed offset may already have run (it seeks before it
    resumes the flow), and without this the records were never fetched again."""
    from faust.types import TP

    from streams.app import _drain_fetch_with_lanes

    app = _app(tmp_path)
    consumer = app.consumer
    lane = BatchLane(["t"], 100)
    tp0, tp1 = TP("t", 0), TP("t", 1)
    fetched = {
        tp0: [Rec("t", 0, o, b"v") for o in (5, 6, 7)],
        tp1: [Rec("t", 1, o, b"v") for o in (3, 4)],
    }
    consumer._read_offset[tp1] = 4  # offset 3 was read before: not fetched again
    seeks = _fetching(app, fetched, monkeypatch)

    consumer.stop_flow()  # the rebalance began while the fetch waited
    await _drain_fetch_with_lanes(consumer, {"t": (lane,)})
    assert sorted(seeks) == [(tp0, 5), (tp1, 4)] and not lane.pending

    consumer.resume_flow()
    app.flow_control.suspend()  # suspended between the fetch and its hand-over
    seeks.clear()
    await _drain_fetch_with_lanes(consumer, {"t": (lane,)})
    assert sorted(seeks) == [(tp0, 5), (tp1, 4)] and not lane.pending

    app.flow_control.resume()  # flowing: handed to the lane, nothing sought
    seeks.clear()
    await _drain_fetch_with_lanes(consumer, {"t": (lane,)})
    assert seeks == [] and [len(c.records) for c in lane.pending] == [3, 1]
    assert consumer._read_offset[tp0] == 7 and consumer._read_offset[tp1] == 4


async def test_seek_in_thread_runs_aiokafkas_seek_through_the_consumer_thread() -> None:
    from types import SimpleNamespace

    from streams.app import seek_in_thread

    calls: list[tuple[str, Any, int]] = []
    kafka = SimpleNamespace(seek=lambda tp, offset: calls.append(("seek", tp, offset)))

    async def call_thread(fun: Any, *args: Any) -> Any:
        calls.append(("in thread", *args))
        return fun(*args)

    thread = SimpleNamespace(call_thread=call_thread, _ensure_consumer=lambda: kafka)
    consumer = SimpleNamespace(_thread=thread, _read_offset={})
    await seek_in_thread(consumer, "tp", 42)
    assert calls == [("in thread", "tp", 42), ("seek", "tp", 42)]
    assert consumer._read_offset == {"tp": 42}
