"""Feature-store ops/s beside raw redis-py pipelining against the same Redis.

Writes: `features.open_store("redis://…").apply_many` (the feature worker's write path: one
Lua script run per chunk) versus the same logical writes per interaction issued as plain
commands in a non-transactional redis-py pipeline per batch — dedupe SET NX EX, RPUSH +
LTRIM of the recent sequence, HINCRBY of user/item/global counters, ZINCRBY popularity and
HINCRBYFLOAT affinity. Reads: `get_many` of 100 users versus the same LRANGE + 2×HGETALL
per user in one redis-py pipeline (sync, and redis.asyncio — the client the store uses).
Same Redis, same events, same batch sizes, one run.

    python -m bench.bench_store_ops [--quick] [--redis redis://host:port/0]

`run(quick, services=None) -> dict` (`services.redis_url`; without it a private
redis-server is started on a free loopback port and stopped after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BATCH = 500
READ_USERS = 100
N_USERS, N_ITEMS, N_CATS = 5_000, 20_000, 50
TYPES = ("click", "view", "purchase")


def _events(n: int, seed: int = 0) -> list[tuple[str, str, str, str, int]]:
    """(event_id, user, item, type, ts_ms) interactions, users/items Zipf-ish."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    out = []
    for i in range(n):
        u = int(N_USERS * rng.random() ** 2)
        it = int(N_ITEMS * rng.random() ** 3)
        out.append((f"ev-{seed}-{i}", f"u{u}", f"i{it}", rng.choice(TYPES), now + i))
    return out


@contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port (no persistence); yields its URL."""
    from deploy.stack import ensure_redis_server, free_port

    binary = ensure_redis_server()
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def raw_writes(url: str, events: list[tuple[str, str, str, str, int]], ns: str) -> float:
    """Seconds to write `events` as plain pipelined commands, BATCH per round trip."""
    import redis

    client = redis.Redis.from_url(url)
    t0 = time.perf_counter()
    for i in range(0, len(events), BATCH):
        pipe = client.pipeline(transaction=False)
        for eid, user, item, typ, ts in events[i : i + BATCH]:
            pipe.set(f"{ns}:seen:{eid}", 1, nx=True, ex=86400)
            pipe.rpush(f"{ns}:u:{user}:s", f"{item}\x1f{typ}\x1f{ts}")
            pipe.ltrim(f"{ns}:u:{user}:s", -50, -1)
            pipe.hincrby(f"{ns}:u:{user}:c", typ, 1)
            pipe.hincrby(f"{ns}:u:{user}:c", "_all", 1)
            pipe.hincrby(f"{ns}:i:{item}:c", typ, 1)
            pipe.hincrby(f"{ns}:i:{item}:c", "_all", 1)
            pipe.hincrby(f"{ns}:g", "_all", 1)
            pipe.zincrby(f"{ns}:pop", 1.0, item)
            pipe.hincrbyfloat(f"{ns}:u:{user}:a", f"c{hash(item) % N_CATS}", 1.0)
        pipe.execute()
    dt = time.perf_counter() - t0
    client.close()
    return dt


def raw_reads(url: str, users: list[str], ns: str, rounds: int) -> float:
    """Seconds for `rounds` reads of READ_USERS users (LRANGE + 2×HGETALL each, pipelined)."""
    import redis

    client = redis.Redis.from_url(url)
    t0 = time.perf_counter()
    for r in range(rounds):
        pipe = client.pipeline(transaction=False)
        for u in users[r * READ_USERS % len(users) :][:READ_USERS]:
            pipe.lrange(f"{ns}:u:{u}:s", 0, -1)
            pipe.hgetall(f"{ns}:u:{u}:c")
            pipe.hgetall(f"{ns}:u:{u}:a")
        pipe.execute()
    dt = time.perf_counter() - t0
    client.close()
    return dt


async def raw_reads_async(url: str, users: list[str], ns: str, rounds: int) -> float:
    """As raw_reads, with redis.asyncio (the client the store itself uses)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    t0 = time.perf_counter()
    for r in range(rounds):
        async with client.pipeline(transaction=False) as pipe:
            for u in users[r * READ_USERS % len(users) :][:READ_USERS]:
                pipe.lrange(f"{ns}:u:{u}:s", 0, -1)
                pipe.hgetall(f"{ns}:u:{u}:c")
                pipe.hgetall(f"{ns}:u:{u}:a")
            await pipe.execute()
    dt = time.perf_counter() - t0
    await client.aclose()
    return dt


async def store_ops(
    url: str, events: list[tuple[str, str, str, str, int]], users: list[str], rounds: int
) -> tuple[float, float, int]:
    """(write seconds, read seconds, events applied) through features.open_store."""
    from features import ItemUpdate, open_store
    from features.base import InteractionUpdate

    ns = f"bench{uuid.uuid4().hex[:8]}"
    store = open_store(f"{url}?namespace={ns}")
    try:
        items = {e[2] for e in events}
        cats = [ItemUpdate(f"it-{i}", i, 0, (f"c{hash(i) % N_CATS}", "sub")) for i in sorted(items)]
        for i in range(0, len(cats), 2000):
            await store.apply_many(cats[i : i + 2000])
        evs = [InteractionUpdate(e, u, i, t, ts, 1.0) for e, u, i, t, ts in events]
        t0 = time.perf_counter()
        applied = 0
        for i in range(0, len(evs), BATCH):
            res = await store.apply_many(evs[i : i + BATCH])
            applied += res.applied.get("interaction", 0)
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for r in range(rounds):
            await store.get_many(users[r * READ_USERS % len(users) :][:READ_USERS])
        read_s = time.perf_counter() - t0
        await store.clear()
        return write_s, read_s, applied
    finally:
        await store.close()


def _cleanup(url: str, ns: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{ns}:*", count=5000))
    for i in range(0, len(keys), 5000):
        client.delete(*keys[i : i + 5000])
    client.close()


def run(quick: bool = False, services: Any = None) -> dict[str, Any]:
    """Measure store vs raw writes and reads (ops/s = events or users per second)."""
    n = 20_000 if quick else 100_000
    rounds = 100 if quick else 500
    events = _events(n)
    users = sorted({e[1] for e in events})
    if services is not None and getattr(services, "redis_url", None):
        return _measure(services.redis_url, events, users, rounds, quick)
    with private_redis() as url:
        return _measure(url, events, users, rounds, quick)


def _measure(
    url: str,
    events: list[tuple[str, str, str, str, int]],
    users: list[str],
    rounds: int,
    quick: bool,
) -> dict[str, Any]:
    ns = f"raw{uuid.uuid4().hex[:8]}"
    # warm both paths once (connections, script load), then measure
    raw_writes(url, events[:BATCH], ns + "w")
    _cleanup(url, ns + "w")
    raw_s = raw_writes(url, events, ns)
    raw_read_s = raw_reads(url, users, ns, rounds)
    raw_aread_s = asyncio.run(raw_reads_async(url, users, ns, rounds))
    _cleanup(url, ns)
    asyncio.run(store_ops(url, events[:BATCH], users, 2))
    write_s, read_s, applied = asyncio.run(store_ops(url, events, users, rounds))
    n = len(events)
    store_w, raw_w = n / write_s, n / raw_s
    store_r, raw_r = rounds * READ_USERS / read_s, rounds * READ_USERS / raw_read_s
    raw_ar = rounds * READ_USERS / raw_aread_s
    return {
        "quick": quick,
        "events": n,
        "batch": BATCH,
        "applied": applied,
        "figures": [
            {
                "name": "feature-store writes (interactions/s, batches of 500)",
                "value": round(store_w),
                "unit": "events/s",
                "baseline_name": "raw redis-py pipeline, same writes",
                "baseline": round(raw_w),
                "ratio": round(store_w / raw_w, 3),
            },
            {
                "name": "feature-store reads, get_many(100 users)",
                "value": round(store_r),
                "unit": "users/s",
                "baseline_name": "raw redis-py pipeline LRANGE+2×HGETALL",
                "baseline": round(raw_r),
                "ratio": round(store_r / raw_r, 3),
            },
            {
                "name": "feature-store reads, get_many(100 users)",
                "value": round(store_r),
                "unit": "users/s",
                "baseline_name": "raw redis.asyncio pipeline, same commands",
                "baseline": round(raw_ar),
                "ratio": round(store_r / raw_ar, 3),
            },
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: print the measurements as JSON."""
    p = argparse.ArgumentParser(prog="python -m bench.bench_store_ops", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--redis", default=None, help="existing Redis URL (default: a private one)")
    args = p.parse_args(argv)

    class _S:
        redis_url = args.redis

    print(json.dumps(run(args.quick, _S() if args.redis else None), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
