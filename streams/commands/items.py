"""`slatestream items retire | restore ITEM…`: take items off the recommendations (sold, taken
down) or bring them back, by publishing a new version of each to `<prefix>.items`.

The new version keeps the metadata the feature store holds for the item (category path,
attributes, text), so later clicks on it still count for category affinities; only
`available` changes. Scorers stop serving a retired item within about half a second.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Mapping, Sequence

from pydantic import TypeAdapter, ValidationError

from features import ItemFeatures, open_store
from streams import schemas
from streams.broker import check_broker, quiet_kafka_logs
from streams.commands import with_actions
from streams.config import load_settings
from streams.errors import BrokerUnavailable, ConfigError, SlatestreamError
from streams.kafka_access import KafkaAccess
from streams.topics import topic_name


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `items retire` and `items restore`."""
    isub = with_actions(
        sub,
        "items",
        "retire catalogue items (never served again) or restore them",
        ("retire", "restore"),
    )
    for name, helptext in (
        ("retire", "publish a version of each item with available=false (sold, taken down)"),
        ("restore", "publish a version of each item with available=true"),
    ):
        a = isub.add_parser(name, help=helptext)
        a.add_argument("item_ids", nargs="+", metavar="ITEM", help="item id")
        a.add_argument(
            "--store", default=None, help="store to read the metadata from (default: configured)"
        )
        a.set_defaults(func=run, available=name == "restore")


def versions(items: Mapping[str, ItemFeatures], available: bool, now_ms: int) -> list[schemas.Item]:
    """The new version of each item: the metadata the store knows (none for an unknown item),
    `available` set, stamped now (the newest version wins)."""
    verb = "restore" if available else "retire"
    return [
        schemas.Item(
            event_id=f"{verb}-{item_id}-{now_ms}",
            ts=now_ms,
            item_id=item_id,
            category_path=list(f.category_path),
            attributes=dict(f.attributes),
            text=f.text,
            available=available,
        )
        for item_id, f in items.items()
    ]


async def _known(url: str, item_ids: Sequence[str]) -> dict[str, ItemFeatures]:
    """What the store holds of each item (an unreachable store: `StoreUnavailable`, one line)."""
    store = open_store(url)
    try:
        return await store.items_many(item_ids)
    finally:
        await store.close()


def run(args: argparse.Namespace) -> int:
    """Read the items' metadata, publish their new versions, print one line."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    settings = load_settings()
    if not settings.kafka_bootstrap:
        raise SlatestreamError("SLATESTREAM_KAFKA_BOOTSTRAP: not set (items are a Kafka topic)")
    ids = list(dict.fromkeys(args.item_ids))
    check = TypeAdapter(schemas.Id)
    for item_id in ids:
        try:
            check.validate_python(item_id)
        except ValidationError:
            raise ConfigError(
                f"ITEM {item_id!r}: an item id is 1-{schemas.MAX_ID_LENGTH} characters"
            ) from None
    url = args.store or settings.effective_store_url
    if url.startswith("memory:"):
        raise SlatestreamError(
            "items needs the feature store the workers use (for the items' metadata): set "
            "SLATESTREAM_STORE_URL or pass --store redis://…"
        )
    try:
        known = asyncio.run(_known(url, ids))
    except ValueError as exc:  # a store URL that does not parse
        raise ConfigError(f"--store: {exc}") from None
    events = versions(known, args.available, int(time.time() * 1000))
    for item_id, f in known.items():
        if not f.known:
            print(
                f"slatestream: warning: {item_id} is not in the feature store: its new version "
                "has no category or attributes",
                file=sys.stderr,
            )
    quiet_kafka_logs(logging.CRITICAL)
    check_broker(settings)
    topic = topic_name(settings, "items")
    try:
        producer = KafkaProducer(**KafkaAccess.of(settings).client_kwargs(), acks="all")
        try:
            sent = [producer.send(topic, ev.to_json(), key=ev.item_id.encode()) for ev in events]
            for future in sent:
                future.get(timeout=30)
        finally:
            producer.close()
    except KafkaError as exc:
        raise BrokerUnavailable(f"SLATESTREAM_KAFKA_BOOTSTRAP: {exc}") from None
    verb = "restored" if args.available else "retired"
    print(f"{verb} {len(events)} item(s) on {topic}: {', '.join(ids)}")
    return 0
