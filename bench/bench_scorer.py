"""Scorer benchmarks: throughput per process, end-to-end latency and freshness through Kafka.

1. Throughput: the scorer handler (decode, features from Redis, candidates, policy, encode)
   on batches of requests in one process, per policy, beside a bare top-k over the same
   model (argpartition of the posterior-mean scores: what any scorer must at least do).
2. End to end: a client sends requests at a fixed rate to a real `slatestream worker
   --role scorer` process and measures send → recommendation received; beside a bare
   aiokafka echo process (consume → produce) on the same broker at the same rate; at the
   target rate (500/s) and, first, at lower rates (100, 200, 300/s: where latency bends);
   measured in steady state, after the worker's one-time warm-up.
3. Freshness: during that load, a click is published every 100 ms and timed until the
   feature store shows it to the scorer (what the user's next slate is built from), beside
   the bare produce → consume latency of the echo.
4. Throughput through Kafka: last, a backlog of requests sent at once; the worker's
   answers per second from the first request sent to the last answer (its drain rate: what
   1. measures in-process, plus Faust, the broker and the producer), beside the echo's.
Every load loop is bounded in count and time and runs on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streams.commands.worker import WARMUP_S

N_ITEMS = 2000
CATEGORIES = 20
TIMEOUT_MS = 100  # the request timeout of the timed load phases
LOW_RATES = (100.0, 200.0, 300.0)  # below the target rate: where the knee of the latency is


@dataclass
class _Services:
    kafka_bootstrap: str
    redis_url: str


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _now() -> int:
    return int(time.time() * 1000)


def _catalogue(prefix: str) -> list[tuple[str, str, bytes]]:
    """(topic, key, value): items with categories, then 20k interactions by 1,000 users."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(N_ITEMS):
        ev = {
            "event_id": f"it-{i}",
            "ts": _now(),
            "schema_version": 1,
            "item_id": f"i{i}",
            "category_path": ["cat", f"c{i % CATEGORIES}"],
        }
        out.append((f"{prefix}.items", f"i{i}", json.dumps(ev).encode()))
    for j in range(20_000):
        user = f"u{j % 1000}"
        item = f"i{int(rng.zipf(1.2)) % N_ITEMS}"
        ev = {
            "event_id": f"x-{j}",
            "ts": _now(),
            "schema_version": 1,
            "user_id": user,
            "item_id": item,
            "type": "click",
        }
        out.append((f"{prefix}.interactions", user, json.dumps(ev).encode()))
    return out


def _publish_model(registry: Path) -> str:
    """An untrained Bayesian GRU that knows the catalogue (scoring cost is the same)."""
    from models.gru import BayesGRUModel, GRUConfig
    from models.registry import ModelRegistry

    model = BayesGRUModel(GRUConfig(dim=64, hidden=64))
    for i in range(N_ITEMS):
        model.admit(f"i{i}", f"cat/c{i % CATEGORIES}")
    return f"v{ModelRegistry(registry).publish(model)}"


async def throughput(services: _Services, quick: bool) -> list[dict[str, Any]]:
    """Requests/s of the scorer handler per policy vs a bare top-k over the same model."""
    from features import open_store
    from features.base import InteractionUpdate, ItemUpdate
    from models.registry import ModelRegistry, SnapshotWatcher
    from streams import schemas
    from streams.config import load_settings
    from streams.handlers.scorer import ScorerHandler
    from streams.runtime import Record
    from streams.services.scorer_service import ScorerConfig, ScorerService
    from streams.services.store_view import StoreView

    ns = f"bs{uuid.uuid4().hex[:8]}"
    store = open_store(f"{services.redis_url}?namespace={ns}")
    rng = np.random.default_rng(1)
    events: list[Any] = [
        ItemUpdate(f"it{i}", f"i{i}", _now(), ("cat", f"c{i % CATEGORIES}")) for i in range(N_ITEMS)
    ]
    events += [
        InteractionUpdate(
            f"x{j}", f"u{j % 1000}", f"i{int(rng.zipf(1.2)) % N_ITEMS}", "click", _now(), 1.0
        )
        for j in range(20_000)
    ]
    for b in range(0, len(events), 2000):
        await store.apply_many(events[b : b + 2000])
    reg_dir = Path(tempfile.mkdtemp(prefix="bench-scorer-"))
    _publish_model(reg_dir)
    settings = load_settings(topic_prefix=ns)
    n = 1000 if quick else 4000
    reqs = [
        Record(
            f"{ns}.requests",
            schemas.Request(
                event_id=f"r{i}", ts=_now(), request_id=f"r{i}", user_id=f"u{i % 1000}", k=10
            ).to_json(),
            f"u{i % 1000}".encode(),
        )
        for i in range(n)
    ]
    figures = []
    bare_rps = 0.0
    # the full run asks 4 times per user (1,000 users) without interactions in between, so
    # the per-user state cache saves 3 of 4 GRU passes (the quick run: each user once); the
    # last case turns that cache off
    cases = [("greedy", True), ("ts", True), ("in-slate-ts", True), ("in-slate-ts", False)]
    for policy, reuse in cases:
        svc = ScorerService(
            StoreView(store),
            SnapshotWatcher(ModelRegistry(reg_dir)),
            ScorerConfig(arms={policy: 1.0}, reuse_user_states=reuse),
        )
        handler = ScorerHandler(settings, svc)
        await handler.handle(reqs[:50])  # load the snapshot, warm caches
        select_cpu = _time_calls(svc.policies[policy], "select_many")
        t0, c0 = time.perf_counter(), time.thread_time()
        for b in range(0, n, 50):
            await handler.handle(reqs[b : b + 50])
        rps = n / (time.perf_counter() - t0)
        handler_cpu = time.thread_time() - c0
        if not bare_rps:
            model = svc.model
            assert model is not None
            views = await StoreView(store).user_views([f"u{i}" for i in range(1000)])
            t0 = time.perf_counter()
            for i in range(n):
                state = model.user_state(views[f"u{i % 1000}"].recent)
                s = model.score(state, None)
                np.argpartition(-s, 10)[:10]
            bare_rps = n / (time.perf_counter() - t0)
        figures.append(
            {
                "name": f"scorer throughput, {policy}, 1 process, Redis features"
                + ("" if reuse else ", user states not reused"),
                "value": round(rps, 1),
                "unit": "requests/s",
                "baseline_name": "bare GRU state + top-10 of all items, same model",
                "baseline": round(bare_rps, 1),
                "ratio": round(rps / bare_rps, 3),
                "target": ">= 2000 requests/s" if policy == "in-slate-ts" and reuse else "",
            }
        )
        if policy == "in-slate-ts" and reuse:  # where the time of a request goes
            figures.append(
                {
                    "name": "scorer: the in-slate TS ranking alone (select_many: posterior "
                    "draws, top-k, in-slate fill, propensities), CPU per request",
                    "value": round(select_cpu[0] / n * 1e6, 1),
                    "unit": "µs",
                    "baseline_name": "the whole handler, CPU per request",
                    "baseline": round(handler_cpu / n * 1e6, 1),
                    "ratio": round(select_cpu[0] / handler_cpu, 3),
                }
            )
    await store.close()
    return figures


def _time_calls(obj: Any, method: str) -> list[float]:
    """Wrap obj.method to add each call's CPU time (thread_time) to the returned cell."""
    cell = [0.0]
    inner = getattr(obj, method)

    def timed(*args: Any, **kwargs: Any) -> Any:
        c0 = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            cell[0] += time.thread_time() - c0

    setattr(obj, method, timed)
    return cell


ECHO = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
async def main(boot, src, dst):
    c = AIOKafkaConsumer(src, bootstrap_servers=boot, group_id=src + '-echo',
                         auto_offset_reset='earliest')
    p = AIOKafkaProducer(bootstrap_servers=boot, linger_ms=0)
    await c.start(); await p.start()
    try:
        while True:
            batch = await c.getmany(timeout_ms=20, max_records=500)
            futs = [await p.send(dst, m.value, key=m.key) for ms in batch.values() for m in ms]
            await asyncio.gather(*futs)
    finally:
        await c.stop(); await p.stop()
asyncio.run(main(*sys.argv[1:4]))
"""


@dataclass
class _Answers:
    """What one load phase got back: latencies (ms) of the answers, requests sent, and the
    seconds from the first request sent to the last answer received."""

    lat: list[float]
    n: int
    span_s: float
    expired: list[float] = field(default_factory=list)  # latencies of 'expired' answers

    @property
    def rate(self) -> float:
        """Answers per second over the phase (a backlog's drain rate)."""
        return (len(self.lat) + len(self.expired)) / self.span_s if self.span_s > 0 else 0.0


async def _load(
    boot: str,
    req_topic: str,
    rec_topic: str,
    rate: float,
    seconds: float,
    make: Any,
    rid_of: Any,
    backlog: int = 0,
    expired_of: Any = None,
) -> _Answers:
    """Send `rate` requests/s for `seconds`, or `backlog` requests at once; the answers
    (those `expired_of` says are 'expired' answers apart)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        rec_topic,
        bootstrap_servers=boot,
        auto_offset_reset="latest",
        group_id=f"{rec_topic}-{uuid.uuid4().hex[:6]}",
    )
    producer = AIOKafkaProducer(bootstrap_servers=boot, linger_ms=0)
    await consumer.start()
    await producer.start()
    sent: dict[str, float] = {}
    lat: list[float] = []
    expired: list[float] = []
    n = backlog or int(rate * seconds)
    gap_s = 0.0 if backlog else 1.0 / rate  # a backlog goes out unpaced
    last = [0.0]

    async def receive() -> None:
        while len(lat) + len(expired) < n:
            batch = await consumer.getmany(timeout_ms=50, max_records=1000)
            now = time.perf_counter()
            for msgs in batch.values():
                for m in msgs:
                    rid = rid_of(m.value)
                    if rid in sent:
                        into = expired if expired_of and expired_of(m.value) else lat
                        into.append((now - sent.pop(rid)) * 1000)
                        last[0] = now

    task = asyncio.create_task(receive())
    await asyncio.sleep(1.0)  # consumer assignment before the first send
    start = time.perf_counter()
    for i in range(n):
        delay = start + i * gap_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        key, value, rid = make(i)
        sent[rid] = time.perf_counter()
        await producer.send(req_topic, value, key=key)
    try:
        await asyncio.wait_for(task, timeout=max(30.0, n / 100))
    except TimeoutError:
        task.cancel()
    await producer.stop()
    await consumer.stop()
    return _Answers(lat, n, max(last[0] - start, 0.0), expired)


async def end_to_end(services: _Services, quick: bool, rate: float) -> list[dict[str, Any]]:
    """Latency through Kafka to a scorer worker process, beside a bare echo process."""
    from aiokafka import AIOKafkaProducer

    from streams.broker import ensure_topics
    from streams.config import load_settings

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    version = _publish_model(tmp / "registry")
    settings = load_settings(kafka_bootstrap=services.kafka_bootstrap, topic_prefix=prefix)
    ensure_topics(settings)
    env = {
        **os.environ,
        "SLATESTREAM_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "SLATESTREAM_STORE_URL": f"{services.redis_url}?namespace={prefix}",
        "SLATESTREAM_TOPIC_PREFIX": prefix,
        "SLATESTREAM_REGISTRY_URL": str(tmp / "registry"),
        "SLATESTREAM_STATE_DIR": str(tmp / "state"),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "streams", "worker", "--role", role],
            env=env,
            stdout=(tmp / f"{role}.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for role in ("features", "scorer")
    ]
    echo = subprocess.Popen(
        [
            sys.executable,
            "-c",
            ECHO,
            services.kafka_bootstrap,
            f"{prefix}.echo-in",
            f"{prefix}.echo-out",
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = 10.0 if quick else 30.0
    backlog = 4000 if quick else 10_000
    boot, req_topic, rec_topic = (
        services.kafka_bootstrap,
        f"{prefix}.requests",
        f"{prefix}.recommendations",
    )
    try:
        producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap, linger_ms=5)
        await producer.start()
        for topic, key, value in _catalogue(prefix):
            await producer.send(topic, value, key=key.encode())
        await producer.flush()
        await producer.stop()

        def make_req(i: int, timeout_ms: int | None = None) -> tuple[bytes, bytes, str]:
            rid, user = f"q{i}", f"u{i % 1000}"
            req = {
                "event_id": f"e{rid}",
                "ts": _now(),
                "schema_version": 1,
                "request_id": rid,
                "user_id": user,
                "k": 10,
            }
            if timeout_ms is not None:
                req["timeout_ms"] = timeout_ms
            return user.encode(), json.dumps(req).encode(), rid

        def rid_json(value: bytes) -> str:
            return str(json.loads(value).get("request_id"))

        def is_expired(value: bytes) -> bool:
            return str(json.loads(value).get("error") or "").startswith("expired")

        # wait until the scorer answers (workers started, groups joined, model loaded)
        deadline = time.monotonic() + 120
        probe = await _load(boot, req_topic, rec_topic, 2.0, 1.0, make_req, rid_json)
        while not probe.lat and time.monotonic() < deadline:
            probe = await _load(boot, req_topic, rec_topic, 2.0, 1.0, make_req, rid_json)
        # steady state: past the worker's warm-up freeze (WARMUP_S after its app started, which
        # is before its first answer; until then full collections of the start-up objects take
        # 50-200 ms), which otherwise lands in the first load phase (start-up can take ~8 s)
        await asyncio.sleep(WARMUP_S + 2.0)
        # below capacity first (a backlog from the target rate would spill into them); last,
        # a backlog sent at once: the worker's own throughput through Kafka (its drain rate)
        by_rate: dict[float, tuple[_Answers, _Answers]] = {}
        timed: dict[float, _Answers] = {}
        fresh: list[float] = []
        for j, r in enumerate([*sorted({*LOW_RATES, rate}), float("inf")]):
            fresh_task = (
                asyncio.create_task(freshness(services, prefix, seconds + 1)) if r == rate else None
            )
            count = backlog if r == float("inf") else 0
            got = await _load(
                boot,
                req_topic,
                rec_topic,
                r,
                seconds,
                lambda i, j=j: make_req(100_000 * (j + 1) + i),
                rid_json,
                backlog=count,
            )
            if fresh_task is not None:
                fresh = await fresh_task
            echo_got = await _load(
                boot,
                f"{prefix}.echo-in",
                f"{prefix}.echo-out",
                r,
                seconds,
                lambda i, j=j: (b"k", f"{j}-{i}".encode(), f"{j}-{i}"),
                lambda v: v.decode(),
                backlog=count,
            )
            by_rate[r] = (got, echo_got)
        # requests that wait at most TIMEOUT_MS: at the target rate, and as a backlog sent at
        # once (a scorer behind, as after a failover): expired ones are answered without a slate
        for j, r in enumerate((rate, float("inf")), start=10):
            timed[r] = await _load(
                boot,
                req_topic,
                rec_topic,
                r,
                seconds,
                lambda i, j=j: make_req(100_000 * (j + 1) + i, TIMEOUT_MS),
                rid_json,
                backlog=backlog if r == float("inf") else 0,
                expired_of=is_expired,
            )
    finally:
        for p in (*procs, echo):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in (*procs, echo):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    drained, echo_drained = by_rate.pop(float("inf"))
    out = []
    for r, (got, echo_got) in sorted(by_rate.items()):
        answered = {
            "answered": f"{len(got.lat)}/{got.n}",
            "echo_answered": f"{len(echo_got.lat)}/{echo_got.n}",
        }
        for q in (50, 99):
            out.append(
                _latency_figure(
                    f"end-to-end request->recommendation p{q} at {r:.0f} req/s (model {version})",
                    _pct(got.lat, q),
                    f"bare aiokafka echo p{q}, same rate",
                    _pct(echo_got.lat, q),
                    target="<= 20 ms" if q == 99 and r == rate else "",
                    **answered,
                )
            )
    out.append(
        {
            "name": f"scorer throughput through Kafka, in-slate-ts, 1 worker process, a backlog "
            f"of {backlog} requests sent at once",
            "value": round(drained.rate, 1),
            "unit": "requests/s",
            "baseline_name": "bare aiokafka echo process, same backlog",
            "baseline": round(echo_drained.rate, 1),
            "ratio": round(drained.rate / echo_drained.rate, 3) if echo_drained.rate else None,
            "target": "",
            "answered": f"{len(drained.lat)}/{drained.n}",
            "echo_answered": f"{len(echo_drained.lat)}/{echo_drained.n}",
        }
    )
    for r, got in timed.items():
        n_exp, n_all = len(got.expired), len(got.lat) + len(got.expired)
        answered = {"answered": f"{n_all}/{got.n}", "expired": n_exp}
        if r == float("inf"):
            out.append(
                {
                    "name": f"a backlog of {backlog} requests sent at once, each with "
                    f"timeout_ms={TIMEOUT_MS}: answered per second (expired ones without a slate)",
                    "value": round(got.rate, 1),
                    "unit": "requests/s",
                    "baseline_name": "the same backlog without a timeout (above)",
                    "baseline": round(drained.rate, 1),
                    "ratio": round(got.rate / drained.rate, 3) if drained.rate else None,
                    "target": "",
                    **answered,
                }
            )
            continue
        where = f"at {r:.0f} req/s, every request with timeout_ms={TIMEOUT_MS}"
        out.append(
            _latency_figure(
                f"end-to-end p99 of the slates served {where}",
                _pct(got.lat, 99),
                f"the same without a timeout at {rate:.0f} req/s (above)",
                _pct(by_rate[rate][0].lat, 99),
                **answered,
            )
        )
        out.append(
            {
                "name": f"requests answered 'expired' (no slate) {where}",
                "value": round(100.0 * n_exp / max(n_all, 1), 2),
                "unit": "%",
                "baseline_name": "",
                "baseline": None,
                "ratio": None,
                "target": "",
                **answered,
            }
        )
    echo_lat = by_rate[rate][1].lat
    for q in (50, 99):
        base = _pct(echo_lat, q)
        target = {99: "<= 1000 ms"}.get(q, "")
        out.append(
            _latency_figure(
                f"freshness click->visible to the scorer p{q} (under the load above)",
                _pct(fresh, q),
                f"bare aiokafka echo p{q}",
                base,
                target=target,
                samples=len(fresh),
            )
        )
    return out


def _latency_figure(
    name: str, value: float, base_name: str, base: float, **extra: Any
) -> dict[str, Any]:
    """One latency figure (ms) beside its baseline, in the runner's format."""
    return {
        "name": name,
        "value": round(value, 2),
        "unit": "ms",
        "baseline_name": base_name,
        "baseline": round(base, 2),
        "ratio": round(value / base, 2) if base else None,
        **extra,
    }


async def freshness(services: _Services, prefix: str, seconds: float) -> list[float]:
    """Publish a click every 100 ms; time until the feature store shows it."""
    from aiokafka import AIOKafkaProducer

    from features import open_store

    store = open_store(f"{services.redis_url}?namespace={prefix}")
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap, linger_ms=0)
    await producer.start()
    out: list[float] = []
    end = time.monotonic() + seconds
    i = 0
    try:
        while time.monotonic() < end:
            i += 1
            user, item = f"fresh-{i % 50}", f"i{i % N_ITEMS}"
            ev = {
                "event_id": f"f{uuid.uuid4().hex}",
                "ts": _now(),
                "schema_version": 1,
                "user_id": user,
                "item_id": item,
                "type": "click",
            }
            t0 = time.perf_counter()
            await producer.send_and_wait(
                f"{prefix}.interactions", json.dumps(ev).encode(), key=user.encode()
            )
            deadline = t0 + 5.0
            while time.perf_counter() < deadline:
                f = await store.get(user)
                if f.recent and f.recent[-1].item_id == item:
                    out.append((time.perf_counter() - t0) * 1000)
                    break
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()
        await store.close()
    return out


async def run_async(quick: bool, services: Any = None, rate: float = 500.0) -> dict[str, Any]:
    """All scorer figures; starts its own stack when `services` is None."""
    from deploy import stack
    from streams.threads import limit_threads

    limit_threads(1)
    own = None
    if services is None:
        own = Path(tempfile.mkdtemp(prefix="bench-scorer-stack-"))
        jars = stack.ensure_kafka_jars(stack.default_state_dir())
        (own / jars.name).symlink_to(jars)
        st = stack.up(own)
        services = _Services(st.kafka_bootstrap, st.redis_url)
    try:
        figures = await throughput(services, quick)
        figures += await end_to_end(services, quick, rate)
    finally:
        if own is not None:
            stack.down(own)
    return {"figures": figures}


def run(quick: bool, services: Any = None) -> dict[str, Any]:
    """Benchmark entry point for `python -m bench`."""
    return asyncio.run(run_async(quick, services))


def main(argv: list[str] | None = None) -> int:
    """CLI: print the figures as JSON."""
    p = argparse.ArgumentParser(prog="python -m bench.bench_scorer", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rate", type=float, default=500.0, help="requests/s of the load (500)")
    p.add_argument("--kafka", default=None)
    p.add_argument("--redis", default=None)
    args = p.parse_args(argv)
    services = _Services(args.kafka, args.redis) if args.kafka and args.redis else None
    print(json.dumps(asyncio.run(run_async(args.quick, services, args.rate)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
