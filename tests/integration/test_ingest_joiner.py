"""The real joiner worker (Faust, `slatestream worker --role joiner`) on the real broker,
with its state in real Redis, restarted in the middle: clicks inside the window are
attributed, clicks after it come out as late feedback, nothing is lost by the restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bench.bench_ingest import start_worker, stop_worker, worker_env
from features import open_join_state
from streams import schemas
from streams.broker import ensure_topics
from streams.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
WINDOW = 120_000
USERS = [f"u{k}" for k in range(20)]


async def send(bootstrap: str, events: list[tuple[str, str, schemas.Event, int | None]]) -> None:
    """Publish (topic, key, event, partition) in order and wait for the acks."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic, key, ev, part in events:
            await producer.send_and_wait(topic, ev.to_json(), key=key.encode(), partition=part)
    finally:
        await producer.stop()


async def read_feedback(
    bootstrap: str, topic: str, want_on_time: int, want_late: int, timeout_s: float
) -> list[schemas.Feedback]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[schemas.Feedback] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            out += [
                schemas.Feedback.model_validate_json(m.value) for ms in batch.values() for m in ms
            ]
            on_time = {f.event_id for f in out if not f.late}
            late = {f.event_id for f in out if f.late}
            if len(on_time) >= want_on_time and len(late) >= want_late:
                await asyncio.sleep(1.0)  # anything extra would be wrong: collect it too
                batch = await consumer.getmany(timeout_ms=500)
                out += [
                    schemas.Feedback.model_validate_json(m.value)
                    for ms in batch.values()
                    for m in ms
                ]
                break
    finally:
        await consumer.stop()
    return out


@pytest.mark.timeout(150)
async def test_joiner_worker_windows_late_feedback_and_restart(
    services: object, topic_prefix: str, uid: str, tmp_path: Path
) -> None:
    boot = services.kafka_bootstrap  # type: ignore[attr-defined]
    settings = Settings(kafka_bootstrap=boot, topic_prefix=topic_prefix, partitions=4)
    ensure_topics(settings)
    imps, ints = f"{topic_prefix}.impressions", f"{topic_prefix}.interactions"
    t = int(time.time() * 1000) - 3_600_000
    env = worker_env(
        services,
        topic_prefix,
        f"j{uid}",
        str(tmp_path),
        SLATESTREAM_ATTRIBUTION_WINDOW_MS=str(WINDOW),
    )

    def slate(k: int) -> list[str]:
        return [f"i{k}-{p}" for p in range(4)]

    def click(k: int, eid: str, delay: int, pos: int, rid: bool) -> schemas.Interaction:
        return schemas.Interaction(
            event_id=eid,
            ts=t + k * 1000 + delay,
            user_id=USERS[k],
            item_id=slate(k)[pos],
            type="click",
            request_id=f"r{k}" if rid else None,
        )

    phase1: list[tuple[str, str, schemas.Event, int | None]] = []
    for k, u in enumerate(USERS):
        imp = schemas.Impression(
            event_id=f"imp{k}",
            ts=t + k * 1000,
            user_id=u,
            request_id=f"r{k}",
            slate=slate(k),
            propensities=[0.4, 0.3, 0.2, 0.1],
            policy="in-slate-ts",
        )
        phase1.append((imps, u, imp, None))
    phase1 += [(ints, USERS[k], click(k, f"c1-{k}", 10_000, 1, True), None) for k in range(10)]
    phase2: list[tuple[str, str, schemas.Event, int | None]] = []
    phase2 += [(ints, USERS[k], click(k, f"c2-{k}", 20_000, 2, False), None) for k in range(5)]
    phase2 += [(ints, USERS[k], click(k, f"c3-{k}", 200_000, 1, True), None) for k in range(10, 15)]
    # push event time past every window on every partition
    for p in range(4):
        push = schemas.Interaction(
            event_id=f"push{p}", ts=t + 1_000_000, user_id="zz", item_id="x", type="view"
        )
        phase2.append((ints, "zz", push, p))

    proc = start_worker(env, "joiner", tmp_path / "joiner-1.log")
    try:
        await send(boot, phase1)
        await asyncio.sleep(8)  # let the first worker join, consume and persist phase 1
        assert proc.poll() is None, (tmp_path / "joiner-1.log").read_text()[-3000:]
    finally:
        stop_worker(proc)
    proc = start_worker(env, "joiner", tmp_path / "joiner-2.log")
    try:
        await send(boot, phase2)
        got = await read_feedback(boot, f"{topic_prefix}.feedback", 20, 5, 90)
    finally:
        stop_worker(proc)
        state = open_join_state(f"{services.redis_url}?namespace=j{uid}")  # type: ignore[attr-defined]
        await state.clear()

    on_time = {f.request_id: f for f in got if not f.late}
    late = {f.request_id: f for f in got if f.late}
    assert set(on_time) == {f"r{k}" for k in range(20)}
    for k in range(20):
        fb = on_time[f"r{k}"]
        want = [1, 2] if k < 5 else [1] if k < 10 else []
        assert fb.clicked_positions == want, (k, fb)
        assert fb.slate == slate(k) and fb.propensities == [0.4, 0.3, 0.2, 0.1]
        assert fb.window_ms == WINDOW and fb.served_at == t + k * 1000
        assert fb.user_id == USERS[k] and fb.policy == "in-slate-ts"
        assert all(c.delay_ms in (10_000, 20_000) for c in fb.clicks)
    assert set(late) == {f"r{k}" for k in range(10, 15)}
    for k in range(10, 15):
        (c,) = late[f"r{k}"].clicks
        assert (c.position, c.delay_ms, c.event_id) == (1, 200_000, f"c3-{k}")
    # redelivery after the restart may repeat a record, but never with other content
    by_id: dict[str, schemas.Feedback] = {}
    for f in got:
        assert by_id.setdefault(f.event_id, f) == f
