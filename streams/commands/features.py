"""`slatestream features rebuild`: replay the feature topics from the beginning into a store.

The log is the source of truth: replaying `<prefix>.items`, then `<prefix>.impressions`,
then `<prefix>.interactions` (each partition from offset 0 up to the end offsets seen at
the start) through the same FeatureService the worker runs yields the same features in an
empty store. Items go first so every interaction finds its item's category (affinities).
Bad records are counted, not re-published (the live worker already dead-lettered them).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from features import FeatureStore, open_store
from streams.broker import quiet_kafka_logs
from streams.commands import with_actions
from streams.config import Settings, load_settings
from streams.errors import SlatestreamError
from streams.kafka_access import KafkaAccess
from streams.log_reader import read_to_end
from streams.services.feature_service import FeatureService, store_config
from streams.topics import topic_name

REPLAY_ORDER = ("items", "impressions", "interactions")


@dataclass
class RebuildResult:
    """What a rebuild read and applied."""

    records: int = 0
    applied: int = 0
    duplicates: int = 0
    dead: int = 0
    seconds: float = 0.0
    #: records each replayed topic held when the rebuild started (absent topics: 0)
    held: dict[str, int] = field(default_factory=dict)


def _held(settings: Settings) -> dict[str, dict[int, tuple[int, int]]]:
    """(first, end) offsets of the replayed topics' partitions (`broker.held_offsets`)."""
    from streams.broker import held_offsets

    return held_offsets(settings, [topic_name(settings, t) for t in REPLAY_ORDER])


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `features rebuild`."""
    fsub = with_actions(sub, "features", "feature store maintenance", ("rebuild", "show"))
    r = fsub.add_parser(
        "rebuild", help="replay the feature topics from the beginning into an empty store"
    )
    r.add_argument("--store", default=None, help="target store URL (default: the configured one)")
    r.add_argument("--force", action="store_true", help="clear a non-empty target store first")
    r.add_argument("--batch", type=int, default=2000, help="records per store update")
    r.set_defaults(func=run_rebuild)
    show = fsub.add_parser("show", help="print features of users / items / popular now as JSON")
    show.add_argument("--store", default=None, help="store URL (default: the configured one)")
    show.add_argument("--user", action="append", default=[], help="user id (repeatable)")
    show.add_argument("--item", action="append", default=[], help="item id (repeatable)")
    show.add_argument("--popular", type=int, default=0, help="top-N popular items now")
    show.set_defaults(func=run_show)


async def rebuild(
    settings: Settings,
    store: FeatureStore,
    *,
    force: bool = False,
    batch: int = 2000,
    timeout_s: float = 30.0,
    announce: Callable[[str], None] | None = None,
) -> RebuildResult:
    """Replay items, impressions and interactions from offset 0 to the current end into
    `store` (which must be empty unless `force`, which clears it). The broker is checked
    first: the store is left untouched unless the interactions topic exists and holds
    records (`announce` gets one line saying how many each topic holds)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    if not settings.kafka_bootstrap:
        raise SlatestreamError("SLATESTREAM_KAFKA_BOOTSTRAP: not set (rebuild reads the log)")
    # the log first: the store is cleared only once the broker answers and holds interactions
    offsets = await asyncio.to_thread(_held, settings)
    res = RebuildResult(
        held={t: sum(e - f for f, e in parts.values()) for t, parts in offsets.items()}
    )
    source = topic_name(settings, "interactions")
    if not offsets[source]:
        raise SlatestreamError(
            f"rebuild: topic {source} does not exist on {settings.kafka_bootstrap} (check "
            "SLATESTREAM_TOPIC_PREFIX); the store was not touched"
        )
    if res.held[source] <= 0:
        raise SlatestreamError(
            f"rebuild: topic {source} holds no records (check SLATESTREAM_TOPIC_PREFIX); "
            "the store was not touched"
        )
    if announce is not None:
        held = ", ".join(f"{n} {t}" for t, n in res.held.items())
        announce(f"# rebuilding from {held} records")
    if not await store.is_empty():
        if not force:
            raise SlatestreamError("the target store is not empty (use --force to clear it)")
        await store.clear()
    service = FeatureService(settings, store, worker="features-rebuild")
    t0 = time.perf_counter()
    consumer = AIOKafkaConsumer(
        **KafkaAccess.of(settings).client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch,
    )
    try:
        await consumer.start()
        for logical in REPLAY_ORDER:
            topic = topic_name(settings, logical)
            parts = offsets[topic]
            if not parts:
                continue
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            async for records in read_to_end(consumer, tps, batch=batch, timeout_s=timeout_s):
                out = await service.process(records)
                res.records += len(records)
                res.applied += sum(out.applied.values())
                res.duplicates += sum(out.duplicates.values())
                res.dead += sum(out.dead.values())
    finally:
        await consumer.stop()
    res.seconds = time.perf_counter() - t0
    return res


def run_show(args: argparse.Namespace) -> int:
    """CLI entry: dump what the store holds for some users/items, and global counters."""
    import dataclasses
    import json

    from redis.exceptions import RedisError

    if args.popular < 0:
        raise SlatestreamError(f"--popular must be >= 0, not {args.popular}")
    settings = load_settings()
    url = args.store or settings.effective_store_url
    if not (args.store or settings.store_url or settings.redis_url):
        # nothing configured: the default in-process store is a fresh, empty one
        raise SlatestreamError(
            "show reads the workers' store: set SLATESTREAM_REDIS_URL / SLATESTREAM_STORE_URL "
            "or pass --store redis://…"
        )
    try:
        store = open_store(url, store_config(settings))
    except ValueError as exc:
        raise SlatestreamError(f"--store: {exc}") from None

    async def go() -> dict[str, object]:
        try:
            out: dict[str, object] = {"global": await store.global_counts()}
            if args.user:
                users = await store.get_many(args.user)
                out["users"] = {u: dataclasses.asdict(f) for u, f in users.items()}
            if args.item:
                items = await store.items_many(args.item)
                out["items"] = {i: dataclasses.asdict(f) for i, f in items.items()}
            if args.popular:
                out["popular"] = await store.popular(args.popular)
            return out
        except RedisError as exc:
            raise SlatestreamError(f"feature store {url}: {exc}") from None
        finally:
            await store.close()

    print(json.dumps(asyncio.run(go()), indent=2, default=str))
    return 0


def run_rebuild(args: argparse.Namespace) -> int:
    """CLI entry: rebuild and print one summary line."""
    from aiokafka.errors import KafkaError
    from redis.exceptions import RedisError

    if args.batch < 1:
        raise SlatestreamError(f"--batch must be >= 1, not {args.batch}")
    settings = load_settings()
    # kafka-python warns of what is expected here (no group id, so no auto-commit) and logs an
    # ERROR per failed connection: the command's own one line says what matters
    quiet_kafka_logs(logging.CRITICAL)
    url = args.store or settings.effective_store_url
    if url.startswith("memory:"):
        raise SlatestreamError(
            "rebuild needs a persistent store: set SLATESTREAM_STORE_URL or pass --store redis://…"
        )
    try:
        store = open_store(url, store_config(settings))
    except ValueError as exc:
        raise SlatestreamError(f"--store: {exc}") from None

    async def go() -> RebuildResult:
        try:
            return await rebuild(
                settings, store, force=args.force, batch=args.batch, announce=print
            )
        except RedisError as exc:
            raise SlatestreamError(f"feature store {url}: {exc}") from None
        except KafkaError as exc:
            raise SlatestreamError(f"SLATESTREAM_KAFKA_BOOTSTRAP: {exc}") from None
        finally:
            await store.close()

    res = asyncio.run(go())
    print(
        f"rebuilt {url}: {res.records} records, {res.applied} applied, "
        f"{res.duplicates} duplicates, {res.dead} invalid, {res.seconds:.1f}s"
    )
    return 0
