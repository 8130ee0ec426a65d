"""Scorer failover: two scorer processes share the requests; one is stopped under load.

With SIGKILL the dead worker's partitions wait for its Kafka session to time out
(`SLATESTREAM_SESSION_TIMEOUT_S`); the same run with 60 s (Faust's own default) is the
baseline. With SIGTERM the worker leaves the group at once. Reported: the longest wait of a
request sent after the stop, how many waited over 1 s, unanswered and duplicate answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from bench.bench_ingest import start_worker, stop_worker, worker_env
from bench.bench_scorer import _catalogue, _now, _publish_model

RATE = 50.0  # requests/s: far below capacity, so waits are failover, not queueing
USERS = 1000


async def scenario(
    services: Any, sig: signal.Signals, session_s: float, before_s: float, after_s: float
) -> dict[str, Any]:
    """Features + two scorers; `sig` to one scorer `before_s` into the load; measure."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from streams.broker import ensure_topics
    from streams.config import load_settings

    boot = services.kafka_bootstrap
    prefix = f"fo{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    _publish_model(tmp / "registry")
    ensure_topics(load_settings(kafka_bootstrap=boot, topic_prefix=prefix))
    env = worker_env(
        services,
        prefix,
        prefix,
        str(tmp / "state"),
        SLATESTREAM_REGISTRY_URL=str(tmp / "registry"),
        SLATESTREAM_SESSION_TIMEOUT_S=str(session_s),
    )
    workers = [start_worker(env, "features", tmp / "features.log")]
    # INFO: the logs show every rebalance and assignment (kept when a request goes unanswered)
    scorers = [start_worker(env, "scorer", tmp / f"scorer{i}.log", "info") for i in range(2)]
    producer = AIOKafkaProducer(bootstrap_servers=boot, linger_ms=0)
    consumer = AIOKafkaConsumer(
        f"{prefix}.recommendations",
        bootstrap_servers=boot,
        group_id=f"g{prefix}",
        auto_offset_reset="latest",
        fetch_max_wait_ms=100,
    )
    await producer.start()
    await consumer.start()
    got: dict[str, list[float]] = {}

    async def receive() -> None:
        async for m in consumer:
            rid = json.loads(m.value)["request_id"]
            got.setdefault(rid, []).append(time.monotonic())

    async def send(i: int, rid: str) -> float:
        user = f"u{i % USERS}"
        req = {"event_id": f"e{rid}", "ts": _now(), "schema_version": 1, "request_id": rid}
        req.update(user_id=user, k=10)
        t = time.monotonic()
        await producer.send(f"{prefix}.requests", json.dumps(req).encode(), key=user.encode())
        return t

    receiver = asyncio.create_task(receive())
    try:
        for topic, key, value in _catalogue(prefix):
            await producer.send(topic, value, key=key.encode())
        await producer.flush()
        # warm up until 40 requests in a row over many users are all answered (both serving)
        i, deadline = 0, time.monotonic() + 180
        while time.monotonic() < deadline:
            ids = [f"w{i + j}" for j in range(40)]
            for j, rid in enumerate(ids):
                await send(i + j, rid)
            i += 40
            await asyncio.sleep(3)
            if all(r in got for r in ids):
                break
        await asyncio.sleep(5)  # the group settles
        sent: dict[str, float] = {}
        stopped_at = 0.0
        start = time.monotonic()
        for j in range(int(RATE * (before_s + after_s))):
            delay = start + j / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not stopped_at and j >= RATE * before_s:
                os.killpg(scorers[0].pid, sig)
                stopped_at = time.monotonic()
            sent[f"q{j}"] = await send(j, f"q{j}")
        await asyncio.sleep(5)
    finally:
        receiver.cancel()
        await consumer.stop()
        await producer.stop()
        for w in [*scorers, *workers]:
            stop_worker(w)
    after = {r: t for r, t in sent.items() if t >= stopped_at}
    waits = np.array([got[r][0] - t for r, t in after.items() if r in got])
    return {
        "signal": sig.name,
        "session_timeout_s": session_s,
        "sent": len(sent),
        "unanswered": sum(1 for r in sent if r not in got),
        "duplicates": sum(1 for r in sent if len(got.get(r, ())) > 1),
        "max_wait_s": round(float(waits.max()), 2) if waits.size else None,
        "p99_wait_s": round(float(np.percentile(waits, 99)), 2) if waits.size else None,
        "waited_over_1s": int((waits > 1.0).sum()),
        **({"logs": str(tmp)} if len(got.keys() & sent.keys()) < len(sent) else {}),
    }


def _figures(kill: dict[str, Any], base: dict[str, Any], term: dict[str, Any]) -> list[dict]:
    """Figures for BENCHMARKS.md, each beside the 60 s session timeout run where it applies."""
    peer = "same, SIGKILL with a 60 s session timeout (Faust's default)"
    s = kill["session_timeout_s"]
    out = []
    for key, label, unit in [
        ("max_wait_s", f"SIGKILL, session {s:g} s: longest wait of a request", "s"),
        ("waited_over_1s", f"SIGKILL, session {s:g} s: requests waiting > 1 s", "requests"),
        ("duplicates", f"SIGKILL, session {s:g} s: answered twice", "requests"),
        ("unanswered", f"SIGKILL, session {s:g} s: unanswered", "requests"),
    ]:
        b = base[key]
        ratio = kill[key] / b if b else None
        out.append(dict(name=label, value=kill[key], unit=unit, baseline_name=peer, baseline=b))
        out[-1]["ratio"] = round(ratio, 3) if ratio is not None else None
    for key, label, unit in [
        ("max_wait_s", "SIGTERM: longest wait of a request", "s"),
        ("duplicates", "SIGTERM: answered twice", "requests"),
        ("unanswered", "SIGTERM: unanswered", "requests"),
    ]:
        out.append(dict(name=label, value=term[key], unit=unit, baseline_name=None))
    return out


def _after_s(sig: signal.Signals, session_s: float) -> float:
    """Load after the stop: 15 s, plus the session timeout a SIGKILLed worker holds its
    partitions for."""
    return session_s + 15.0 if sig == signal.SIGKILL else 15.0


async def run_async(services: Any, session_s: float = 10.0) -> dict[str, Any]:
    """The three scenarios, one after the other, on the same broker and Redis."""
    kill = await scenario(
        services, signal.SIGKILL, session_s, 5.0, _after_s(signal.SIGKILL, session_s)
    )
    base = await scenario(services, signal.SIGKILL, 60.0, 5.0, _after_s(signal.SIGKILL, 60.0))
    term = await scenario(
        services, signal.SIGTERM, session_s, 5.0, _after_s(signal.SIGTERM, session_s)
    )
    return {"figures": _figures(kill, base, term), "runs": [kill, base, term]}


def run(quick: bool, services: Any = None) -> dict[str, Any]:
    """Benchmark entry point for `python -m bench` (needs a broker and Redis)."""
    if services is None:
        raise SystemExit("bench_failover needs --kafka and --redis (or `python -m bench`)")
    return asyncio.run(run_async(services))


async def repeat(services: Any, sig: signal.Signals, runs: int, session_s: float) -> dict:
    """One scenario `runs` times (a rare failure needs many): each run's line, then totals."""
    results = []
    for _ in range(runs):
        r = await scenario(services, sig, session_s, 5.0, _after_s(sig, session_s))
        print(json.dumps(r), flush=True)
        results.append(r)
    waits = [r["max_wait_s"] for r in results if r["max_wait_s"] is not None]
    return {
        "signal": sig.name,
        "runs": runs,
        "runs_with_unanswered": sum(1 for r in results if r["unanswered"]),
        "unanswered": sum(r["unanswered"] for r in results),
        "answered_twice_per_run": sorted(r["duplicates"] for r in results),
        "longest_wait_s": [min(waits), max(waits)] if waits else None,
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: print the figures as JSON (or, with --runs, one scenario repeated)."""
    p = argparse.ArgumentParser(prog="python -m bench.bench_failover", description=__doc__)
    p.add_argument("--kafka", required=True)
    p.add_argument("--redis", required=True)
    p.add_argument("--session-timeout", type=float, default=10.0)
    p.add_argument(
        "--runs", type=int, default=0, help="repeat one scenario this many times (1-100)"
    )
    p.add_argument("--signal", choices=("SIGTERM", "SIGKILL"), default="SIGTERM")
    args = p.parse_args(argv)
    if args.runs and not 1 <= args.runs <= 100:
        p.error("--runs must be between 1 and 100")
    from streams.broker import check_broker
    from streams.config import load_settings
    from streams.errors import SlatestreamError

    try:  # one line, not a traceback from deep in the run, for a broker that is not there
        check_broker(load_settings(kafka_bootstrap=args.kafka, redis_url=args.redis))
    except SlatestreamError as exc:
        p.error(str(exc))
    services = SimpleNamespace(kafka_bootstrap=args.kafka, redis_url=args.redis)
    if args.runs:
        sig = signal.Signals[args.signal]
        out = asyncio.run(repeat(services, sig, args.runs, args.session_timeout))
    else:
        out = asyncio.run(run_async(services, args.session_timeout))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
