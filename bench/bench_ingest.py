"""Ingest benchmark: Kafka → feature worker (Faust) → Redis, beside a bare aiokafka loop.

One run: start (or use) a broker + Redis, produce N interaction events keyed by user,
then (1) drain the topic with two bare aiokafka consume loops that decode nothing and
just count (batches from `getmany`, and aiokafka's per-message `async for msg`) and
(2) run one real feature worker process (`slatestream worker --role features`, one
Faust app) from the beginning of the same topic until the store holds every event.
Reports events/s of each, the ratios and the worker's peak RSS, CPU per event of the
worker and of Redis, the same FeatureHandler driven by a plain aiokafka loop in the
benchmark process (to isolate Faust's own cost), and the least CPU per event any worker
needs (the Redis floor, `redis_floor`, the bare loop's own CPU and the JSON decode,
`decode_us`) beside the CPU per event the 0.5 ratio target leaves on all cores.

    python -m bench.bench_ingest [--quick] [--events N] [--kafka host:port --redis URL]

Also importable: `run(quick: bool, services=None) -> dict`; `generate_events(...)` is the
event generator the integration tests use (ground truth included).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.redis_store import CHUNK, SEP, with_namespace
from streams.config import Settings
from streams.kafka_access import KafkaAccess

TYPES = ("view", "click", "add_to_cart", "purchase", "rating")
# the loops beside the worker fetch as it does by default
FETCH_MAX_WAIT_MS: int = Settings.model_fields["fetch_max_wait_ms"].default
TYPE_WEIGHTS = (50, 35, 8, 4, 3)
# the target: the worker at least this share of the bare loop's events/s
TARGET_RATIO = 0.5


@dataclass
class Generated:
    """Records to publish, in order, with the ground truth computed while generating."""

    records: list[tuple[str, bytes, bytes]] = field(default_factory=list)  # (logical, key, val)
    user_counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    malformed: list[tuple[str, bytes, str]] = field(default_factory=list)  # (logical, raw, why)
    n_interactions: int = 0
    n_impressions: int = 0
    n_items: int = 0
    n_duplicates: int = 0


def _malformed(rng: random.Random, now_ms: int, max_bytes: int) -> tuple[bytes, str]:
    """One bad interaction payload and the DLQ reason it must get."""
    base: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "ts": now_ms,
        "user_id": "u1",
        "item_id": "i1",
        "type": "click",
    }
    kind = rng.randrange(7)
    if kind == 0:
        return b'{"event_id": "broken", "ts": ' + str(now_ms).encode(), "malformed_json"
    if kind == 1:
        base["ts"] = "yesterday"
        return json.dumps(base).encode(), "wrong_type"
    if kind == 2:
        del base["item_id"]
        return json.dumps(base).encode(), "missing_field"
    if kind == 3:
        base["schema_version"] = 99
        return json.dumps(base).encode(), "unknown_schema_version"
    if kind == 4:
        base["pad"] = "x" * (max_bytes + 10)
        return json.dumps(base).encode(), "oversized"
    if kind == 5:
        base["ts"] = rng.choice([-5, 1_000, now_ms + 10 * 86_400_000])
        return json.dumps(base).encode(), "bad_timestamp"
    base["type"] = "teleport"
    return json.dumps(base).encode(), "unknown_interaction_type"


def generate_events(
    n: int = 50_000,
    users: int = 500,
    items: int = 2_000,
    duplicate_rate: float = 0.02,
    malformed_rate: float = 0.01,
    catalogue: int = 200,
    impressions_rate: float = 0.02,
    seed: int = 7,
    max_bytes: int = 65536,
    now_ms: int | None = None,
) -> Generated:
    """`n` records in total: catalogue items, impressions, interactions, redelivered copies
    of earlier records (`duplicate_rate`) and bad payloads (`malformed_rate`)."""
    rng = random.Random(seed)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    g = Generated()
    n_dup = int(n * duplicate_rate)
    n_bad = int(n * malformed_rate)
    n_good = n - n_dup - n_bad
    for k in range(min(catalogue, n_good)):
        ev = {
            "event_id": f"item-{seed}-{k}",
            "ts": now - 3_600_000,
            "item_id": f"i{k}",
            "category_path": [f"c{k % 5}", f"s{k % 17}"],
            "attributes": {"rank": k},
        }
        g.records.append(("items", f"i{k}".encode(), json.dumps(ev).encode()))
        g.n_items += 1
    good_left = n_good - g.n_items
    slots = ["good"] * good_left + ["dup"] * n_dup + ["bad"] * n_bad
    rng.shuffle(slots)
    good_sent: list[tuple[str, bytes, bytes, str, str]] = []
    for j, slot in enumerate(slots):
        if slot == "dup" and good_sent:
            logical, key, val, user, typ = rng.choice(good_sent)
            g.records.append((logical, key, val))
            g.n_duplicates += 1
            continue
        if slot == "bad":
            raw, why = _malformed(rng, now, max_bytes)
            user = f"u{rng.randrange(users)}"
            g.records.append(("interactions", user.encode(), raw))
            g.malformed.append(("interactions", raw, why))
            continue
        user = f"u{rng.randrange(users)}"
        ts = now - 600_000 + j
        if rng.random() < impressions_rate:
            slate = [f"i{rng.randrange(items)}" for _ in range(5)]
            ev = {
                "event_id": f"s-{seed}-{j}",
                "ts": ts,
                "user_id": user,
                "request_id": f"r-{seed}-{j}",
                "slate": slate,
            }
            rec = ("impressions", user.encode(), json.dumps(ev).encode())
            g.n_impressions += 1
            good_sent.append((*rec, user, ""))
        else:
            typ = rng.choices(TYPES, TYPE_WEIGHTS)[0]
            ev = {
                "event_id": f"e-{seed}-{j}",
                "ts": ts,
                "schema_version": 1,
                "user_id": user,
                "item_id": f"i{min(int(rng.paretovariate(1.2)) - 1, items - 1)}",
                "type": typ,
            }
            rec = ("interactions", user.encode(), json.dumps(ev).encode())
            g.user_counts[user][typ] += 1
            g.n_interactions += 1
            good_sent.append((*rec, user, typ))
        g.records.append(rec)
    return g


def kafka_kwargs(kafka: str | KafkaAccess) -> dict[str, Any]:
    """Client arguments for a bootstrap string (plaintext) or a KafkaAccess (TLS/SASL too)."""
    return (kafka if isinstance(kafka, KafkaAccess) else KafkaAccess(kafka)).client_kwargs()


async def produce(
    kafka: str | KafkaAccess, prefix: str, records: list[tuple[str, bytes, bytes]]
) -> float:
    """Publish records (acks=all) in order; returns seconds taken."""
    from aiokafka import AIOKafkaProducer

    t0 = time.perf_counter()
    producer = AIOKafkaProducer(
        **kafka_kwargs(kafka), linger_ms=20, max_batch_size=256 * 1024, acks="all"
    )
    await producer.start()
    try:
        futs = [await producer.send(f"{prefix}.{lg}", v, key=k) for lg, k, v in records]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return time.perf_counter() - t0


def drain_consumer(kafka: str | KafkaAccess, group: str, *topics: str) -> Any:
    """An aiokafka consumer of `topics` from the beginning, in a new group, that fetches as
    the workers do (`SLATESTREAM_FETCH_MAX_WAIT_MS`: aiokafka's 500 ms hold stalls a drain
    whenever the fetch in flight holds only partitions at their end)."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        *topics,
        **kafka_kwargs(kafka),
        group_id=f"{group}-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )


async def bare_loop(
    kafka: str | KafkaAccess,
    topic: str,
    expected: int,
    timeout_s: float = 120,
    per_message: bool = False,
) -> tuple[int, float]:
    """(events, seconds) of a bare aiokafka consume loop from the beginning (no decode, no
    store): batches from `getmany`, or with `per_message` the `async for msg in consumer`
    loop of aiokafka's documentation (one awaited message at a time)."""
    consumer = drain_consumer(kafka, "bare1" if per_message else "bare", topic)
    await consumer.start()
    try:
        seen = 0
        t0: float | None = None
        deadline = time.monotonic() + timeout_s
        if per_message:
            # bounded by the count, and by timeout_s when the topic runs dry
            async def count() -> None:
                nonlocal seen, t0
                async for _ in consumer:
                    if t0 is None:
                        t0 = time.perf_counter()
                    seen += 1
                    if seen >= expected:
                        return

            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(count(), timeout_s)
        while seen < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            for msgs in batch.values():
                if t0 is None and msgs:
                    t0 = time.perf_counter()
                seen += len(msgs)
        dt = time.perf_counter() - (t0 or time.perf_counter())
        await consumer.commit()
    finally:
        await consumer.stop()
    return seen, dt


def rate(events: int, seconds: float) -> float:
    """Events per second (0 for an empty or instant run)."""
    return events / seconds if seconds > 0 else 0.0


# the floor's writes as one script run per chunk. ARGV: namespace, the number of ids, the
# ids, then per user: user, number of entries, entries, number of types, (type, count)...
FLOOR_LUA = """
local ns = ARGV[1]
local n = tonumber(ARGV[2])
redis.call("SADD", ns .. ":d", unpack(ARGV, 3, 2 + n))
local i = 3 + n
while i <= #ARGV do
  local key = ns .. ":u:" .. ARGV[i]
  local ne = tonumber(ARGV[i + 1])
  redis.call("RPUSH", key .. ":s", unpack(ARGV, i + 2, i + 1 + ne))
  i = i + 2 + ne
  local nt = tonumber(ARGV[i])
  for j = i + 1, i + 2 * nt, 2 do redis.call("HINCRBY", key .. ":c", ARGV[j], ARGV[j + 1]) end
  i = i + 1 + 2 * nt
end
return 0
"""


def floor_writes(
    rows: list[dict[str, Any]],
) -> tuple[list[str], dict[str, list[str]], dict[str, Counter[str]]]:
    """A chunk's least writes: its ids, each user's new sequence entries (in order) and each
    user's counts by type (one append and one count per user and type, as the store's
    script aggregates them)."""
    seq: dict[str, list[str]] = defaultdict(list)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for ev in rows:
        user, typ = ev["user_id"], ev["type"]
        seq[user].append(SEP.join((ev["item_id"], typ, str(ev["ts"]))))  # the store's entry
        counts[user][typ] += 1
    return [ev["event_id"] for ev in rows], seq, counts


def decode_us(gen: Generated) -> float:
    """CPU µs per event to parse each interaction's JSON with the standard library's
    cheapest route (the C scanner on the decoded text, as the worker's fast path does; half
    of `json.loads`), the least of 3 passes: what any worker that validates its input pays
    on top of consuming."""
    values = [val for logical, _, val in gen.records if logical == "interactions"]
    scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__
    best = float("inf")
    for _ in range(3):
        c0 = time.process_time()
        for val in values:
            scan(val.decode(), 0)
        best = min(best, time.process_time() - c0)
    return best / len(values) * 1e6 if values else 0.0


async def redis_floor(redis_url: str, gen: Generated, namespace: str) -> float:
    """Redis CPU µs per event of the least any feature store must write per interaction:
    a dedupe mark, the sequence appends and the counts, aggregated per user over chunks of
    the store's size (`features.redis_store.CHUNK`), with nothing atomic, no popularity or
    item counts and no reads; the cheaper of two ways, pipelined commands or a script run
    per chunk. A lower bound on the store's cost, for the CPU budget the ratio target leaves
    (see `run_async`)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    script = client.register_script(FLOOR_LUA)
    rows = [json.loads(val) for logical, _, val in gen.records if logical == "interactions"]
    if not rows:
        return 0.0
    chunks = [floor_writes(rows[i : i + CHUNK]) for i in range(0, len(rows), CHUNK)]
    users = sorted({ev["user_id"] for ev in rows})
    costs = []
    try:
        for way in ("pipeline", "script"):
            ns = f"{namespace}{way[0]}"
            c0 = await redis_cpu_seconds(client)
            for ids, seq, counts in chunks:
                if way == "pipeline":
                    pipe = client.pipeline(transaction=False)
                    pipe.sadd(f"{ns}:d", *ids)
                    for user, entries in seq.items():
                        pipe.rpush(f"{ns}:u:{user}:s", *entries)
                        for typ, c in counts[user].items():
                            pipe.hincrby(f"{ns}:u:{user}:c", typ, c)
                    await pipe.execute()
                else:
                    args: list[Any] = [ns, len(ids), *ids]
                    for user, entries in seq.items():
                        args += [user, len(entries), *entries, len(counts[user])]
                        for typ, c in counts[user].items():
                            args += [typ, c]
                    await script(args=args)
            costs.append(await redis_cpu_seconds(client) - c0)
            # what was measured wrote every event: a mark, an entry and a count each
            pipe = client.pipeline(transaction=False)
            pipe.scard(f"{ns}:d")
            for user in users:
                pipe.llen(f"{ns}:u:{user}:s")
                pipe.hvals(f"{ns}:u:{user}:c")
            got = await pipe.execute()
            entries = sum(got[1::2])
            counted = sum(int(v) for vals in got[2::2] for v in vals)
            if not got[0] == entries == counted == len(rows):
                raise RuntimeError(f"floor ({way}) wrote {got[0]}, {entries}, {counted}")
            async for key in client.scan_iter(f"{ns}:*", count=1000):
                await client.unlink(key)
    finally:
        await client.aclose()
    return min(costs) / len(rows) * 1e6


async def handler_loop(
    kafka: str | KafkaAccess, settings: Any, store_url: str, expected: int, timeout_s: float = 300
) -> tuple[float, float]:
    """The same FeatureHandler driven by a plain aiokafka loop in this process (no Faust):
    isolates what Faust's per-message machinery costs. Returns (events/s, CPU us/event)."""
    from features import open_store
    from streams.handlers.ingest import FeatureHandler
    from streams.runtime import Record

    store = open_store(store_url)
    handler = FeatureHandler(settings, store)
    consumer = drain_consumer(kafka, "loop", *handler.topics)
    await consumer.start()
    try:
        seen = 0
        t0: float | None = None
        c0 = 0.0
        deadline = time.monotonic() + timeout_s
        while seen < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            records = [
                Record(m.topic, m.value or b"", m.key, m.partition, m.offset, m.timestamp)
                for msgs in batch.values()
                for m in msgs
            ]
            if not records:
                continue
            if t0 is None:
                t0, c0 = time.perf_counter(), time.process_time()
            await handler.handle(records)
            await consumer.commit()  # after the store write, like the Faust worker
            seen += len(records)
        dt = time.perf_counter() - (t0 or time.perf_counter())
        cpu = time.process_time() - c0
    finally:
        await consumer.stop()
        await store.clear()
        await store.close()
    return (seen / dt if dt > 0 else 0.0), (cpu / seen * 1e6 if seen else 0.0)


def worker_env(
    services: Any, prefix: str, namespace: str, state_dir: str, **extra: str
) -> dict[str, str]:
    """Environment of a worker subprocess on these services."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLATESTREAM_")}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = (
        os.environ.get("BENCH_EXTRA_PATH", "")
        + os.pathsep
        + root
        + os.pathsep
        + env.get("PYTHONPATH", "")
    )
    env.update(
        SLATESTREAM_KAFKA_BOOTSTRAP=services.kafka_bootstrap,
        SLATESTREAM_REDIS_URL=services.redis_url,
        SLATESTREAM_STORE_URL=with_namespace(services.redis_url, namespace),
        SLATESTREAM_TOPIC_PREFIX=prefix,
        SLATESTREAM_STATE_DIR=state_dir,
        **extra,
    )
    return env


def start_worker(
    env: dict[str, str], roles: str, log_path: Path, loglevel: str | None = None
) -> subprocess.Popen[bytes]:
    """`python -m streams worker --role ROLES [--loglevel L]` in its own process group."""
    log = log_path.open("ab")
    level = ["--loglevel", loglevel] if loglevel else []
    return subprocess.Popen(
        [sys.executable, "-m", "streams", "worker", "--role", roles, *level],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def sigterm_and_wait(proc: subprocess.Popen[bytes], timeout_s: float) -> float | None:
    """SIGTERM the worker's group; the seconds it took to exit, None if not within timeout_s."""
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - t0


def stop_worker(proc: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    """SIGTERM the worker's group, then SIGKILL."""
    if proc.poll() is None and sigterm_and_wait(proc, timeout_s) is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def rss_mb(pid: int) -> float:
    """Current resident set size of a process (MB) from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of a process (threads of one name summed), from /proc."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            head, rest = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        name = head.split("(", 1)[1] if tid != str(pid) else "main"
        f = rest.split()
        out[name] = out.get(name, 0.0) + (int(f[11]) + int(f[12])) / tick
    return out


async def redis_cpu_seconds(client: Any) -> float:
    """CPU seconds the Redis server has used (INFO cpu)."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process (MB) from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def _wait_applied(store: Any, expected: int, timeout_s: float) -> tuple[float, float]:
    """Wait until the store's global interaction count reaches `expected`.

    Returns (time the first update was seen, time the last one was)."""
    first: float | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        total = (await store.global_counts()).get("_all", 0)
        now = time.perf_counter()
        if total and first is None:
            first = now
        if total >= expected:
            return first or now, now
        await asyncio.sleep(0.02)
    raise TimeoutError(f"store reached {total} of {expected} events in {timeout_s}s")


@dataclass
class Drain:
    """One feature worker draining a topic into the store: first to last store update."""

    seconds: float
    worker_cpu_s: float
    redis_cpu_s: float
    peak_rss_mb: float
    threads0: dict[str, float]
    threads1: dict[str, float]


async def drain_with_worker(
    env: dict[str, str], store_url: str, expected: int, tmp: Path, timeout_s: float = 600
) -> Drain:
    """Start `slatestream worker --role features` with `env`, wait until `store_url` holds
    `expected` interactions, and measure the drain (CPU from the first store update on);
    the store namespace is cleared afterwards."""
    from features import open_store

    store = open_store(store_url)
    proc = start_worker(env, "features", tmp / "worker.log")
    peak = 0.0
    cpu = {"worker0": 0.0, "worker1": 0.0, "redis0": 0.0, "redis1": 0.0}
    threads0: dict[str, float] = {}
    threads1: dict[str, float] = {}
    try:
        wait = asyncio.ensure_future(_wait_applied(store, expected, timeout_s))
        started = False
        while not wait.done():
            peak = max(peak, rss_mb(proc.pid))
            if proc.poll() is not None:
                wait.cancel()
                raise RuntimeError(f"worker exited {proc.returncode}; see {tmp}/worker.log")
            if not started and await store.global_counts():
                # first update seen: CPU counters from here on are the drain's
                cpu["worker0"] = cpu_seconds(proc.pid)
                threads0 = thread_cpu_seconds(proc.pid)
                cpu["redis0"] = await redis_cpu_seconds(store.client)
                started = True
            await asyncio.sleep(0.05)
        first, last = wait.result()
        cpu["worker1"] = cpu_seconds(proc.pid)
        threads1 = thread_cpu_seconds(proc.pid)
        cpu["redis1"] = await redis_cpu_seconds(store.client)
        peak = max(peak, peak_rss_mb(proc.pid))
    finally:
        stop_worker(proc)
        await store.clear()
        await store.close()
    return Drain(
        last - first,
        cpu["worker1"] - cpu["worker0"],
        cpu["redis1"] - cpu["redis0"],
        peak,
        threads0,
        threads1,
    )


async def run_async(quick: bool, services: Any = None, n: int | None = None) -> dict[str, Any]:
    """The benchmark; starts its own stack when `services` is None."""
    from deploy import stack
    from streams.broker import ensure_topics
    from streams.config import Settings

    own_dir = None
    if services is None:
        own_dir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
        jars = stack.ensure_kafka_jars(stack.default_state_dir())
        (own_dir / jars.name).symlink_to(jars)
        st = stack.up(own_dir)

        @dataclass
        class _S:
            kafka_bootstrap: str
            redis_url: str

        services = _S(st.kafka_bootstrap, st.redis_url)
    n = n or (100_000 if quick else 200_000)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    ns = f"b{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_bootstrap=services.kafka_bootstrap, topic_prefix=prefix, partitions=4)
    ensure_topics(settings)
    gen = generate_events(
        n, users=5_000, duplicate_rate=0.0, malformed_rate=0.0, catalogue=0, impressions_rate=0.0
    )
    produce_s = await produce(services.kafka_bootstrap, prefix, gen.records)
    topic = f"{prefix}.interactions"
    c0 = time.process_time()
    bare = rate(*await bare_loop(services.kafka_bootstrap, topic, gen.n_interactions))
    bare_cpu = time.process_time() - c0
    bare1 = rate(
        *await bare_loop(services.kafka_bootstrap, topic, gen.n_interactions, per_message=True)
    )
    floor = await redis_floor(services.redis_url, gen, f"{ns}f")
    decode = decode_us(gen)
    loop_rate, loop_cpu = await handler_loop(
        services.kafka_bootstrap,
        settings,
        f"{services.redis_url}?namespace={ns}x",
        gen.n_interactions,
    )
    tmp = tempfile.mkdtemp(prefix="bench-worker-")
    try:
        drain = await drain_with_worker(
            worker_env(services, prefix, ns, tmp),
            f"{services.redis_url}?namespace={ns}",
            gen.n_interactions,
            Path(tmp),
        )
    finally:
        if own_dir is not None:
            stack.down(own_dir)
    n_total = len(gen.records)
    bare_us = bare_cpu / n_total * 1e6  # the bare loop's own CPU per event
    worker_rate = n_total / drain.seconds if drain.seconds > 0 else 0.0
    w_cpu, r_cpu = drain.worker_cpu_s, drain.redis_cpu_s
    threads0, threads1 = drain.threads0, drain.threads1
    peak = drain.peak_rss_mb
    return {
        "bare_cpu_us_per_event": round(bare_us, 1),
        "handler_loop_events_per_s": round(loop_rate),
        "handler_loop_cpu_us_per_event": round(loop_cpu, 1),
        "worker_cpu_us_per_event": round(w_cpu / n_total * 1e6, 1),
        "redis_cpu_us_per_event": round(r_cpu / n_total * 1e6, 1),
        "worker_events_per_cpu_s": round(n_total / w_cpu) if w_cpu else None,
        # per thread (Faust runs the Kafka consumer in a thread of its own)
        "worker_thread_cpu_us_per_event": {
            name: round((t - threads0.get(name, 0.0)) / n_total * 1e6, 1)
            for name, t in sorted(threads1.items(), key=lambda kv: -kv[1])
            if t - threads0.get(name, 0.0) > 0
        },
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "events": n_total,
        "interactions": gen.n_interactions,
        "produce_s": round(produce_s, 2),
        "bare_aiokafka_events_per_s": round(bare),
        "worker_events_per_s": round(worker_rate),
        "ratio_worker_to_bare": round(worker_rate / bare, 3) if bare else None,
        "bare_per_message_events_per_s": round(bare1),
        "ratio_worker_to_bare_per_message": round(worker_rate / bare1, 3) if bare1 else None,
        # the target ratio leaves the worker, Redis and the broker this much CPU per event
        # (all cores), to compare with the least any worker needs (below)
        "cpu_budget_at_target_ratio_us_per_event": (
            round((os.cpu_count() or 1) / (TARGET_RATIO * bare) * 1e6, 2) if bare else None
        ),
        "redis_floor_cpu_us_per_event": round(floor, 2),
        "json_decode_cpu_us_per_event": round(decode, 2),
        # any worker pays the store's floor, the bare loop's own consuming and the decode
        "least_cpu_us_per_event": round(floor + bare_us + decode, 2),
        "worker_peak_rss_mb": round(peak, 1),
        "targets": {"events_per_s": 20_000, "ratio": TARGET_RATIO, "rss_mb": 300},
    }


def run(quick: bool, services: Any = None) -> dict[str, Any]:
    """Run the benchmark (sync wrapper); `services` has kafka_bootstrap and redis_url."""
    return asyncio.run(run_async(quick, services))


def main(argv: list[str] | None = None) -> int:
    """CLI: print the results as JSON."""
    p = argparse.ArgumentParser(prog="python -m bench.bench_ingest", description=__doc__)
    p.add_argument("--quick", action="store_true", help="100k events instead of 200k")
    p.add_argument("--events", type=int, default=None)
    p.add_argument("--kafka", default=None, help="existing broker host:port")
    p.add_argument("--redis", default=None, help="existing redis URL")
    args = p.parse_args(argv)
    services = None
    if args.kafka and args.redis:

        @dataclass
        class _S:
            kafka_bootstrap: str
            redis_url: str

        services = _S(args.kafka, args.redis)
    out = asyncio.run(run_async(args.quick, services, args.events))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
