"""What TLS and SASL cost the feature worker: the same events drained from the same broker
over its PLAINTEXT listener into Redis, and over its SASL_SSL listener (SCRAM-SHA-512) into
Redis's TLS port, one after the other in one run, beside a bare aiokafka loop on each.

Starts its own local stack with `stack up --secure` (the runner's shared stack has no
secured listener).

    python -m bench.bench_security [--quick] [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.bench_ingest import (
    bare_loop,
    drain_with_worker,
    generate_events,
    produce,
    rate,
    worker_env,
)
from streams.config import load_settings, settings_kwargs
from streams.kafka_access import KafkaAccess


async def _one(label: str, env_settings: dict[str, str], n: int, tmp: Path) -> dict[str, Any]:
    """Produce n events under a fresh prefix, drain them bare, then with the worker, all on
    the broker and Redis `env_settings` (SLATESTREAM_* variables) describe."""
    from types import SimpleNamespace

    from streams.broker import ensure_topics

    prefix = f"sec{uuid.uuid4().hex[:8]}"
    ns = f"s{uuid.uuid4().hex[:8]}"
    settings = load_settings(**settings_kwargs(env_settings), topic_prefix=prefix, partitions=4)
    access = KafkaAccess.of(settings)
    redis_url = settings.redis_url or ""
    ensure_topics(settings)
    gen = generate_events(
        n, users=5_000, duplicate_rate=0.0, malformed_rate=0.0, catalogue=0, impressions_rate=0.0
    )
    produce_s = await produce(access, prefix, gen.records)
    c0 = time.process_time()
    bare = rate(*await bare_loop(access, f"{prefix}.interactions", gen.n_interactions))
    bare_cpu = time.process_time() - c0
    services = SimpleNamespace(kafka_bootstrap=access.bootstrap, redis_url=redis_url)
    env = worker_env(services, prefix, ns, str(tmp))
    env.update({k: v for k, v in env_settings.items() if k.startswith("SLATESTREAM_KAFKA_")})
    work = tmp / label
    work.mkdir()
    drain = await drain_with_worker(env, env["SLATESTREAM_STORE_URL"], gen.n_interactions, work)
    total = len(gen.records)
    return {
        "events": total,
        "produce_events_per_s": round(total / produce_s),
        "bare_aiokafka_events_per_s": round(bare),
        "bare_cpu_us_per_event": round(bare_cpu / total * 1e6, 1),
        "worker_events_per_s": round(total / drain.seconds) if drain.seconds > 0 else 0,
        "worker_cpu_us_per_event": round(drain.worker_cpu_s / total * 1e6, 1),
        "redis_cpu_us_per_event": round(drain.redis_cpu_s / total * 1e6, 1),
        "worker_peak_rss_mb": round(drain.peak_rss_mb, 1),
    }


async def run_async(quick: bool, n: int | None = None) -> dict[str, Any]:
    """Both modes on one private secured stack (stopped afterwards)."""
    from deploy import stack

    n = n or (50_000 if quick else 100_000)
    root = Path(tempfile.mkdtemp(prefix="bench-security-"))
    jars = stack.ensure_kafka_jars(stack.default_state_dir())
    (root / jars.name).symlink_to(jars)
    try:
        state = stack.up(root, secure=True)
        secure = state.secure_env()
        plain_env = {
            "SLATESTREAM_KAFKA_BOOTSTRAP": state.kafka_bootstrap,
            "SLATESTREAM_REDIS_URL": state.redis_url,
        }
        secure_env = {f"SLATESTREAM_{k}": v for k, v in secure.items()}
        plain = await _one("plaintext", plain_env, n, root)
        tls = await _one("sasl_ssl", secure_env, n, root)
    finally:
        stack.down(root)
        shutil.rmtree(root, ignore_errors=True)

    def ratio(key: str) -> float | None:
        return round(tls[key] / plain[key], 3) if plain[key] else None

    def figure(name: str, key: str, unit: str, higher: bool = True) -> dict[str, Any]:
        return {
            "name": name,
            "value": tls[key],
            "unit": unit,
            "baseline_name": "the same over PLAINTEXT, same broker and Redis, same run",
            "baseline": plain[key],
            "ratio": ratio(key),
            "higher_is_better": higher,
        }

    return {
        "figures": [
            figure("feature worker over SASL_SSL + TLS Redis", "worker_events_per_s", "events/s"),
            figure(
                "feature worker CPU per event, SASL_SSL + TLS Redis",
                "worker_cpu_us_per_event",
                "µs",
                higher=False,
            ),
            figure("bare aiokafka loop over SASL_SSL", "bare_aiokafka_events_per_s", "events/s"),
        ],
        "plaintext": plain,
        "sasl_ssl_scram_tls_redis": tls,
        "secure_to_plain_worker_events_per_s": ratio("worker_events_per_s"),
        "secure_to_plain_bare_events_per_s": ratio("bare_aiokafka_events_per_s"),
        "secure_to_plain_worker_cpu_per_event": ratio("worker_cpu_us_per_event"),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def run(quick: bool) -> dict[str, Any]:
    """Run the benchmark (sync wrapper)."""
    return asyncio.run(run_async(quick))


def main(argv: list[str] | None = None) -> int:
    """CLI: print the results as JSON."""
    p = argparse.ArgumentParser(prog="python -m bench.bench_security", description=__doc__)
    p.add_argument("--quick", action="store_true", help="50k events instead of 100k")
    p.add_argument("--events", type=int, default=None)
    args = p.parse_args(argv)
    if args.events is not None and args.events < 1000:
        p.error("--events must be at least 1000")
    print(json.dumps(asyncio.run(run_async(args.quick, args.events)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
