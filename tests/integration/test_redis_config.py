"""Redis configurations that lose features: a full server makes the writers wait (nothing
skipped, nothing lost), and eviction or missing persistence is reported at start."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
import redis

from features import InteractionUpdate, open_store
from streams.services.feature_service import until_available
from tests.integration.private_redis import free_port, start_redis, stop_redis

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _fill_until_full(client: redis.Redis) -> int:
    """Write values of shrinking size until even a small write is refused (OOM: a refused
    large value frees its request buffer, so the server is full only when small ones fail);
    the number written."""
    n = 0
    for size in (65536, 4096, 256, 16):
        blob = b"x" * size
        for _ in range(5_000):  # bounded: 4 MiB of maxmemory fills long before
            try:
                client.set(f"junk:{n}", blob)
            except redis.exceptions.OutOfMemoryError:
                break
            n += 1
        else:
            raise AssertionError("the server never reported OOM")
    return n


async def test_a_full_redis_makes_the_writer_wait_and_nothing_is_lost() -> None:
    port = free_port()
    proc = start_redis(port, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    store = open_store(f"{url}?namespace=full")
    try:
        assert _fill_until_full(client) > 0
        now = int(time.time() * 1000)
        events = [
            InteractionUpdate(f"e{j}", f"u{j % 7}", f"i{j % 11}", "click", now, 1.0)
            for j in range(300)
        ]
        write = asyncio.create_task(until_available(lambda: store.apply_many(events), "test"))
        await asyncio.sleep(1.5)
        assert not write.done(), "the write did not wait for memory (skipped or crashed)"
        client.config_set("maxmemory", 0)  # the operator makes room
        res = await asyncio.wait_for(write, timeout=20)
        assert res.n_applied == 300
        totals = await store.global_counts()
        assert totals["click"] == 300 and totals["users"] == 7
        again = await store.apply_many(events)  # the redelivery the offsets would cause
        assert again.n_applied == 0
    finally:
        await store.close()
        client.close()
        stop_redis(proc)


async def test_eviction_and_no_persistence_are_reported_by_the_store_and_check() -> None:
    port = free_port()
    proc = start_redis(port, "--maxmemory", "1gb", "--maxmemory-policy", "allkeys-lru")
    url = f"redis://127.0.0.1:{port}/0"
    store = open_store(url)
    try:
        warnings = await store.durability_warnings()
        assert len(warnings) == 2
        assert "allkeys-lru" in warnings[0] and "noeviction" in warnings[0]
        assert "appendonly no" in warnings[1] and "every feature" in warnings[1]
        env = {**os.environ, "SLATESTREAM_REDIS_URL": url, "SLATESTREAM_KAFKA_BOOTSTRAP": ""}
        proc_check = subprocess.run(
            [sys.executable, "-m", "streams", "check"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert proc_check.returncode == 0, proc_check.stderr
        lines = [x for x in proc_check.stderr.splitlines() if x.startswith("slatestream: warning:")]
        assert len(lines) == 2, proc_check.stderr
        client = redis.Redis.from_url(url)
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("appendonly", "yes")
        client.close()
        assert await store.durability_warnings() == []
    finally:
        await store.close()
        stop_redis(proc)
