"""Fixes to how Faust's consumer gives up its partitions, installed by every worker.

On a rebalance: Faust's `Consumer.on_partitions_revoked` forgets the offsets acked since the
last commit (every 0.25 s) without committing them, so the records behind them were processed
again once the partitions were assigned anew: a scorer answered 0-8 requests twice whenever a
peer left the group. The patch commits what is acked first; Kafka accepts that commit while
the group prepares the rebalance, and the revocation listener is where clients commit.

On stop without a broker: aiokafka's `Fetcher.close` awaits the fetch requests it just
cancelled without catching their `CancelledError`. With the broker unreachable a request is
always pending, so closing the consumer raised; Faust's consumer thread then never reported
its shutdown and its parent waited mode's 60 s `shutdown_timeout` (SIGTERM took 61 s, past an
orchestrator's grace period). Stopping without the broker loses nothing: the offsets not
committed are redelivered and every handler is idempotent.

On fetching: Faust has the broker hold a fetch up to 1.5 s for data. aiokafka sends one
fetch per broker at a time, for the partitions with nothing buffered; a partition whose
buffer empties meanwhile waits for that fetch. A feature worker draining a backlog stalled
~1 s once or twice per 100,000 events (the partitions left in the fetch had reached their
end): 27k events/s with the stalls, 55-58k with a 100 ms hold. The hold is now the app's
`fetch_max_wait_ms` (`SLATESTREAM_FETCH_MAX_WAIT_MS`). A worker that answers no requests
(features, joiner, trainer) has the broker batch its fetches instead (`FETCH_BATCH_BYTES`
or `fetch_batch_ms`, `SLATESTREAM_FETCH_BATCH_MS`): at 500 impressions/s a feature worker
fetching whatever had arrived made ~350 fetches and store writes a second, each waking
three processes, and used 27% of a core beside a scorer on 2 cores; batched, 7%.

On stop with records in flight: Faust's app waits, unbounded, for every record taken to be
acked before it stops the agents. A features worker whose Redis is down retries its write
forever, so its SIGTERM never finished. At shutdown (not in a rebalance) the wait is now
bounded by `STOP_GRACE_S`; the agents are then cancelled and the lanes release, unacked,
what they still hold (it is delivered again). Within the bound this wait is also what lets a
stopping scorer publish and ack the batches it has taken, so its last commit covers them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_PATCHED = "_slatestream_patched"
# a revocation must finish well within the group's rebalance timeout (the session timeout,
# 10 s by default): past this the records are processed again, as without the commit
REVOKE_COMMIT_TIMEOUT_S = 3.0
# how long a stopping worker waits for the records it has taken to be processed (an
# orchestrator's grace period is ~30 s)
STOP_GRACE_S = 5.0
# the app attribute `create_app` sets to its consumer's fetch settings (`FetchPolicy`)
FETCH_ATTR = "_slatestream_fetch"
# a batching worker's fetch returns once this much is there (or its time is up)
FETCH_BATCH_BYTES = 1 << 20


@dataclass(frozen=True)
class FetchPolicy:
    """How long the broker may hold a fetch (ms) and how much data ends the hold early."""

    max_wait_ms: int
    min_bytes: int = 1


def committing_revoke(
    original: Callable[[Any, Any], Awaitable[None]],
) -> Callable[[Any, Any], Awaitable[None]]:
    """Wrap `Consumer.on_partitions_revoked` to commit the acked offsets before Faust drops
    them; a failed commit is logged (the records are then processed again, as before)."""

    async def on_partitions_revoked(self: Any, revoked: Any) -> None:
        if not self.app.should_stop:
            try:
                # a commit already running (the 0.25 s timer's) makes a call only wait for
                # it, not commit what was acked since: the second call does that
                for _ in range(2):
                    await asyncio.wait_for(self.commit(), REVOKE_COMMIT_TIMEOUT_S)
            except Exception as exc:  # a timeout too: the commit only spares a redo
                log.warning("commit before giving up partitions failed: %r", exc)
        await original(self, revoked)

    setattr(on_partitions_revoked, _PATCHED, True)
    return on_partitions_revoked


def tolerant_thread_stop(
    original: Callable[[Any], Awaitable[None]],
) -> Callable[[Any], Awaitable[None]]:
    """Wrap a consumer thread's `on_thread_stop` so an error while closing the Kafka consumer
    is logged in one line instead of leaving the thread's shutdown unreported."""

    async def on_thread_stop(self: Any) -> None:
        try:
            await original(self)
        except (asyncio.CancelledError, Exception) as exc:
            # the thread is stopping anyway: what remains is to report its shutdown
            log.warning(
                "Kafka consumer closed without the broker (%s); records not committed "
                "are delivered again",
                type(exc).__name__,
            )

    setattr(on_thread_stop, _PATCHED, True)
    return on_thread_stop


def bounded_stop_wait(
    original: Callable[[Any, Any, Any], Awaitable[None]],
) -> Callable[[Any, Any, Any], Awaitable[None]]:
    """Wrap `App._consumer_wait_empty` so that at shutdown it waits at most STOP_GRACE_S for
    the records in flight (a rebalance still waits for them: the next owner needs the
    commit)."""

    async def _consumer_wait_empty(self: Any, consumer: Any, logger: Any) -> None:
        if not self.should_stop:
            await original(self, consumer, logger)
            return
        # not wait_for: Faust's wait swallows a cancellation (its 1 s ack wait catches it) and
        # would hold wait_for forever; left running, it ends once the consumer stops
        waiting = asyncio.ensure_future(original(self, consumer, logger))
        done, _ = await asyncio.wait({waiting}, timeout=STOP_GRACE_S)
        if not done:
            log.warning(
                "stopping: records still in flight after %.0f s; not waiting for them "
                "(they are delivered again)",
                STOP_GRACE_S,
            )

    setattr(_consumer_wait_empty, _PATCHED, True)
    return _consumer_wait_empty


def bounded_fetch_wait(
    original: Callable[[Any, Any], Any],
) -> Callable[[Any, Any], Any]:
    """Wrap `AIOKafkaConsumerThread._create_consumer` so the aiokafka consumer fetches as
    the app's `FETCH_ATTR` policy says (unset: Faust's 1.5 s hold, any data ends it)."""

    def _create_consumer(self: Any, loop: Any) -> Any:
        consumer = original(self, loop)
        policy = getattr(self.app, FETCH_ATTR, None)
        if policy is not None:
            # both are read by the consumer's Fetcher when it starts
            consumer._fetch_max_wait_ms = policy.max_wait_ms
            consumer._fetch_min_bytes = policy.min_bytes
        return consumer

    setattr(_create_consumer, _PATCHED, True)
    return _create_consumer


def install_consumer_fixes() -> None:
    """Patch Faust's app, consumer and its aiokafka thread once (idempotent)."""
    from faust.app.base import App
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if not getattr(App._consumer_wait_empty, _PATCHED, False):
        App._consumer_wait_empty = bounded_stop_wait(  # type: ignore[method-assign,assignment]
            App._consumer_wait_empty
        )

    if not getattr(Consumer.on_partitions_revoked, _PATCHED, False):
        Consumer.on_partitions_revoked = committing_revoke(  # type: ignore[method-assign]
            Consumer.on_partitions_revoked
        )
    thread = AIOKafkaConsumerThread
    if not getattr(thread._create_consumer, _PATCHED, False):
        thread._create_consumer = bounded_fetch_wait(  # type: ignore[method-assign,assignment]
            thread._create_consumer
        )
    if not getattr(thread.on_thread_stop, _PATCHED, False):
        thread.on_thread_stop = tolerant_thread_stop(  # type: ignore[method-assign,assignment]
            thread.on_thread_stop
        )
