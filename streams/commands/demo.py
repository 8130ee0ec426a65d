"""`slatestream demo`: the whole loop with simulated MovieLens users, then a report.

Embedded by default (one process, in-memory log and store, the same handlers as the
workers). With SLATESTREAM_KAFKA_BOOTSTRAP set, or `--stack local`, it runs the workers as
separate processes on real Kafka and Redis and talks to them as a plain client.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time
import uuid
from pathlib import Path

from streams.config import POLICY_NAMES, Settings, load_settings
from streams.errors import SlatestreamError
from streams.outputs import check_writable_dir


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `demo` subcommand."""
    p = sub.add_parser("demo", help="run the whole loop with simulated users and write a report")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of sessions (60)")
    p.add_argument("--batch", type=int, default=32, help="requests per round (32)")
    p.add_argument("--k", type=int, default=10, help="slate size (10)")
    p.add_argument(
        "--warmup", type=float, default=0.1, help="share of history replayed first (0.1)"
    )
    p.add_argument(
        "--stack",
        choices=["none", "local"],
        default="none",
        help="'local': start Kafka + Redis with the launcher and use them",
    )
    p.add_argument("--out", type=Path, default=Path("demo-report"), help="report directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--arms",
        default="in-slate-ts,ts,greedy",
        help="policies split by user hash (comma-separated)",
    )
    p.add_argument("--no-progress", action="store_true", help="no live progress line")
    p.set_defaults(func=run)


def _settings(
    args: argparse.Namespace, registry: Path, kafka: str | None, redis_url: str | None, prefix: str
) -> tuple[Settings, dict[str, str]]:
    arms = {a.strip(): 1.0 for a in args.arms.split(",") if a.strip()}
    over: dict[str, object] = {
        "topic_prefix": prefix,
        "registry_url": str(registry),
        "policy_arms": arms,
        "attribution_window_ms": 2000,
        "snapshot_every_s": 5.0,
        "reload_interval_s": 1.0,
        "train_every_events": 256,
        "popularity_half_life_s": 600.0,
    }
    if kafka:
        over["kafka_bootstrap"] = kafka
        over["redis_url"] = redis_url
    settings = load_settings(**over)
    import json

    env = dict(os.environ)
    for key, value in over.items():
        if value is not None:
            env[f"SLATESTREAM_{key.upper()}"] = (
                json.dumps(value) if isinstance(value, dict) else str(value)
            )
    env.setdefault("SLATESTREAM_METRICS_PORT", "0")
    return settings, env


def _check_args(args: argparse.Namespace) -> None:
    """Reject bad flags before anything is loaded or started (SlatestreamError, one line)."""
    if not (math.isfinite(args.duration) and args.duration > 0):
        raise SlatestreamError(f"--duration must be a number of seconds > 0, not {args.duration}")
    if args.batch < 1:
        raise SlatestreamError(f"--batch must be >= 1, not {args.batch}")
    if not 1 <= args.k <= 100:
        raise SlatestreamError(f"--k must be in 1..100 (the request schema's limit), not {args.k}")
    if not 0.0 <= args.warmup < 1.0:
        raise SlatestreamError(f"--warmup must be a share in [0, 1), not {args.warmup}")
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in POLICY_NAMES]
    if not arms or unknown:
        what = f"unknown policy {unknown[0]!r}" if unknown else "no policy given"
        raise SlatestreamError(f"--arms: {what}; choose from {', '.join(POLICY_NAMES)}")
    if args.seed < 0:
        raise SlatestreamError(f"--seed must be >= 0, not {args.seed}")
    if args.out.exists() and not args.out.is_dir():
        raise SlatestreamError(f"--out {args.out}: exists and is not a directory")
    # now, in one line, not after the whole run with its results lost
    check_writable_dir(args.out, "--out")


def _check_stack_flag(args: argparse.Namespace, kafka: str | None) -> None:
    """`--stack local` with SLATESTREAM_KAFKA_BOOTSTRAP set: fine when that is the local
    stack's own broker (the exports of `slatestream stack up`), an error otherwise, since
    which broker the demo should create its topics on is then ambiguous."""
    if args.stack != "local" or not kafka:
        return
    from deploy import stack

    state = stack.read_state()
    alive = (stack.status() or {}) if state is not None else {}
    if state is not None and all(alive.values()) and state.kafka_bootstrap == kafka:
        return
    raise SlatestreamError(
        f"--stack local conflicts with SLATESTREAM_KAFKA_BOOTSTRAP={kafka} (not the local "
        "stack's broker): unset SLATESTREAM_KAFKA_BOOTSTRAP to use the local stack, or drop "
        "--stack local to use that broker"
    )


def _check_shared_store(settings: Settings) -> None:
    """In Kafka mode the workers are separate processes that share features through Redis:
    refuse a memory:// store (each would have its own, and no request would be answered)
    and wait (bounded) for the store to answer, naming the URL when it does not."""
    from streams.commands.worker import ping_store

    if settings.effective_store_url.startswith("memory:"):
        raise SlatestreamError(
            f"SLATESTREAM_REDIS_URL: not set; the demo on the broker {settings.kafka_bootstrap} "
            "runs its workers as separate processes that share features through Redis: set "
            "SLATESTREAM_REDIS_URL=redis://host:6379/0, use --stack local without "
            "SLATESTREAM_KAFKA_BOOTSTRAP, or unset it for the embedded demo"
        )
    ping_store(settings)


def run(args: argparse.Namespace) -> int:
    """Run the demo and write the report; prints where it is."""
    _check_args(args)
    from streams.commands.report import RegistrySampler, render_panels
    from streams.demo import driver, report
    from streams.demo.world import World
    from streams.metrics import for_role
    from streams.metrics.common import instrument_in_place
    from streams.threads import limit_threads

    limit_threads()
    base = load_settings()
    kafka, redis_url = base.kafka_bootstrap, base.redis_url
    _check_stack_flag(args, kafka)
    if kafka and base.effective_store_url.startswith("memory:"):
        _check_shared_store(base)  # before any stack is started or any world loaded
    started_stack = False
    if args.stack == "local" and not kafka:
        from deploy import stack

        running = stack.status() or {}
        state = stack.up()  # reuses a stack that is already up
        kafka, redis_url = state.kafka_bootstrap, state.redis_url
        started_stack = not (running and all(running.values()))  # stop only what we started
        print(f"# local stack: KAFKA_BOOTSTRAP={kafka} REDIS_URL={redis_url}")
    mode = "kafka" if kafka else "embedded"
    run_id = uuid.uuid4().hex[:8]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    registry = base.state_dir / "demo" / run_id / "registry"
    settings, env = _settings(args, registry, kafka, redis_url, f"demo-{run_id}")
    if mode == "kafka":
        try:
            _check_shared_store(settings)
        except SlatestreamError:
            if started_stack:
                from deploy import stack

                stack.down()
            raise
    t0 = time.monotonic()
    sampler = RegistrySampler(interval_s=1.0, window_s=10.0)
    print(f"# slatestream demo ({mode}); loading MovieLens-100k ...")
    # one pass over the rating stream every 4,000 requests: many users, in time order
    world = World.movielens(horizon=4_000, warmup_fraction=args.warmup, seed=args.seed)
    cfg = driver.DemoConfig(
        duration_s=args.duration,
        batch=args.batch,
        k=args.k,
        seed=args.seed,
        progress=not args.no_progress,
        answer_timeout_s=10.0 if mode == "embedded" else 60.0,
    )

    async def go() -> driver.DemoResult:
        from streams.demo.transports import EmbeddedTransport, KafkaTransport

        transport: driver.Transport
        if mode == "embedded":
            et = EmbeddedTransport(settings)
            for handler in et.handlers:  # the workers' metrics, sampled in this process
                instrument_in_place(handler, for_role(handler.name))
            sampler.start()
            transport = et
        else:
            kt = KafkaTransport(settings, env, out / "logs")
            await kt.start()
            transport = kt
        try:
            return await driver.run(transport, world, cfg)
        finally:
            await transport.close()

    try:
        res = asyncio.run(go())
    finally:
        if started_stack:
            from deploy import stack

            stack.down()
    sampler.stop()
    panels = (
        render_panels(sampler.series(), out, title=f"slatestream demo ({mode})", per_panel=False)
        if mode == "embedded"
        else []
    )
    md = report.write(res, out, mode, time.monotonic() - t0, extra_pngs=panels)
    print(f"# report: {md}")
    for arm in sorted(res.slates):
        print(f"{arm}: {res.slates[arm]} slates, CTR {res.ctr(arm):.4f}")
    return 0 if res.answered > 0 else 1
