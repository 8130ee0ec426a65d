"""`slatestream dlq show | redrive`: what the dead-letter topic holds, and publishing again the
records today's settings accept (see `streams.dlq`).

Both read `<prefix>.dlq` from its first record to the end offsets seen at the start, without
a consumer group (nothing is committed; every run reads it all). A redrive publishes each
accepted record's original bytes and key to its original topic; running it twice publishes
them twice, which the workers drop as duplicates (by event_id) within the store's dedupe
window (SLATESTREAM_DEDUPE_TTL_S).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from streams.broker import held_offsets, quiet_kafka_logs
from streams.commands import with_actions
from streams.config import Settings, load_settings
from streams.dlq import Letter, Redrive, Selection, Summary, counts_line, letter_json, preview
from streams.errors import BrokerUnavailable, ConfigError, SlatestreamError
from streams.kafka_access import KafkaAccess
from streams.log_reader import read_to_end
from streams.topics import topic_name

READ_BATCH = 2000
_NOTES = {
    "show": "",
    "redrive": (
        " Restart the workers with the settings that accept them first: a worker still on the"
        " old settings dead-letters the republished records again."
    ),
}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `dlq show` and `dlq redrive`."""
    dsub = with_actions(
        sub, "dlq", "inspect the dead-letter topic; redrive what is valid now", tuple(_NOTES)
    )
    for name, helptext in (
        ("show", "count dead letters by topic and reason; print the newest"),
        ("redrive", "publish again the dead-lettered records today's settings accept"),
    ):
        a = dsub.add_parser(name, help=helptext, description=helptext + "." + _NOTES[name])
        a.add_argument(
            "--reason", action="append", default=[], help="only this reason (repeatable)"
        )
        a.add_argument(
            "--topic",
            action="append",
            default=[],
            help="only records from this topic: interactions or its full name (repeatable)",
        )
        if name == "show":
            a.add_argument("--limit", type=int, default=10, help="newest letters to print (10)")
            a.add_argument(
                "--json", action="store_true", help="print every selected letter as JSON lines"
            )
            a.set_defaults(func=run_show)
        else:
            a.add_argument(
                "--dry-run", action="store_true", help="say what would be published; publish none"
            )
            a.set_defaults(func=run_redrive)


def _dlq_partitions(settings: Settings) -> tuple[str, list[int], int]:
    """The DLQ topic's name, its partitions and how many records it holds now;
    SlatestreamError (one line) when it does not exist (a mistyped prefix, or no worker ever
    ran with it)."""
    if not settings.kafka_bootstrap:
        raise SlatestreamError("SLATESTREAM_KAFKA_BOOTSTRAP: not set (the DLQ is a Kafka topic)")
    quiet_kafka_logs(logging.CRITICAL)
    name = topic_name(settings, "dlq")
    parts = held_offsets(settings, [name])[name]
    if not parts:
        raise SlatestreamError(
            f"topic {name} does not exist on {settings.kafka_bootstrap} "
            "(check SLATESTREAM_TOPIC_PREFIX; workers create it when they start)"
        )
    return name, sorted(parts), sum(end - first for first, end in parts.values())


async def _letters(settings: Settings, topic: str, partitions: list[int]) -> AsyncIterator[Letter]:
    """Every record of the DLQ as a `Letter`, in offset order per partition."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        **KafkaAccess.of(settings).client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=READ_BATCH,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        async for records in read_to_end(consumer, tps, batch=READ_BATCH):
            for rec in records:
                yield Letter.of(rec)
    finally:
        await consumer.stop()


def _run(coro_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run the command's coroutine; Kafka failures become one line."""
    from aiokafka.errors import KafkaError

    try:
        asyncio.run(coro_fn())
    except KafkaError as exc:
        raise BrokerUnavailable(f"SLATESTREAM_KAFKA_BOOTSTRAP: {exc}") from None


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def run_show(args: argparse.Namespace) -> int:
    """Print counts by (topic, reason) and the newest letters (or every letter as JSON)."""
    if args.limit < 0:
        raise ConfigError(f"--limit must be >= 0, not {args.limit}")
    settings = load_settings()
    pick = Selection.of(settings, args.reason, args.topic)
    topic, partitions, held = _dlq_partitions(settings)
    summary = Summary()
    newest: deque[Letter] = deque(maxlen=max(args.limit, 1))

    async def go() -> None:
        async for letter in _letters(settings, topic, partitions):
            chosen = pick.matches(letter)
            summary.add(letter, chosen)
            if not chosen:
                continue
            if args.json:
                print(json.dumps(letter_json(letter)))
            elif args.limit:
                newest.append(letter)

    _run(go)
    if args.json:
        return 0
    print(f"# {topic}: {summary.read} records read ({held} held), {summary.selected} selected")
    if summary.counts:
        width = max(len(t) for t, _ in summary.counts)
        print(f"{'topic':{width}}  {'reason':26}  {'count':>7}  newest (UTC)")
        for (src, reason), n in summary.counts.most_common():
            when = _when(summary.newest_ms[src, reason])
            print(f"{src:{width}}  {reason:26}  {n:>7}  {when}")
    if summary.unreadable:
        print(f"{summary.unreadable} records of {topic} are not dead letters")
    if newest:
        print(f"# the newest {len(newest)}:")
    for letter in newest:
        d = letter.dead
        where = f"dlq {letter.partition}@{letter.offset}"
        if d is None:
            print(f"{where}  (not a dead letter)")
            continue
        print(
            f"{where}  {d.topic}[{d.partition}]@{d.offset}  {d.reason}  {d.detail[:120]}"
            f"  key={d.key!r}  {preview(d.original)}"
        )
    return 0


def run_redrive(args: argparse.Namespace) -> int:
    """Publish the selected letters that today's settings accept; print one summary line."""
    settings = load_settings()
    pick = Selection.of(settings, args.reason, args.topic)
    topic, partitions, _ = _dlq_partitions(settings)
    result = Redrive(settings, int(time.time() * 1000))
    read = 0

    async def go() -> None:
        nonlocal read
        from aiokafka import AIOKafkaProducer

        producer = None
        if not args.dry_run:
            producer = AIOKafkaProducer(
                **KafkaAccess.of(settings).client_kwargs(), acks="all", enable_idempotence=True
            )
            await producer.start()
        deliveries: list[asyncio.Future[Any]] = []
        try:
            async for letter in _letters(settings, topic, partitions):
                read += 1
                if not pick.matches(letter):
                    continue
                emit = result.decide(letter)
                if emit is not None and producer is not None:
                    # queued in DLQ order (a user's events keep their order); acked below
                    deliveries.append(await producer.send(emit.topic, emit.value, key=emit.key))
            # every record is acknowledged (acks=all) before the summary says it was published
            await asyncio.gather(*deliveries)
        finally:
            if producer is not None:
                await producer.stop()

    _run(go)
    verb = "would republish" if args.dry_run else "republished"
    r = result
    print(
        f"{topic}: {read} read; {verb} {r.republished.total()} ({counts_line(r.republished)}); "
        f"{r.still_invalid.total()} still invalid ({counts_line(r.still_invalid)}); "
        f"{r.not_redriven.total()} from topics not redriven ({counts_line(r.not_redriven)}); "
        f"{r.unreadable} not dead letters"
    )
    return 0
