"""A worker stops promptly when its broker is already gone.

aiokafka's `Fetcher.close` awaits the fetch requests it just cancelled without catching
their `CancelledError`. With the broker unreachable a request is always pending (waiting
out its retry backoff), so closing the consumer raises. Faust's consumer thread then never
reports that it has shut down, and its parent waits mode's 60 s `shutdown_timeout`: a
SIGTERM took 61 s, past an orchestrator's grace period (Kubernetes: 30 s), and the thread's
traceback was logged one token per line. Stopping without the broker loses nothing: the
offsets not committed are redelivered and every handler is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

_PATCHED = "_slatestream_clean_stop"


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


def install_clean_consumer_stop() -> None:
    """Patch Faust's aiokafka consumer thread once (idempotent)."""
    from faust.transport.drivers import aiokafka as driver

    cls = driver.AIOKafkaConsumerThread
    if getattr(cls.on_thread_stop, _PATCHED, False):
        return
    cls.on_thread_stop = tolerant_thread_stop(cls.on_thread_stop)  # type: ignore[method-assign,assignment]
