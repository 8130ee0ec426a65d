"""Trainer worker handler: interactions, items and feedback into the incremental trainer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from streams import schemas
from streams.config import Settings
from streams.errors import SchemaError
from streams.runtime import Emit, Record
from streams.services.trainer_service import TrainerService
from streams.topics import topic_name

log = logging.getLogger(__name__)


class TrainerHandler:
    """Consumes `interactions`, `items`, `feedback`; snapshots the model to the registry.

    Malformed records are skipped here: the feature worker dead-letters bad interactions and
    items, the scorer bad feedback.
    """

    name = "trainer"
    # the Faust driver may hand this handler whole fetches (streams.app.BatchLane)
    direct_batches = True

    def __init__(self, settings: Settings, service: TrainerService | None = None) -> None:
        self.settings = settings
        self.service = service or TrainerService.from_settings(settings)
        self._kinds: dict[str, type[schemas.Event]] = {
            topic_name(settings, "interactions"): schemas.Interaction,
            topic_name(settings, "items"): schemas.Item,
            topic_name(settings, "feedback"): schemas.Feedback,
        }
        self.topics = tuple(self._kinds)

    async def handle(self, records: Sequence[Record]) -> list[Emit]:
        """Learn from a batch; publish a snapshot when one is due."""
        svc = self.service
        for rec in records:
            cls = self._kinds.get(rec.topic)
            if cls is None:
                continue
            try:
                event = schemas.decode(
                    cls,
                    rec.value,
                    max_bytes=self.settings.max_event_bytes,
                    max_skew_ms=self.settings.max_clock_skew_ms,
                )
            except SchemaError:
                svc.stats.rejected += 1
                continue
            stepped = False
            try:
                if isinstance(event, schemas.Interaction):
                    stepped = svc.on_interaction(event)
                elif isinstance(event, schemas.Item):
                    svc.on_item(event)
                elif isinstance(event, schemas.Feedback):
                    stepped = svc.on_feedback(event)
            except ValueError as exc:  # e.g. a slate the model cannot use; never crash
                svc.stats.rejected += 1
                log.warning("trainer skipped %s@%s: %s", rec.topic, rec.offset, exc)
            if stepped:
                # a step holds the loop for 50-300 ms: let Faust's commit and other timers run
                # between steps, not only after the whole batch (a backlog's batch is seconds)
                await asyncio.sleep(0)
        self._tick()
        return []

    async def tick(self) -> list[Emit]:
        """Time-driven training step and snapshot when no events arrive."""
        self._tick()
        return []

    def _tick(self) -> None:
        # loss, steps, snapshots are derived from service.stats by streams.metrics.instrument()
        self.service.tick()
