"""The real feature worker (Faust, `slatestream worker --role features`) on the real broker
into real Redis: 50,000 events, 2% redelivered, 1% malformed → exact counts + the DLQ."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.bench_ingest import generate_events, produce, start_worker, stop_worker, worker_env
from features import ALL, open_store
from streams import schemas
from streams.broker import ensure_topics
from streams.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_BYTES = 4096


async def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float) -> list[bytes]:
    """Every record of a topic from the beginning (waits for at least `expected`)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout_s
        idle_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            got = [m.value for msgs in batch.values() for m in msgs]
            out.extend(got)
            if len(out) >= expected:
                # keep reading briefly: anything extra would be a wrongly dead-lettered event
                idle_until = idle_until or time.monotonic() + 1.0
                if time.monotonic() > idle_until:
                    break
    finally:
        await consumer.stop()
    return out


async def dead_letters(services: Any, prefix: str, expected: int) -> list[schemas.DeadLetter]:
    """The dead letters of the `<prefix>.dlq` topic (waits for at least `expected`)."""
    raw = await read_topic(services.kafka_bootstrap, f"{prefix}.dlq", expected, 60)
    return [schemas.DeadLetter.model_validate_json(v) for v in raw]


async def wait_for_counts(
    store: Any, want: dict[str, int], proc: subprocess.Popen, log: Path, timeout_s: float
) -> dict[str, int]:
    """Poll the store's global counts until each reaches `want` (or the time is up), failing
    at once with the worker's log if it died; returns the last counts read."""
    deadline = time.monotonic() + timeout_s
    g: dict[str, int] = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        g = await store.global_counts()
        if all(g.get(k, 0) >= v for k, v in want.items()):
            break
        await asyncio.sleep(0.25)
    return g


async def assert_counts_match(store: Any, gen: Any) -> None:
    """Every generated user's per-type counts (and their total) equal the ground truth."""
    users = sorted(gen.user_counts)
    got = await store.get_many(users)
    for u in users:
        truth = dict(gen.user_counts[u])
        truth[ALL] = sum(gen.user_counts[u].values())
        assert got[u].counts == truth, u


@pytest.mark.timeout(240)
async def test_50k_events_through_the_feature_worker(
    services: object, topic_prefix: str, uid: str, tmp_path: Path
) -> None:
    settings = Settings(
        kafka_bootstrap=services.kafka_bootstrap,  # type: ignore[attr-defined]
        topic_prefix=topic_prefix,
        partitions=4,
    )
    ensure_topics(settings)
    gen = generate_events(50_000, users=500, max_bytes=MAX_BYTES, seed=11)
    assert len(gen.records) == 50_000
    assert gen.n_duplicates == 1_000 and len(gen.malformed) == 500
    await produce(services.kafka_bootstrap, topic_prefix, gen.records)  # type: ignore[attr-defined]

    env = worker_env(
        services, topic_prefix, f"n{uid}", str(tmp_path), SLATESTREAM_MAX_EVENT_BYTES=str(MAX_BYTES)
    )
    proc = start_worker(env, "features", tmp_path / "worker.log")
    store = open_store(f"{services.redis_url}?namespace=n{uid}")  # type: ignore[attr-defined]
    try:
        want = {ALL: gen.n_interactions, "impressions": gen.n_impressions, "items": gen.n_items}
        g = await wait_for_counts(store, want, proc, tmp_path / "worker.log", 150)
        assert {k: g.get(k, 0) for k in want} == want
        assert g["users"] == len(gen.user_counts)

        # ... and the worker committed every offset (the group's lag drains to zero)
        from streams.kafka_access import KafkaAccess
        from streams.metrics.server import LagReader, group_id

        reader = LagReader(
            KafkaAccess(services.kafka_bootstrap),  # type: ignore[attr-defined]
            group_id(settings, "features"),
            [f"{topic_prefix}.{t}" for t in ("interactions", "impressions", "items")],
        )
        try:
            lag: dict[tuple[str, int], int] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                lag = await asyncio.to_thread(reader.read)
                if lag and not any(lag.values()):
                    break
                await asyncio.sleep(0.5)
            assert lag and not any(lag.values()), lag
        finally:
            reader.close()

        # every user's counts equal the ground truth
        await assert_counts_match(store, gen)

        # every malformed event is in the DLQ with its reason, and nothing else is
        letters = await dead_letters(services, topic_prefix, len(gen.malformed))
        assert len(letters) == len(gen.malformed)
        got_bad = sorted((d.original, d.reason) for d in letters)
        assert got_bad == sorted((raw, why) for _, raw, why in gen.malformed)
        for d in letters:
            assert d.topic == f"{topic_prefix}.interactions" and d.offset >= 0
            assert d.partition >= 0 and d.worker == "features"
        stop_worker(proc)

        # `slatestream features rebuild` replays the log into an empty store: same features
        rebuilt = open_store(f"{services.redis_url}?namespace=r{uid}")  # type: ignore[attr-defined]
        try:
            cli = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "streams",
                    "features",
                    "rebuild",
                    "--store",
                    f"{services.redis_url}?namespace=r{uid}",
                ],  # type: ignore[attr-defined]
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert cli.returncode == 0, cli.stderr
            assert "50000 records" in cli.stdout and f"{len(gen.malformed)} invalid" in cli.stdout
            await assert_same_features(store, rebuilt, sorted(gen.user_counts), gen.n_items)
            # a second rebuild refuses to mix into a non-empty store
            again = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "streams",
                    "features",
                    "rebuild",
                    "--store",
                    f"{services.redis_url}?namespace=r{uid}",
                ],  # type: ignore[attr-defined]
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert again.returncode == 2 and "not empty" in again.stderr
        finally:
            await rebuilt.clear()
            await rebuilt.close()
    finally:
        stop_worker(proc)
        await store.clear()
        await store.close()


async def assert_same_features(live: Any, rebuilt: Any, users: list[str], n_items: int) -> None:
    """Counts, sequences, item counters and popularity equal; affinities too, except that
    the live worker may have seen an interaction before its item's metadata (two topics),
    where the rebuild (items first) knows the category: rebuilt ⊇ live."""
    assert await rebuilt.global_counts() == await live.global_counts()
    frozen = time.time()
    live.clock = rebuilt.clock = lambda: frozen  # decayed values read at the same instant
    a, b = await live.get_many(users), await rebuilt.get_many(users)
    for u in users:
        assert a[u].counts == b[u].counts, u
        assert a[u].recent == b[u].recent, u
        for cat, v in a[u].affinity.items():
            assert b[u].affinity[cat] >= v * (1 - 1e-9), (u, cat)
    items = [f"i{k}" for k in range(n_items)]
    ia, ib = await live.items_many(items), await rebuilt.items_many(items)
    for i in items:
        assert ia[i].counts == ib[i].counts and ia[i].category_path == ib[i].category_path
    now = time.time() * 1000
    pa, pb = await live.popular(50, now), await rebuilt.popular(50, now)
    assert [i for i, _ in pa] == [i for i, _ in pb]
    for (_, x), (_, y) in zip(pa, pb, strict=True):
        assert x == pytest.approx(y, rel=1e-9)


@pytest.mark.timeout(300)
async def test_rebalance_and_a_killed_worker_lose_and_double_count_nothing(
    services: object, topic_prefix: str, uid: str, tmp_path: Path
) -> None:
    """Two feature workers started together in one group (they rebalance as they join),
    then the first one killed with SIGKILL mid-stream: after the session timeout its
    partitions, with their uncommitted batches, go to the other. Offsets are committed only
    after durable store writes and redelivered events are deduplicated, so the store ends
    exactly at the ground truth."""
    import os
    import signal

    settings = Settings(
        kafka_bootstrap=services.kafka_bootstrap,  # type: ignore[attr-defined]
        topic_prefix=topic_prefix,
        partitions=4,
    )
    ensure_topics(settings)
    gen = generate_events(60_000, users=800, max_bytes=MAX_BYTES, seed=13, catalogue=50)
    await produce(services.kafka_bootstrap, topic_prefix, gen.records)  # type: ignore[attr-defined]
    env = worker_env(
        services, topic_prefix, f"k{uid}", str(tmp_path), SLATESTREAM_MAX_EVENT_BYTES=str(MAX_BYTES)
    )
    store = open_store(f"{services.redis_url}?namespace=k{uid}")  # type: ignore[attr-defined]
    first = start_worker(env, "features", tmp_path / "w1.log")
    second = start_worker(env, "features", tmp_path / "w2.log")
    want = {ALL: gen.n_interactions, "impressions": gen.n_impressions, "items": gen.n_items}
    try:

        async def wait_for(n: int, timeout_s: float) -> dict[str, int]:
            deadline = time.monotonic() + timeout_s
            g: dict[str, int] = {}
            while time.monotonic() < deadline:
                g = await store.global_counts()
                if g.get(ALL, 0) >= n:
                    return g
                await asyncio.sleep(0.05)
            return g

        at_kill = await wait_for(20_000, 120)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        assert 20_000 <= at_kill.get(ALL, 0) < gen.n_interactions  # killed mid-stream
        await wait_for_counts(store, want, second, tmp_path / "w2.log", 150)
        await asyncio.sleep(1.0)  # anything counted twice would show up by now
        g = await store.global_counts()
        assert {k: g.get(k, 0) for k in want} == want
        await assert_counts_match(store, gen)
        # every malformed event reached the DLQ (a redelivered batch may dead-letter twice)
        dlq = await dead_letters(services, topic_prefix, len(gen.malformed))
        letters = {(d.original, d.reason) for d in dlq}
        assert letters == {(raw, why) for _, raw, why in gen.malformed}
    finally:
        stop_worker(first)
        stop_worker(second)
        await store.clear()
        await store.close()
