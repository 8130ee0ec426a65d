"""Joiner service: served slates (impressions) ⋈ the clicks that follow → Feedback records.

Pure logic over a `features.JoinState` (no Kafka). Per partition (impressions and
interactions are both keyed by user id, so one user's slates and clicks share a partition
number) it keeps the open impressions, a watermark (the largest event time seen), the
recently closed impressions (to recognise late clicks) and clicks whose impression has not
arrived yet.

- A click carrying a `request_id` joins that impression; a click without one joins the
  user's newest open impression whose slate holds the item. Clicks count when
  `0 <= click.ts - impression.ts <= window`.
- An impression closes when the watermark passes `ts + window + allowed_lateness`; it then
  yields one Feedback (`late=False`) with its clicks (possibly none). When no events arrive,
  `tick()` advances the watermark with wall time, so idle partitions still close. Event
  times more than `max_lead_ms` ahead of wall time advance it only that far.
- A click for an impression that is already closed, or outside its window, yields a late
  Feedback (`late=True`) for that click; it is never dropped silently.
- Every state change is written through to the JoinState before the batch's emits are
  returned; a closed impression stays marked "unconfirmed" until the next call of the
  same driver (`process` or `tick`: its Feedback has then been published), so a crash in
  between re-emits it (same event_id) instead of losing it.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from features import JoinState
from streams import schemas
from streams.config import Settings
from streams.errors import SchemaError
from streams.runtime import Emit, Record
from streams.services.feature_service import fast_interaction, until_available
from streams.topics import topic_name

log = logging.getLogger(__name__)

WM_KEY = "~wm"
ORPHAN = "o:"


@dataclass(frozen=True)
class JoinerConfig:
    """Attribution window and how long state is kept."""

    window_ms: int = 30 * 60 * 1000
    allowed_lateness_ms: int = 5_000
    late_retention_ms: int | None = None  # closed slates kept for late clicks; None: one window
    idle_flush_ms: int = 2_000
    # event times beyond wall time + this do not move the watermark: one producer with a fast
    # clock must not close every open slate of its partition early and turn their clicks into
    # late feedback
    max_lead_ms: int = schemas.MAX_LEAD_MS
    click_types: frozenset[str] | None = None  # None: every interaction type except "view"

    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> JoinerConfig:
        """Window from `SLATESTREAM_ATTRIBUTION_WINDOW_MS`."""
        return cls(window_ms=settings.attribution_window_ms, **kw)

    @property
    def retention_ms(self) -> int:
        """How long (event time) after its window a closed impression is remembered."""
        return self.window_ms if self.late_retention_ms is None else self.late_retention_ms

    def counts(self, type_: str) -> bool:
        """Whether an interaction of this type is a click/conversion for the join."""
        return type_ in self.click_types if self.click_types is not None else type_ != "view"


@dataclass
class _Imp:
    """One impression in the join state."""

    user_id: str
    slate: list[str]
    propensities: list[float] | None
    policy: str | None
    ts: int
    clicks: dict[str, dict[str, Any]] = field(default_factory=dict)  # click event_id → click
    closed: bool = False
    confirmed: bool = False  # its Feedback was published (closed ones only)
    late_ids: list[str] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return json.dumps(
            [
                self.user_id,
                self.slate,
                self.propensities,
                self.policy,
                self.ts,
                self.clicks,
                self.closed,
                self.confirmed,
                self.late_ids,
            ],
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> _Imp:
        u, s, p, pol, ts, clicks, closed, confirmed, late = json.loads(raw)
        return cls(u, s, p, pol, ts, clicks, closed, confirmed, late)


@dataclass
class _Partition:
    """In-memory join state of one partition plus what changed since the last save."""

    imps: dict[str, _Imp] = field(default_factory=dict)
    orphans: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    by_user: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    open_heap: list[tuple[int, str]] = field(default_factory=list)  # (impression ts, rid)
    closed_heap: list[tuple[int, str]] = field(default_factory=list)
    watermark: int = 0
    last_advance: float = field(default_factory=time.monotonic)
    dirty: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    unconfirmed: list[str] = field(default_factory=list)  # closed by the last process()
    unconfirmed_tick: list[str] = field(default_factory=list)  # closed by the last tick()
    reemit: list[str] = field(default_factory=list)  # closed, feedback maybe never published

    def touch(self, key: str) -> None:
        self.dirty.add(key)
        self.deleted.discard(key)

    def drop(self, key: str) -> None:
        self.deleted.add(key)
        self.dirty.discard(key)


@dataclass
class JoinerStats:
    """Running totals (a hook for metrics and tests)."""

    impressions: int = 0
    clicks_attributed: int = 0
    feedback: int = 0
    late_feedback: int = 0
    unknown_impression: int = 0
    duplicates: int = 0
    dead: int = 0
    late_reasons: dict[str, int] = field(default_factory=dict)


class JoinerService:
    """Joins impressions with later clicks; emits Feedback on `<prefix>.feedback`."""

    def __init__(
        self,
        settings: Settings,
        state: JoinState,
        config: JoinerConfig | None = None,
        *,
        worker: str = "joiner",
        on_click: Callable[[str | None, int, int], None] | None = None,
        on_impression: Callable[[str | None], None] | None = None,
        on_feedback: Callable[[str | None], None] | None = None,
        on_late: Callable[[str, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.config = config or JoinerConfig.from_settings(settings)
        self.worker = worker
        # metric hooks (streams.metrics.joiner is wired by the handler)
        self.on_click = on_click
        self.on_impression = on_impression
        self.on_feedback = on_feedback
        self.on_late = on_late
        self.impressions_topic = topic_name(settings, "impressions")
        self.interactions_topic = topic_name(settings, "interactions")
        self.feedback_topic = topic_name(settings, "feedback")
        self.topics = (self.impressions_topic, self.interactions_topic)
        self.parts: dict[int, _Partition] = {}
        self.stats = JoinerStats()
        self._lock = asyncio.Lock()

    # --- state loading/saving -------------------------------------------------------------
    async def _part(self, p: int) -> _Partition:
        part = self.parts.get(p)
        if part is not None:
            return part
        part = _Partition()
        stored = await until_available(lambda: self.state.load(p), self.worker)
        for key, raw in stored.items():
            if key == WM_KEY:
                part.watermark = int(raw)
            elif key.startswith(ORPHAN):
                part.orphans[key[len(ORPHAN) :]] = json.loads(raw)
            else:
                imp = _Imp.from_bytes(raw)
                part.imps[key] = imp
                if not imp.closed:
                    part.by_user[imp.user_id].append(key)
                    part.open_heap.append((imp.ts, key))
                else:
                    part.closed_heap.append((imp.ts, key))
                    if not imp.confirmed:
                        part.reemit.append(key)  # the last worker may have died before publishing
        for rids in part.by_user.values():
            rids.sort(key=lambda r: part.imps[r].ts)
        heapq.heapify(part.open_heap)
        heapq.heapify(part.closed_heap)
        self.parts[p] = part
        return part

    async def _save(self, p: int, part: _Partition) -> None:
        ups: dict[str, bytes] = {}
        for key in part.dirty:
            if key == WM_KEY:
                ups[key] = str(part.watermark).encode()
            elif key.startswith(ORPHAN):
                ups[key] = json.dumps(part.orphans[key[len(ORPHAN) :]]).encode()
            else:
                ups[key] = part.imps[key].to_bytes()
        dels = set(part.deleted)
        part.dirty.clear()
        part.deleted.clear()
        await until_available(lambda: self.state.save(p, ups, dels), self.worker)

    # --- feedback construction ------------------------------------------------------------
    def _feedback(self, rid: str, imp: _Imp, clicks: list[dict[str, Any]], late: bool) -> Emit:
        cfg = self.config
        ordered = sorted(clicks, key=lambda c: (c["delay_ms"], c["position"], c["event_id"]))
        suffix = ("-late-", ordered[0]["event_id"]) if late else ()
        fb = schemas.Feedback(
            event_id=schemas.derived_id("fb-", rid, *suffix),
            ts=(ordered[0]["delay_ms"] + imp.ts) if late else imp.ts + cfg.window_ms,
            user_id=imp.user_id,
            request_id=rid,
            slate=imp.slate,
            propensities=imp.propensities,
            policy=imp.policy,
            served_at=imp.ts,
            clicks=[schemas.Click(**c) for c in ordered],
            window_ms=cfg.window_ms,
            late=late,
        )
        return Emit(self.feedback_topic, fb.to_json(), imp.user_id.encode())

    def _late(
        self, part: _Partition, rid: str, imp: _Imp, click: dict[str, Any], reason: str
    ) -> Emit:
        imp.late_ids.append(click["event_id"])
        part.touch(rid)
        st = self.stats
        st.late_feedback += 1
        st.late_reasons[reason] = st.late_reasons.get(reason, 0) + 1
        if self.on_late is not None:
            self.on_late(reason, 1)
        return self._feedback(rid, imp, [click], late=True)

    # --- events ---------------------------------------------------------------------------
    def _impression(self, part: _Partition, ev: schemas.Impression, out: list[Emit]) -> None:
        rid = ev.request_id
        if rid in part.imps:
            self.stats.duplicates += 1
            return
        imp = _Imp(ev.user_id, list(ev.slate), ev.propensities, ev.policy, ev.ts)
        part.imps[rid] = imp
        part.by_user[ev.user_id].append(rid)
        heapq.heappush(part.open_heap, (imp.ts, rid))
        part.touch(rid)
        self.stats.impressions += 1
        if self.on_impression is not None:
            self.on_impression(imp.policy)
        for held in part.orphans.pop(rid, []):
            part.drop(ORPHAN + rid)
            if held["item_id"] not in imp.slate:
                continue
            click = {
                "position": imp.slate.index(held["item_id"]),
                "item_id": held["item_id"],
                "type": held["type"],
                "delay_ms": held["ts"] - imp.ts,
                "event_id": held["event_id"],
            }
            self._attach_or_late(part, rid, imp, click, out)

    def _click_dict(self, ev: schemas.Interaction, imp: _Imp) -> dict[str, Any] | None:
        try:
            position = imp.slate.index(ev.item_id)
        except ValueError:
            return None
        return {
            "position": position,
            "item_id": ev.item_id,
            "type": ev.type,
            "delay_ms": ev.ts - imp.ts,
            "event_id": ev.event_id,
        }

    def _attach_or_late(
        self, part: _Partition, rid: str, imp: _Imp, click: dict[str, Any], out: list[Emit]
    ) -> None:
        eid = click["event_id"]
        if eid in imp.clicks or eid in imp.late_ids:
            self.stats.duplicates += 1
            return
        delay = click["delay_ms"]
        if imp.closed or delay > self.config.window_ms:
            out.append(self._late(part, rid, imp, click, "after_window"))
        elif delay < 0:
            out.append(self._late(part, rid, imp, click, "out_of_order"))
        else:
            imp.clicks[eid] = click
            part.touch(rid)
            self.stats.clicks_attributed += 1
            if self.on_click is not None:
                self.on_click(imp.policy, imp.ts, imp.ts + delay)

    def _interaction(self, part: _Partition, ev: schemas.Interaction, out: list[Emit]) -> None:
        if not self.config.counts(ev.type):
            return
        rid = ev.request_id
        if rid is not None:
            imp = part.imps.get(rid)
            if imp is None:
                # the impression may still be on its way (another topic): hold the click
                pending = part.orphans.setdefault(rid, [])
                if all(c["event_id"] != ev.event_id for c in pending):
                    pending.append(
                        {
                            "user_id": ev.user_id,
                            "item_id": ev.item_id,
                            "type": ev.type,
                            "ts": ev.ts,
                            "position": ev.position,
                            "event_id": ev.event_id,
                        }
                    )
                    part.touch(ORPHAN + rid)
                return
            click = self._click_dict(ev, imp)
            if click is None:  # not an item of that slate: an organic interaction
                return
            self._attach_or_late(part, rid, imp, click, out)
            return
        # no request id: the user's newest open slate holding the item, within the window
        for cand in reversed(part.by_user.get(ev.user_id, ())):
            imp = part.imps[cand]
            if imp.ts <= ev.ts <= imp.ts + self.config.window_ms:
                click = self._click_dict(ev, imp)
                if click is not None:
                    self._attach_or_late(part, cand, imp, click, out)
                    return

    # --- windows --------------------------------------------------------------------------
    def _advance(self, part: _Partition, ts: int) -> None:
        if ts > part.watermark:
            part.watermark = ts
            part.last_advance = time.monotonic()
            part.touch(WM_KEY)

    def _close_due(self, part: _Partition, out: list[Emit]) -> list[str]:
        cfg = self.config
        wm = part.watermark
        horizon = wm - cfg.window_ms - cfg.allowed_lateness_ms
        closed: list[str] = []
        while part.open_heap and part.open_heap[0][0] <= horizon:
            ts, rid = heapq.heappop(part.open_heap)
            imp = part.imps.get(rid)
            if imp is None or imp.closed:
                continue
            imp.closed = True
            part.touch(rid)
            out.append(self._feedback(rid, imp, list(imp.clicks.values()), late=False))
            self.stats.feedback += 1
            if self.on_feedback is not None:
                self.on_feedback(imp.policy)
            closed.append(rid)
            heapq.heappush(part.closed_heap, (ts, rid))
            rids = part.by_user.get(imp.user_id)
            if rids is not None:
                rids.remove(rid)
                if not rids:
                    del part.by_user[imp.user_id]
        # forget closed impressions after the retention, and orphans whose slate never came
        retention = wm - cfg.window_ms - cfg.retention_ms
        while part.closed_heap and part.closed_heap[0][0] < retention:
            _, rid = part.closed_heap[0]
            imp = part.imps.get(rid)
            if imp is not None and not imp.confirmed:
                break  # wait until its feedback is confirmed
            heapq.heappop(part.closed_heap)
            if imp is not None:
                del part.imps[rid]
                part.drop(rid)
        for rid, clicks in list(part.orphans.items()):
            if all(c["ts"] + cfg.window_ms + cfg.allowed_lateness_ms < wm for c in clicks):
                self.stats.unknown_impression += len(clicks)
                r = self.stats.late_reasons
                r["unknown_impression"] = r.get("unknown_impression", 0) + len(clicks)
                log.info("joiner: %d click(s) for unknown request_id %s", len(clicks), rid)
                if self.on_late is not None:
                    self.on_late("unknown_impression", len(clicks))
                del part.orphans[rid]
                part.drop(ORPHAN + rid)
        return closed

    def _confirm(self, part: _Partition, out: list[Emit], rids: list[str]) -> list[str]:
        """Mark `rids` (closed by the previous call of the same driver, whose emits have
        been published since) confirmed; re-emit feedback a dead worker may not have
        published (same event_id); return those rids (unconfirmed again)."""
        for rid in rids:
            imp = part.imps.get(rid)
            if imp is not None and not imp.confirmed:
                imp.confirmed = True
                part.touch(rid)
        redo, part.reemit = part.reemit, []
        for rid in redo:
            imp = part.imps[rid]
            out.append(self._feedback(rid, imp, list(imp.clicks.values()), late=False))
        return redo

    # --- public entry points --------------------------------------------------------------
    def decode(self, record: Record) -> schemas.Event:
        """Validate one record as an impression or an interaction."""
        cls: type[schemas.Event] = (
            schemas.Impression if record.topic == self.impressions_topic else schemas.Interaction
        )
        return schemas.decode_under(self.settings, cls, record.value)

    async def process(self, records: Sequence[Record]) -> list[Emit]:
        """Join a batch; return feedback (on time and late) to publish. Bad records are
        skipped here (the feature worker dead-letters them)."""
        async with self._lock:
            out: list[Emit] = []
            touched: dict[int, _Partition] = {}
            redo: dict[int, list[str]] = {}
            for p in {r.partition for r in records} | set(self.parts):
                part = await self._part(p)
                touched[p] = part
                # the previous call's feedback has been published: confirm it
                redo[p] = self._confirm(part, out, part.unconfirmed)
            now_ms = int(time.time() * 1000)
            horizon = now_ms + self.config.max_lead_ms
            weights, limit = self.settings.event_weights, self.settings.max_event_bytes
            skew = self.settings.max_clock_skew_ms
            for rec in records:
                if rec.topic == self.interactions_topic:
                    # cheap skip of what cannot join (views, users without open slates):
                    # only its (validated) event time matters, for the watermark
                    fast = fast_interaction(rec.value, weights, now_ms, limit, skew)
                    if fast is not None and (
                        not self.config.counts(fast.type)
                        or fast.user_id not in touched[rec.partition].by_user
                    ):
                        self._advance(touched[rec.partition], min(fast.ts, horizon))
                        continue
                try:
                    ev = self.decode(rec)
                except SchemaError:
                    self.stats.dead += 1
                    continue
                part = touched[rec.partition]
                if isinstance(ev, schemas.Impression):
                    self._impression(part, ev, out)
                elif isinstance(ev, schemas.Interaction):
                    self._interaction(part, ev, out)
                self._advance(part, min(ev.ts, horizon))
            for p, part in touched.items():
                part.unconfirmed = redo[p] + self._close_due(part, out)
                await self._save(p, part)
            return out

    async def tick(self, now: float | None = None) -> list[Emit]:
        """Idle flush: advance quiet partitions' watermarks by the wall time that passed."""
        return await self.process_idle(time.monotonic() if now is None else now)

    async def process_idle(self, now: float) -> list[Emit]:
        """Close impressions of partitions whose watermark has not moved for a while."""
        async with self._lock:
            out: list[Emit] = []
            for p, part in self.parts.items():
                redo = self._confirm(part, out, part.unconfirmed_tick)
                idle_ms = (now - part.last_advance) * 1000.0
                if part.watermark and idle_ms >= self.config.idle_flush_ms:
                    part.watermark += int(idle_ms)
                    part.last_advance = now
                    part.touch(WM_KEY)
                part.unconfirmed_tick = redo + self._close_due(part, out)
                if part.dirty or part.deleted:
                    await self._save(p, part)
            return out

    async def flush(self) -> list[Emit]:
        """Close every open impression now (shutdown, tests)."""
        async with self._lock:
            out: list[Emit] = []
            for p, part in self.parts.items():
                grace = self.config.window_ms + self.config.allowed_lateness_ms
                part.watermark = max([part.watermark] + [i.ts + grace for i in part.imps.values()])
                part.touch(WM_KEY)
                part.unconfirmed += self._close_due(part, out)
                await self._save(p, part)
            return out

    async def forget(self, partitions: set[int]) -> None:
        """Drop partitions this worker no longer owns (a rebalance revoked them); their
        state stays in the JoinState for the next owner, and is reloaded if they return."""
        async with self._lock:
            for p in partitions:
                self.parts.pop(p, None)

    def open_impressions(self) -> int:
        """Impressions waiting for clicks (all loaded partitions)."""
        return sum(len(r) for part in self.parts.values() for r in part.by_user.values())
