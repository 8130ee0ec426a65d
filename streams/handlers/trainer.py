"""Trainer worker handler: interactions, items and feedback into the incremental trainer."""

from __future__ import annotations

import asyncio
import logging
import threading
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
        # one batch or tick at a time touches the model (they run in worker threads)
        self._model_lock = threading.Lock()

    async def handle(self, records: Sequence[Record]) -> list[Emit]:
        """Learn from a batch; publish a snapshot when one is due. In a worker thread: a
        training step takes 50 ms to over a second on a busy machine, and the event loop must
        keep committing offsets and running Faust's timers meanwhile."""
        await asyncio.to_thread(self._learn_batch, records)
        return []

    def _learn_batch(self, records: Sequence[Record]) -> None:
        with self._model_lock:
            self._learn_records(records)
            # loss, steps, snapshots are derived from service.stats by metrics.instrument()
            self.service.tick()

    def _learn_records(self, records: Sequence[Record]) -> None:
        svc = self.service
        for rec in records:
            cls = self._kinds.get(rec.topic)
            if cls is None:
                continue
            try:
                event = schemas.decode_under(self.settings, cls, rec.value)
            except SchemaError:
                svc.stats.rejected += 1
                continue
            try:
                if isinstance(event, schemas.Interaction):
                    svc.on_interaction(event)
                elif isinstance(event, schemas.Item):
                    svc.on_item(event)
                elif isinstance(event, schemas.Feedback):
                    svc.on_feedback(event)
            except ValueError as exc:  # e.g. a slate the model cannot use; never crash
                svc.stats.rejected += 1
                log.warning("trainer skipped %s@%s: %s", rec.topic, rec.offset, exc)

    async def tick(self) -> list[Emit]:
        """Time-driven training step and snapshot when no events arrive (in a worker thread,
        like a batch). Skipped while a batch trains: the batch ends with a tick."""
        if not self._model_lock.locked():
            await asyncio.to_thread(self._locked_tick)
        return []

    def _locked_tick(self) -> None:
        with self._model_lock:
            self.service.tick()
