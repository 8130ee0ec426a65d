"""The demo's two transports: embedded (one process, in-memory log) and Kafka (real workers)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from streams import schemas
from streams.config import Settings
from streams.errors import SlatestreamError
from streams.kafka_access import KafkaAccess
from streams.roles import ROLES, build_handlers
from streams.runtime import MemoryLog, drain
from streams.services.scorer_service import ScorerFeatures
from streams.services.store_view import StoreView
from streams.topics import topic_name


class EmbeddedTransport:
    """Every worker's handler in this process over one in-memory log and one memory store."""

    def __init__(self, settings: Settings) -> None:
        from streams.services.feature_service import open_feature_store

        self.settings = settings
        self.store = open_feature_store(settings.model_copy(update={"store_url": "memory://"}))
        self.log = MemoryLog()
        self.handlers = build_handlers(settings, ROLES, self.store)
        self.view = StoreView(self.store)
        self.recs_topic = topic_name(settings, "recommendations")
        self._rec_offset = 0

    async def publish(self, logical: str, key: str, event: schemas.Event) -> None:
        """Append to the in-memory topic."""
        self.log.publish(topic_name(self.settings, logical), event.to_json(), key.encode())

    async def process(self) -> None:
        """Run every handler (and its timer) until no topic has pending records."""
        for _ in range(100):
            moved = 0
            for h in self.handlers:
                moved += await drain(self.log, h)
                tick = getattr(h, "tick", None)
                if tick is not None:
                    for e in await tick():
                        self.log.publish(e.topic, e.value, e.key)
                        moved += 1
            if moved == 0:
                return

    async def recommendations(
        self, request_ids: set[str], timeout_s: float
    ) -> list[schemas.Recommendation]:
        """Recommendations published since the last call."""
        recs = self.log.topics[self.recs_topic][self._rec_offset :]
        self._rec_offset += len(recs)
        out = [schemas.Recommendation.model_validate_json(r.value) for r in recs]
        return [r for r in out if r.request_id in request_ids]

    def features(self) -> ScorerFeatures:
        """The scorer's view of the shared memory store."""
        return self.view

    async def close(self) -> None:
        """Nothing to stop."""


class KafkaTransport:
    """Separate worker processes on a real broker + Redis; the demo is a plain client."""

    def __init__(self, settings: Settings, env: dict[str, str], log_dir: Path) -> None:
        self.settings = settings
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.proc_roles: list[str] = []
        self.producer: Any = None
        self.consumer: Any = None
        self.view: StoreView | None = None
        self._pending: dict[str, schemas.Recommendation] = {}

    async def start(
        self, groups: tuple[str, ...] = ("features,joiner", "trainer", "scorer")
    ) -> None:
        """Spawn the workers, connect a producer and a recommendations consumer."""
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        from streams.broker import ensure_topics
        from streams.services.feature_service import open_feature_store

        ensure_topics(self.settings)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for roles in groups:
            self.proc_roles.append(roles)
            log = (self.log_dir / f"worker-{roles.replace(',', '-')}.log").open("ab")
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "streams", "worker", "--role", roles],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        kafka = KafkaAccess.of(self.settings).client_kwargs()
        self.producer = AIOKafkaProducer(**kafka, linger_ms=2, acks=1)
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            topic_name(self.settings, "recommendations"),
            **kafka,
            group_id=None,  # a plain reader: no group, no coordinator to wait for
            auto_offset_reset="earliest",
        )
        await self.consumer.start()
        self.view = StoreView(open_feature_store(self.settings))

    async def publish(self, logical: str, key: str, event: schemas.Event) -> None:
        """Send (batched by the producer)."""
        await self.producer.send(
            topic_name(self.settings, logical), event.to_json(), key=key.encode()
        )

    async def process(self) -> None:
        """Flush the producer; the workers do the rest on their own."""
        await self.producer.flush()
        for p, roles in zip(self.procs, self.proc_roles, strict=True):
            if p.poll() is not None:
                raise SlatestreamError(
                    f"worker {roles} exited with {p.returncode}; see {self.log_dir}"
                )

    async def recommendations(
        self, request_ids: set[str], timeout_s: float
    ) -> list[schemas.Recommendation]:
        """Consume until every request id is answered or the timeout passes."""
        out = [self._pending.pop(r) for r in list(self._pending) if r in request_ids]
        want = request_ids - {r.request_id for r in out}
        deadline = time.monotonic() + timeout_s
        while want and time.monotonic() < deadline:
            batch = await self.consumer.getmany(timeout_ms=50, max_records=1000)
            for msgs in batch.values():
                for m in msgs:
                    rec = schemas.Recommendation.model_validate_json(m.value)
                    if rec.request_id in want:
                        out.append(rec)
                        want.discard(rec.request_id)
                    else:
                        self._pending[rec.request_id] = rec
        return out

    def features(self) -> ScorerFeatures:
        """The scorer's view of the shared Redis store."""
        assert self.view is not None
        return self.view

    async def close(self) -> None:
        """Stop the client and the workers (SIGTERM, then SIGKILL)."""
        for c in (self.consumer, self.producer):
            if c is not None:
                await c.stop()
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.procs:
            while p.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
