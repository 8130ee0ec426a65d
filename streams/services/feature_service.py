"""Feature service: raw records → validated events → one batched feature-store update.

Pure logic over a `features.FeatureStore` (no Kafka): decode and validate each record at
the edge (bad ones become dead-letter emits with the original bytes and a reason), turn
the good ones into the store's input dataclasses, and apply the whole batch in one call
(one Redis round trip). `process` returns only after the store update is durable, so the
driver may commit the batch's offsets right after.

`process` calls may overlap (a driver decodes batch N+1 while N's write is in flight):
the decode runs at once and so does the write, which the store applies in call order
(Redis: on one connection, `features.redis_calls`), so it has batch N+1 queued when it
finishes N and never waits for this event loop (one worker: 86-109k instead of 54-59k
events/s). A call returns only after its predecessor's write succeeded too; if that one
failed, it raises `PreviousBatchFailed`. Its own write may have landed: the driver acks
neither batch, both are delivered again, and the events that landed are duplicates then
(every update is idempotent by event_id).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from features import (
    FeatureEvent,
    FeatureStore,
    ImpressionUpdate,
    InteractionUpdate,
    ItemUpdate,
    StoreConfig,
    StoreUnavailable,
    open_store,
)
from streams import schemas
from streams.config import Settings
from streams.errors import SchemaError
from streams.runtime import Emit, Record
from streams.topics import topic_name

log = logging.getLogger(__name__)

UNKNOWN_TYPE = "unknown_interaction_type"


T = TypeVar("T")


def check_interaction_type(event: schemas.Event, weights: Mapping[str, float]) -> None:
    """SchemaError (`unknown_interaction_type`) for an interaction whose type has no weight."""
    if isinstance(event, schemas.Interaction) and event.type not in weights:
        raise SchemaError(UNKNOWN_TYPE, f"type={event.type!r}")


async def until_available(op: Callable[[], Awaitable[T]], what: str, max_delay_s: float = 5.0) -> T:
    """Run `op` until the store answers, backing off (0.05 s doubling to `max_delay_s`).

    A stream worker must not skip a batch it could not write, nor crash on a Redis
    restart: it waits (its partitions stall, nothing is committed) and retries, which is
    safe because store updates are idempotent by event_id."""
    delay = 0.05
    while True:
        try:
            return await op()
        except StoreUnavailable as exc:
            log.warning("%s: store unavailable (%s); retrying in %.2fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)


_OPTIONAL_INTERACTION = frozenset({"request_id", "position", "value"})
# the C scanner under json.loads: one call per payload instead of four Python frames
# (loads → detect_encoding → decode → raw_decode); anything unusual falls back
_scan_once: Callable[[str, int], tuple[object, int]]
_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__


_MIN_TS_MS = schemas.MIN_TS_MS
_SCHEMA_VERSION = schemas.SCHEMA_VERSION
_SUPPORTED_VERSIONS = schemas.SUPPORTED_SCHEMA_VERSIONS


def fast_interaction(
    raw: bytes, weights: dict[str, float], now_ms: int, max_bytes: int, max_skew_ms: int
) -> InteractionUpdate | None:
    """The store update of a plainly valid interaction, or None to take the full decode.

    A conservative fast path for the hot topic: it accepts only payloads the contract
    (`schemas.decode` as Interaction + a configured type) certainly accepts with the same
    values — UTF-8 JSON with no surrounding whitespace, string ids, an int ts in range,
    schema_version 1 or absent, optional fields absent or null — and leaves everything else
    (including every error) to the full validator, which owns the reason codes. A unit
    test checks the two agree.
    """
    if len(raw) > max_bytes:
        return None
    try:
        text = raw.decode()
        obj, end = _scan_once(text, 0)
    except (ValueError, StopIteration):  # UnicodeDecodeError is a ValueError
        return None
    if end != len(text) or type(obj) is not dict:
        return None
    get = obj.get
    eid = get("event_id")
    user = get("user_id")
    item = get("item_id")
    typ = get("type")
    ts = get("ts")
    # the id checks of _plain_id, inline (three calls per event otherwise)
    if not (
        type(eid) is str
        and type(user) is str
        and type(item) is str
        and 0 < len(eid) <= 256
        and 0 < len(user) <= 256
        and 0 < len(item) <= 256
        and type(typ) is str
        and type(ts) is int
        and typ in weights
        and _MIN_TS_MS <= ts <= now_ms + max_skew_ms
    ):
        return None
    version = get("schema_version", _SCHEMA_VERSION)
    if type(version) is not int or version not in _SUPPORTED_VERSIONS:
        return None
    if not _OPTIONAL_INTERACTION.isdisjoint(obj):
        for key in _OPTIONAL_INTERACTION:
            if get(key) is not None:
                return None
    return InteractionUpdate(eid, user, item, typ, ts, weights[typ])


def _at(update: FeatureEvent, ts: int) -> FeatureEvent:
    """The same update at another time (InteractionUpdate is a named tuple, the rest are
    dataclasses)."""
    if isinstance(update, InteractionUpdate):
        return update._replace(ts=ts)
    return dataclasses.replace(update, ts=ts)


def store_config(settings: Settings) -> StoreConfig:
    """The store aggregation settings (sequence cap, half-lives, dedupe window)."""
    return StoreConfig(
        sequence_length=settings.sequence_length,
        popularity_half_life_s=settings.popularity_half_life_s,
        affinity_half_life_s=settings.affinity_half_life_s,
        dedupe_ttl_s=settings.dedupe_ttl_s,
    )


def open_feature_store(settings: Settings) -> FeatureStore:
    """The configured feature store (`effective_store_url`) with the settings' aggregation."""
    return open_store(settings.effective_store_url, store_config(settings))


async def durability_warnings(settings: Settings) -> list[str]:
    """What in the configured store's backend can lose features or count events twice
    (`FeatureStore.durability_warnings`); none when it does not answer (the writers report
    an outage themselves, with their retries)."""
    store = open_feature_store(settings)
    try:
        return await store.durability_warnings()
    except StoreUnavailable:
        return []
    finally:
        await store.close()


def to_update(event: schemas.Event, weights: dict[str, float]) -> FeatureEvent:
    """Convert a validated contract event to the store's input (weight from settings)."""
    if isinstance(event, schemas.Interaction):
        return InteractionUpdate(
            event.event_id, event.user_id, event.item_id, event.type, event.ts, weights[event.type]
        )
    if isinstance(event, schemas.Impression):
        # an item shown twice in one slate (FINN.no slates repeat some) was shown once more
        slate = tuple(dict.fromkeys(event.slate))
        return ImpressionUpdate(event.event_id, event.user_id, event.request_id, slate, event.ts)
    if isinstance(event, schemas.Item):
        return ItemUpdate(
            event.event_id,
            event.item_id,
            event.ts,
            tuple(event.category_path),
            dict(event.attributes),
            event.text,
            event.available,
        )
    raise TypeError(f"no feature update for {type(event).__name__}")


class PreviousBatchFailed(RuntimeError):
    """An overlapping `process` call gave up because the batch before it failed."""


@dataclass
class FeatureBatch:
    """Outcome of one batch: dead-letter emits, counts, and the event times applied."""

    emits: list[Emit] = field(default_factory=list)
    applied: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    dead: dict[str, int] = field(default_factory=dict)
    event_ts: list[int] = field(default_factory=list)
    store_seconds: float = 0.0


@dataclass
class FeatureStats:
    """Running totals (a hook for metrics and tests)."""

    records: int = 0
    applied: int = 0
    duplicates: int = 0
    dead: int = 0
    batches: int = 0


class FeatureService:
    """Validates interactions, impressions and items and applies them to the store."""

    def __init__(self, settings: Settings, store: FeatureStore, worker: str = "features") -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        store.configure(store_config(settings))
        self.weights = dict(settings.event_weights)
        # items first: a driver that polls topics in order (the embedded log) then knows an
        # item's category before the interactions with it (category affinities)
        self.kinds: dict[str, type[schemas.Event]] = {
            topic_name(settings, "items"): schemas.Item,
            topic_name(settings, "impressions"): schemas.Impression,
            topic_name(settings, "interactions"): schemas.Interaction,
        }
        self.dlq_topic = topic_name(settings, "dlq")
        self.interactions_topic = topic_name(settings, "interactions")
        self.max_skew = settings.max_clock_skew_ms
        self.stats = FeatureStats()
        # resolves to whether the latest call's write and all before it succeeded: the next
        # call reports success only after it
        self._last_write: asyncio.Future[bool] | None = None

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics this service consumes."""
        return tuple(self.kinds)

    def decode(self, record: Record, now_ms: int) -> schemas.Event:
        """Validate one record as the event kind of its topic; SchemaError on any problem."""
        cls = self.kinds.get(record.topic)
        if cls is None:
            raise SchemaError("unknown_topic", record.topic)
        event = schemas.decode_under(self.settings, cls, record.value, now_ms)
        check_interaction_type(event, self.weights)
        return event

    def dead_letter(self, record: Record, error: SchemaError) -> Emit:
        """The DLQ emit for a record: original bytes, position, reason."""
        dl = schemas.DeadLetter.of(
            record.value,
            error,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            worker=self.worker,
        )
        return Emit(self.dlq_topic, dl.to_json(), record.key)

    async def process(self, records: Sequence[Record]) -> FeatureBatch:
        """Validate the batch, apply the good events in one store call, DLQ the rest."""
        out = FeatureBatch()
        now_ms = int(time.time() * 1000)
        updates: list[FeatureEvent] = []
        interactions = self.interactions_topic
        weights, max_bytes, skew = self.weights, self.settings.max_event_bytes, self.max_skew
        horizon = now_ms + schemas.MAX_LEAD_MS  # schemas.capped_ts, inline
        for rec in records:
            update: FeatureEvent | None = None
            if rec.topic == interactions:
                update = fast_interaction(rec.value, weights, now_ms, max_bytes, skew)
            if update is None:
                try:
                    event = self.decode(rec, now_ms)
                except SchemaError as exc:
                    out.emits.append(self.dead_letter(rec, exc))
                    out.dead[exc.reason] = out.dead.get(exc.reason, 0) + 1
                    continue
                update = to_update(event, self.weights)
            out.event_ts.append(update.ts)
            if update.ts > horizon:  # a fast producer clock: decay and order by now + lead
                update = _at(update, horizon)
            updates.append(update)
        if updates:
            await self._apply_in_order(updates, out)
        st = self.stats
        st.batches += 1
        st.records += len(records)
        st.applied += sum(out.applied.values())
        st.duplicates += sum(out.duplicates.values())
        st.dead += sum(out.dead.values())
        return out

    async def _apply_in_order(self, updates: list[FeatureEvent], out: FeatureBatch) -> None:
        """Write at once, even while the previous call's write is in flight; return once
        that one succeeded too (raise `PreviousBatchFailed` if it failed)."""
        before = self._last_write
        mine: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._last_write = mine
        ok = False
        try:
            t0 = time.perf_counter()
            res = await until_available(lambda: self.store.apply_many(updates), self.worker)
            out.store_seconds = time.perf_counter() - t0
            out.applied, out.duplicates = res.applied, res.duplicates
            # shield: cancelling this call must not cancel the predecessor's future
            if before is not None and not await asyncio.shield(before):
                raise PreviousBatchFailed("the batch before this one was not written")
            ok = True
        finally:
            mine.set_result(ok)
            if self._last_write is mine:
                self._last_write = None
