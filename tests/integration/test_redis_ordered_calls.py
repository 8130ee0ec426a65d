"""Script calls sent at once on one connection (the feature store's writes), on a real Redis:
they run in call order, each gets its own reply, and an error, a flushed script cache or a
cancelled call leaves the next calls working."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, ResponseError

from features.redis_calls import OrderedScriptCalls
from tests.integration.private_redis import free_port, start_redis, stop_redis

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

# appends ARGV[2] to the list ARGV[1]; its length after, or an error for "boom"
PUSH = """
redis.call('RPUSH', ARGV[1], ARGV[2])
if ARGV[2] == 'boom' then return redis.error_reply('boom') end
return redis.call('LLEN', ARGV[1])
"""


@dataclass
class Pusher:
    """A client, the ordered calls of PUSH on it, and the test's list key."""

    client: Any
    calls: OrderedScriptCalls
    key: str


@pytest.fixture
async def pusher(services: Any, uid: str) -> AsyncIterator[Pusher]:
    """Ordered PUSH calls on the session's Redis; the list is deleted afterwards."""
    client = aioredis.Redis.from_url(services.redis_url)
    p = Pusher(client, OrderedScriptCalls(client, PUSH), f"ordered:{uid}")
    yield p
    await client.delete(p.key)
    await client.aclose()


async def _outcomes(calls: OrderedScriptCalls, key: str, values: list[str]) -> list[Any]:
    """Start one call per value at once (in list order); each one's reply or error."""
    tasks = [asyncio.ensure_future(calls.call([[key, v]])) for v in values]
    return list(await asyncio.gather(*tasks, return_exceptions=True))


async def test_overlapping_calls_run_in_call_order_with_their_own_replies(
    pusher: Pusher,
) -> None:
    client, calls, key = pusher.client, pusher.calls, pusher.key
    values = [str(i) for i in range(300)]
    got = await _outcomes(calls, key, values)
    assert got == [[i + 1] for i in range(300)]
    assert [v.decode() for v in await client.lrange(key, 0, -1)] == values
    # several runs in one call: sent together, replies in order
    assert await calls.call([[key, "a"], [key, "b"]]) == [301, 302]


async def test_an_error_fails_the_calls_behind_it_and_the_next_ones_work(
    pusher: Pusher,
) -> None:
    client, calls, key = pusher.client, pusher.calls, pusher.key
    got = await _outcomes(calls, key, ["0", "1", "boom", "3", "4"])
    assert got[:2] == [[1], [2]]
    assert isinstance(got[2], ResponseError) and "boom" in str(got[2])
    pushed = [v.decode() for v in await client.lrange(key, 0, -1)]
    assert pushed == ["0", "1", "boom", "3", "4"]  # in call order
    for value, outcome in zip(("3", "4"), got[3:], strict=True):
        # sent before the error was read: its reply went with the dropped connection;
        # sent after: a new connection, and its own reply
        assert isinstance(outcome, ConnectionError) or outcome == [pushed.index(value) + 1]
    assert await calls.call([[key, "5"]]) == [6]


async def test_a_flushed_script_cache_or_a_cancelled_call_costs_one_retry(
    pusher: Pusher,
) -> None:
    client, calls, key = pusher.client, pusher.calls, pusher.key
    assert await calls.call([[key, "a"]]) == [1]
    await client.script_flush()
    with pytest.raises(ConnectionError):  # writers retry this (StoreUnavailable)
        await calls.call([[key, "b"]])
    assert await calls.call([[key, "c"]]) == [2]  # a new connection loaded the script

    # a call cancelled while in flight (redis-py may finish it anyway): either way the
    # next call gets its own reply, not the cancelled one's
    for delay in (0.0, 0.0005, 0.001, 0.002):
        slow = asyncio.ensure_future(calls.call([[key, "d"]]))
        await asyncio.sleep(delay)
        slow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            assert await slow == [await client.llen(key)]
        assert await calls.call([[key, "e"]]) == [await client.llen(key)]


async def test_overlapping_feature_writes_through_dropped_connections_count_each_event_once(
    uid: str,
) -> None:
    """The feature worker's pattern (two batches in flight, the next written while the last
    runs) while every client connection is killed again and again: each event counts once."""
    from features import open_store
    from streams.config import load_settings
    from streams.handlers.ingest import FeatureHandler
    from streams.runtime import Record
    from streams.topics import topic_name

    port = free_port()  # a private server: every connection but ours gets killed
    proc = start_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    settings = load_settings(topic_prefix=f"oc{uid}")
    store = open_store(f"{url}?namespace=oc{uid}")
    handler = FeatureHandler(settings, store)
    admin = aioredis.Redis.from_url(url, single_connection_client=True)
    topic = topic_name(settings, "interactions")
    now = int(time.time() * 1000)
    batches = [
        [
            Record(
                topic,
                json.dumps(
                    {
                        "event_id": f"e{b}-{j}",
                        "ts": now + j,
                        "schema_version": 1,
                        "user_id": f"u{j % 13}",
                        "item_id": f"i{j % 17}",
                        "type": "click",
                    }
                ).encode(),
            )
            for j in range(400)
        ]
        for b in range(40)
    ]
    stop = asyncio.Event()

    async def kill_connections() -> int:
        """Kill the store's connections every 20 ms (at most 100 times)."""
        kills = 0
        me = await admin.client_id()
        while not stop.is_set() and kills < 100:
            await asyncio.sleep(0.02)
            for c in await admin.client_list():
                if int(c["id"]) != me:
                    with contextlib.suppress(ResponseError):
                        await admin.client_kill_filter(_id=c["id"])
                        kills += 1
        return kills

    killer = asyncio.create_task(kill_connections())
    try:
        inflight: list[asyncio.Future[Any]] = []
        for records in batches:
            inflight.append(asyncio.ensure_future(handler.handle(records)))
            if len(inflight) > 1:
                await asyncio.wait_for(inflight.pop(0), timeout=30)
        for task in inflight:
            await asyncio.wait_for(task, timeout=30)
        stop.set()
        assert await killer > 0  # the writes did go through dropped connections
        totals = await store.global_counts()
        assert totals["click"] == 40 * 400 and totals["users"] == 13
        features = await store.get_many([f"u{j}" for j in range(13)])
        assert sum(f.counts["click"] for f in features.values()) == 40 * 400
    finally:
        stop.set()
        killer.cancel()
        await store.close()
        await admin.aclose()
        stop_redis(proc)
