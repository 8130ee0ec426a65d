"""Scorer worker handler: requests in, recommendations (and their impressions) out."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

from streams import schemas
from streams.config import Settings
from streams.handlers.edge import decode_or_dead_letter
from streams.metrics import SCORER
from streams.runtime import Emit, Record, SeenIds
from streams.services.scorer_service import ScorerService
from streams.topics import topic_name

log = logging.getLogger(__name__)

# request_ids remembered as answered: 2 minutes at 2,000 requests/s
ANSWERED_CAPACITY = 250_000
# with request timeouts, a batch is ranked in pieces of this many requests, their timeouts
# checked before each (ranking 16 takes ~7 ms of CPU here since the batch ranking)
TIMEOUT_CHUNK = 16


def _request_id_of(raw: bytes) -> tuple[str | None, str | None]:
    """Best-effort request_id and user_id of a malformed request, to answer the client."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(obj, dict):
        return None, None
    return _answerable(obj.get("request_id")), _answerable(obj.get("user_id"))


def _answerable(value: object) -> str | None:
    """An id the contract can carry back (a longer one can only be dead-lettered), or None."""
    text = str(value) if isinstance(value, str | int) else ""
    return text if 0 < len(text) <= schemas.MAX_ID_LENGTH else None


class ScorerHandler:
    """Consumes `requests` (answers each exactly once) and `feedback` (CTR posteriors)."""

    name = "scorer"
    # the Faust driver may hand this handler whole fetches (streams.app.BatchLane)
    direct_batches = True
    # records per handle() call (whole fetched chunks are added until this many are held):
    # every answer of a batch is published when the batch is done, so a large batch (a
    # backlog) would delay its first answers by the whole batch
    max_batch = 64
    # the next batch is scored while the previous one's answers wait for the broker's acks
    # (handle() keeps no write of its own; answers are still published in order)
    overlap_batches = True

    def __init__(self, settings: Settings, service: ScorerService) -> None:
        self.settings = settings
        self.service = service
        # False when a `TopicBroadcast` feeds `learn` with every partition's feedback (the
        # worker on Kafka): the feedback consumed here is then only dead-lettered and counted
        self.learns_feedback = True
        self.requests_topic = topic_name(settings, "requests")
        self.feedback_topic = topic_name(settings, "feedback")
        self.recs_topic = topic_name(settings, "recommendations")
        self.impressions_topic = topic_name(settings, "impressions")
        self.topics = (self.requests_topic, self.feedback_topic)
        self.served = 0
        self.errors = 0
        self.expired = 0  # answered 'expired' (older than their timeout), counted in errors too
        # request_ids some scorer has published an answer for: this one's own at once, the
        # others' read back from the recommendations topic (`note_answer`, fed by a
        # `TopicBroadcast` on Kafka): a request delivered again (sent twice, or after a failover
        # whose scorer was killed before it committed) is skipped
        self.answered = SeenIds(ANSWERED_CAPACITY)
        self.already_answered = 0

    async def handle(self, records: Sequence[Record]) -> list[Emit]:
        """Answer every request of the batch; learn from feedback records."""
        emits: list[Emit] = []
        requests: list[schemas.Request] = []
        batch_ids: set[str] = set()  # the same request twice in one batch: one answer
        for rec in records:
            if rec.topic == self.feedback_topic:
                # the scorer owns dead-lettering bad feedback (the trainer only skips it)
                fb, dead, _ = decode_or_dead_letter(rec, schemas.Feedback, self.settings, self.name)
                if fb is not None:
                    if self.learns_feedback:
                        self._learn(fb)
                elif dead is not None:
                    emits.append(dead)
                continue
            req, dead, err = decode_or_dead_letter(rec, schemas.Request, self.settings, self.name)
            if req is not None:
                if self._first_answer(req.request_id, batch_ids):
                    requests.append(req)
                continue
            assert dead is not None and err is not None
            emits.append(dead)
            rid, uid = _request_id_of(rec.value)
            if rid is not None and self._first_answer(rid, batch_ids):
                emits.append(self._error(rid, uid or "", f"{err.reason}: {err.detail}"[:300]))
        # the service polls the registry itself (in a worker thread, by default): a snapshot
        # load must not stall the event loop, so the handler only reports a switch
        version = self.service.model_version
        answered = []
        for chunk in self._chunks(requests):
            # the timeouts are checked again before each chunk: a request that waits out its
            # timeout while the chunks before it are ranked is answered 'expired' too
            now_ms = int(time.time() * 1000)
            live = []
            for req in chunk:
                expired = self._expired(req, now_ms)
                if expired is None:
                    live.append(req)
                else:
                    emits.append(expired)
            if live:
                answered += await self.service.recommend_many(live)
        if self.service.model_version != version:
            SCORER.observe_reload(self.service.model_version, self.service.snapshot_written_at)
        SCORER.retired_items.set(len(self.service.retired))
        for read, n in self.service.pop_store_failures().items():
            SCORER.store_unavailable.labels(read=read).inc(n)
        for read, seconds in self.service.pop_store_timings():
            SCORER.store_op_seconds.labels(op=read).observe(seconds)
        for served in answered:
            rec_ev = served.recommendation
            SCORER.observe_served(
                rec_ev.policy,
                rec_ev.latency_ms / 1000.0,
                served.request_ts,
                k=len(rec_ev.slate),
                explored=served.explored,
            )
            if rec_ev.error:
                SCORER.request_errors.labels(reason=rec_ev.error).inc()
            key = rec_ev.user_id.encode()
            emits.append(Emit(self.recs_topic, rec_ev.to_json(), key))
            if rec_ev.slate:
                imp = schemas.Impression.model_construct(  # from the validated answer
                    event_id=schemas.derived_id("imp-", rec_ev.request_id),
                    ts=rec_ev.served_at,
                    user_id=rec_ev.user_id,
                    request_id=rec_ev.request_id,
                    slate=rec_ev.slate,
                    propensities=rec_ev.propensities,
                    policy=rec_ev.policy,
                )
                emits.append(Emit(self.impressions_topic, imp.to_json(), key))
            self.served += 1
            self.answered.add(rec_ev.request_id)
        return emits

    def _first_answer(self, request_id: str, batch_ids: set[str]) -> bool:
        """False (and counted) when the request was answered already: by a scorer, as read
        back from the recommendations topic, or earlier in this batch."""
        if request_id in self.answered or request_id in batch_ids:
            self.already_answered += 1
            SCORER.already_answered.inc()
            return False
        batch_ids.add(request_id)
        return True

    def _chunks(self, requests: list[schemas.Request]) -> list[list[schemas.Request]]:
        """The batch in one piece, or in pieces of TIMEOUT_CHUNK when a request has a timeout
        (one feature-store read per piece, ~0.3 ms on Redis)."""
        timed = self.settings.request_timeout_ms or any(r.timeout_ms for r in requests)
        if not timed or len(requests) <= TIMEOUT_CHUNK:
            return [requests]
        return [requests[i : i + TIMEOUT_CHUNK] for i in range(0, len(requests), TIMEOUT_CHUNK)]

    def _expired(self, req: schemas.Request, now_ms: int) -> Emit | None:
        """The 'expired' answer of a request older than its timeout (None: serve it). A
        scorer behind its requests (overload, a failover's backlog) answers what its clients
        gave up on at ~no cost and catches up, instead of ranking slates nobody waits for."""
        limit = req.timeout_ms or self.settings.request_timeout_ms
        waited = now_ms - req.ts
        if not limit or waited <= limit:
            return None
        self.expired += 1
        SCORER.request_errors.labels(reason="expired").inc()
        return self._error(
            req.request_id, req.user_id, f"expired: waited {waited} ms, timeout {limit} ms"
        )

    def note_answer(self, rec: Record) -> None:
        """Remember the request_id of a recommendation any scorer published (the read-back
        of the recommendations topic); a record without one is ignored."""
        rid, _ = _request_id_of(rec.value)
        if rid is not None:
            self.answered.add(rid)

    def learn(self, rec: Record) -> None:
        """Learn from one feedback record of any partition (`TopicBroadcast`); a malformed
        one is skipped here: the group member that owns its partition dead-letters it."""
        fb, _, _ = decode_or_dead_letter(rec, schemas.Feedback, self.settings, self.name)
        if fb is not None:
            self._learn(fb)

    def _learn(self, fb: schemas.Feedback) -> None:
        if self.service.on_feedback(fb):
            SCORER.feedback_learned.inc()

    def _error(self, request_id: str, user_id: str, reason: str) -> Emit:
        self.errors += 1
        self.answered.add(request_id)
        now = int(time.time() * 1000)
        rec = schemas.Recommendation(
            event_id=schemas.derived_id("rec-", request_id),
            ts=now,
            request_id=request_id,
            user_id=user_id,
            slate=[],
            scores=[],
            propensities=[],
            policy="none",
            model_version=self.service.model_version,
            served_at=now,
            latency_ms=0.0,
            error=reason,
        )
        return Emit(self.recs_topic, rec.to_json(), user_id.encode() or None)
