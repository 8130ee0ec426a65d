"""Batch lanes (streams.app): which agents get one, and the take/ack/drop rules of run_lane."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streams.app import BatchLane, LaneRegistry, create_app, lane_registry, run_lane
from streams.config import Settings
from streams.runtime import Emit, Record

pytestmark = pytest.mark.timeout(30)


def test_registry_enables_a_lane_only_when_every_agent_on_its_topics_has_one() -> None:
    reg = LaneRegistry()
    features = BatchLane(["p.interactions", "p.items"], 10)
    reg.bind(features.topics, features)
    assert features.enabled and reg.by_topic["p.items"] == (features,)

    # a second lane agent on a shared topic: both keep their lanes, the topic fans out
    joiner = BatchLane(["p.interactions", "p.impressions"], 10)
    reg.bind(joiner.topics, joiner)
    assert features.enabled and joiner.enabled
    assert set(reg.by_topic["p.interactions"]) == {features, joiner}

    # a take_events agent on one of those topics: every lane touching it falls back, and
    # so does any lane sharing a topic with a fallen-back one
    reg.bind(["p.impressions", "p.requests"], None)
    assert not joiner.enabled and not features.enabled
    assert reg.by_topic == {}


def test_registry_leaves_unrelated_lanes_alone() -> None:
    reg = LaneRegistry()
    lane = BatchLane(["p.items"], 10)
    reg.bind(lane.topics, lane)
    reg.bind(["p.requests"], None)
    assert lane.enabled and reg.by_topic == {"p.items": (lane,)}


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
    bind_handler(app, Plain())  # type: ignore[arg-type]
    reg = lane_registry(app)
    assert list(reg.by_topic) == ["x.interactions"]


async def test_lane_take_publish_backpressure_and_clear() -> None:
    lane = BatchLane(["t"], maxsize=3)
    taker = asyncio.ensure_future(lane.take(2))
    await asyncio.sleep(0)
    assert not taker.done()  # nothing pending: the agent waits
    lane.pending.extend([1, 2, 3, 4])
    lane.publish()
    assert await taker == [1, 2]
    # 2 pending < maxsize: the consumer loop may go on
    await asyncio.wait_for(lane.wait_for_space(), 1)
    lane.pending.extend([5, 6])
    lane.publish()
    gate = asyncio.ensure_future(lane.wait_for_space())
    await asyncio.sleep(0)
    assert not gate.done()  # 4 pending >= 3: the consumer loop waits
    assert await lane.take(10) == [3, 4, 5, 6]
    await asyncio.wait_for(gate, 1)
    lane.pending.extend([7])
    lane.publish()
    lane.clear()  # a rebalance: what is pending is dropped, never handed out
    taker = asyncio.ensure_future(lane.take(5))
    await asyncio.sleep(0)
    assert not taker.done()
    taker.cancel()


# --- run_lane against a stand-in app ------------------------------------------------------


@dataclass(eq=False)
class FakeMessage:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    generation_id: int
    key: bytes | None = None
    timestamp: float = 1.5
    tracked: bool = False
    acks: int = 0

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    def ack(self, consumer: Any) -> bool:
        self.acks += 1
        consumer.acked.append(self.offset)
        return True


@dataclass
class FakeConsumer:
    unacked: set[Any] = field(default_factory=set)
    acked: list[int] = field(default_factory=list)


class FakeFlow:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send(self, topic: str, key: Any, value: Any, **_: Any) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


@dataclass
class FakeMonitor:
    stream_inbound_time: dict[Any, float] = field(default_factory=dict)


class FakeApp:
    def __init__(self) -> None:
        self.consumer = FakeConsumer()
        self.flow_control = FakeFlow()
        self.monitor = FakeMonitor()
        self.producer = FakeProducer()
        self.consumer_generation_id = 1


class Recorder:
    name = "rec"
    topics = ("t",)

    def __init__(self, app: FakeApp, fail: bool = False) -> None:
        self.app = app
        self.fail = fail
        self.batches: list[list[Record]] = []
        self.in_flight: list[int] = []

    async def handle(self, records: list[Record]) -> list[Emit]:
        # while the handler runs, the batch is in flight and not acked
        self.in_flight.append(len(self.app.consumer.unacked))
        assert not self.app.consumer.acked
        self.batches.append(records)
        if self.fail:
            raise RuntimeError("boom")
        return [Emit("dlq", b"x", r.key) for r in records if r.value == b"bad"]


async def _run_until_taken(app: FakeApp, handler: Recorder, lane: BatchLane) -> None:
    """Run the lane loop until it waits for more messages, then stop it."""
    task = asyncio.ensure_future(run_lane(app, handler, lane, 100))  # type: ignore[arg-type]
    for _ in range(100):
        await asyncio.sleep(0)
        if not lane.pending and lane._ready.is_set() is False:
            # drained and parked in take(): give the last batch's acks a few more turns
            for _ in range(10):
                await asyncio.sleep(0)
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_run_lane_tracks_handles_publishes_then_acks() -> None:
    app = FakeApp()
    lane = BatchLane(["t"], 100)
    msgs = [FakeMessage("t", 0, 5, b"ok", 1), FakeMessage("t", 1, 9, b"bad", 1, key=b"u")]
    msgs.append(FakeMessage("t", 0, 6, None, 1))
    lane.pending.extend(msgs)
    lane.publish()
    handler = Recorder(app)
    await _run_until_taken(app, handler, lane)
    assert handler.in_flight == [3]
    [batch] = handler.batches
    assert [(r.topic, r.partition, r.offset, r.value) for r in batch] == [
        ("t", 0, 5, b"ok"),
        ("t", 1, 9, b"bad"),
        ("t", 0, 6, b""),
    ]
    assert batch[0].timestamp_ms == 1500
    assert app.producer.sent == [("dlq", b"u", b"x")]
    assert sorted(app.consumer.acked) == [5, 6, 9]
    assert set(app.monitor.stream_inbound_time) == {("t", 0), ("t", 1)}


async def test_run_lane_drops_old_generation_and_suspended_flow_unacked() -> None:
    app = FakeApp()
    app.consumer_generation_id = 2
    lane = BatchLane(["t"], 100)
    lane.pending.extend([FakeMessage("t", 0, 1, b"old", 1), FakeMessage("t", 0, 2, b"new", 2)])
    lane.publish()
    handler = Recorder(app)
    await _run_until_taken(app, handler, lane)
    assert [[r.value for r in b] for b in handler.batches] == [[b"new"]]
    assert app.consumer.acked == [2]

    app.flow_control.active = False
    lane.pending.append(FakeMessage("t", 0, 3, b"during-rebalance", 2))
    lane.publish()
    await _run_until_taken(app, handler, lane)
    assert len(handler.batches) == 1 and app.consumer.acked == [2]


async def test_run_lane_failure_acks_nothing_and_untracks() -> None:
    app = FakeApp()
    lane = BatchLane(["t"], 100)
    lane.pending.extend([FakeMessage("t", 0, 1, b"a", 1), FakeMessage("t", 0, 2, b"b", 1)])
    lane.publish()
    with pytest.raises(RuntimeError, match="boom"):
        await run_lane(app, Recorder(app, fail=True), lane, 100)  # type: ignore[arg-type]
    assert app.consumer.acked == [] and not app.consumer.unacked
