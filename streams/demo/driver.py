"""The demo loop: simulated users request slates, click, and the pipeline learns from it.

The loop only talks to a `Transport`: the embedded one drives the workers' handlers over an
in-memory log in this process; the Kafka one publishes to a real broker where separate
worker processes do the work. The same events, the same handlers, either way.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from streams import schemas
from streams.demo.world import World
from streams.services.scorer_service import ScorerFeatures


class Transport(Protocol):
    """How the demo reaches the pipeline."""

    async def publish(self, logical: str, key: str, event: schemas.Event) -> None:
        """Publish one event to `<prefix>.<logical>`, keyed by `key`."""
        ...

    async def process(self) -> None:
        """Let the workers catch up (embedded: run them; Kafka: flush the producer)."""
        ...

    async def recommendations(
        self, request_ids: set[str], timeout_s: float
    ) -> list[schemas.Recommendation]:
        """The answers to these requests (waits up to timeout_s for them)."""
        ...

    def features(self) -> ScorerFeatures:
        """A read view of the feature store (to measure freshness)."""
        ...

    async def close(self) -> None:
        """Stop what the transport started."""
        ...


@dataclass
class DemoConfig:
    """How long and how hard the demo runs."""

    duration_s: float = 60.0
    max_requests: int = 200_000
    batch: int = 32
    k: int = 10
    warmup_fraction: float = 0.1
    answer_timeout_s: float = 10.0
    freshness_samples: int = 2
    seed: int = 0
    progress: bool = True


@dataclass
class DemoResult:
    """What the demo measured (time series for the report, totals for the summary)."""

    started: float = field(default_factory=time.time)
    warmup_s: float = 0.0
    warmup_events: int = 0
    session_s: float = 0.0
    events: int = 0
    requests: int = 0
    answered: int = 0
    duplicates: int = 0
    errors: int = 0
    rounds: list[dict[str, float]] = field(default_factory=list)
    slates: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    clicks: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    expected: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    diversity: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    latency_ms: list[float] = field(default_factory=list)
    roundtrip_ms: list[float] = field(default_factory=list)
    freshness_ms: list[float] = field(default_factory=list)
    model_versions: list[str] = field(default_factory=list)
    slate_log: list[tuple[float, str, int, float]] = field(default_factory=list)
    """(seconds since sessions started, arm, clicks, expected clicks) per served slate"""

    def ctr(self, arm: str) -> float:
        """Clicks per slate of an arm."""
        return self.clicks[arm] / self.slates[arm] if self.slates[arm] else 0.0


def _progress(res: DemoResult, elapsed: float, duration: float) -> None:
    width = 24
    done = min(1.0, elapsed / duration) if duration > 0 else 1.0
    bar = "#" * int(done * width) + "-" * (width - int(done * width))
    ctr = " ".join(f"{a}={res.ctr(a):.3f}" for a in sorted(res.slates))
    eps = (res.events - res.warmup_events) / max(elapsed, 1e-9)
    lat = sorted(res.latency_ms[-500:])
    p50 = lat[len(lat) // 2] if lat else 0.0
    fresh = sorted(res.freshness_ms[-50:])
    f50 = fresh[len(fresh) // 2] if fresh else 0.0
    ver = res.model_versions[-1] if res.model_versions else "none"
    sys.stderr.write(
        f"\r[{bar}] {elapsed:5.0f}s {res.requests} req {eps:7.0f} ev/s | CTR {ctr} | "
        f"lat p50 {p50:.1f}ms | fresh p50 {f50:.0f}ms | model {ver}   "
    )
    sys.stderr.flush()


async def _publish_all(
    t: Transport, logical: str, events: Sequence[schemas.Event], key_attr: str
) -> int:
    for ev in events:
        await t.publish(logical, str(getattr(ev, key_attr)), ev)
    return len(events)


async def run(transport: Transport, world: World, cfg: DemoConfig) -> DemoResult:
    """Warm up the pipeline with the catalogue and early history, then simulate sessions."""
    res = DemoResult()
    t0 = time.monotonic()
    now = world.now_ms()
    res.events += await _publish_all(
        transport, "items", list(world.catalogue_events(now)), "item_id"
    )
    res.events += await _publish_all(
        transport, "interactions", list(world.warmup_events(now)), "user_id"
    )
    await transport.process()
    res.warmup_s = time.monotonic() - t0
    res.warmup_events = res.events
    start = time.monotonic()
    rnd = 0
    while time.monotonic() - start < cfg.duration_s and res.requests < cfg.max_requests:
        rnd += 1
        sims = {}
        sent_at: dict[str, float] = {}
        for j in range(cfg.batch):
            sreq = world.next_request()
            rid = f"r{rnd}-{j}"
            sims[rid] = sreq
            req = schemas.Request(
                event_id=f"req-{rid}",
                ts=world.now_ms(),
                request_id=rid,
                user_id=sreq.user_id,
                k=cfg.k,
            )
            sent_at[rid] = time.perf_counter()
            await transport.publish("requests", sreq.user_id, req)
        res.requests += len(sims)
        res.events += len(sims)
        await transport.process()
        recs = await transport.recommendations(set(sims), cfg.answer_timeout_s)
        seen: set[str] = set()
        clicked_users: list[tuple[str, str]] = []
        for rec in recs:
            if rec.request_id in seen:
                res.duplicates += 1
                continue
            seen.add(rec.request_id)
            res.roundtrip_ms.append((time.perf_counter() - sent_at[rec.request_id]) * 1000)
            if rec.error or not rec.slate:
                res.errors += 1
                continue
            res.answered += 1
            arm = rec.arm or rec.policy
            sreq = sims[rec.request_id]
            positions = world.clicks(sreq, list(rec.slate))
            res.slates[arm] += 1
            res.clicks[arm] += len(positions)
            expected = world.expected_clicks(sreq, list(rec.slate))
            res.expected[arm] += expected
            res.slate_log.append((time.monotonic() - start, arm, len(positions), expected))
            res.diversity[arm].append(len({world.category(i) for i in rec.slate}))
            res.latency_ms.append(rec.latency_ms)
            res.model_versions.append(rec.model_version)
            for p in positions:
                ev = schemas.Interaction(
                    event_id=f"click-{rec.request_id}-{p}",
                    ts=world.now_ms(),
                    user_id=rec.user_id,
                    item_id=rec.slate[p],
                    type="click",
                    request_id=rec.request_id,
                    position=p,
                )
                await transport.publish("interactions", rec.user_id, ev)
                res.events += 1
                clicked_users.append((rec.user_id, rec.slate[p]))
        published = time.perf_counter()
        await transport.process()
        await _measure_freshness(transport, clicked_users[-cfg.freshness_samples :], published, res)
        elapsed = time.monotonic() - start
        res.session_s = elapsed
        if cfg.progress:
            _progress(res, elapsed, cfg.duration_s)
    if cfg.progress:
        sys.stderr.write("\n")
    return res


async def _measure_freshness(
    t: Transport,
    clicks: list[tuple[str, str]],
    published: float,
    res: DemoResult,
    timeout_s: float = 5.0,
) -> None:
    """Time from a click's publish until the feature store shows it to the scorer."""
    pending = dict(clicks)
    deadline = published + timeout_s
    while pending and time.perf_counter() < deadline:
        views = await t.features().user_views(list(pending))
        for user, item in list(pending.items()):
            view = views.get(user)
            if view is not None and view.recent and view.recent[-1] == item:
                res.freshness_ms.append((time.perf_counter() - published) * 1000)
                del pending[user]
        if pending:
            await asyncio.sleep(0.005)
