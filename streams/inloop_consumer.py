"""Faust's aiokafka consumer run on the worker's own event loop instead of in a thread.

Faust runs its aiokafka consumer in a thread with a second event loop and hands every call
(each fetch, commit, seek) across through method queues. On a 2-core machine that thread
used ~22% of a core at 500 requests/s and fought the worker's handler for the GIL: every
socket write of either side gave the GIL away and waited to get it back. Here the same
consumer service runs as a plain child service on the app's loop and a call is a direct
await; Faust's rebalance callbacks still go through its main method queue, on the same
loop. `create_app` chooses it unless `SLATESTREAM_CONSUMER_THREAD=true` keeps Faust's thread.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service

from streams.consumer_fixes import tolerant_thread_stop

# Faust's own factory of the consumer thread, put back when the thread is asked for
_THREADED = faust_aiokafka.Consumer._new_consumer_thread


async def _stop_kafka_consumer(self: Any) -> None:
    """Stop the aiokafka consumer (there is no method queue to stop first)."""
    if self._consumer is not None:
        await self._consumer.stop()


_tolerant_stop = tolerant_thread_stop(_stop_kafka_consumer)


class InLoopConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """`AIOKafkaConsumerThread` whose 'thread loop' is the app's loop: started and stopped
    as an ordinary service, calls awaited directly instead of queued to another thread."""

    def __init__(self, consumer: Any, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(consumer, loop=loop, thread_loop=loop, **kwargs)
        self._close_thread_loop_on_stop = False  # the app's loop: never ours to close

    async def start(self) -> None:
        """Start the service on this loop (no thread, no method queue)."""
        self._thread_started.set()
        await Service.start(self)

    async def stop(self) -> None:
        """Stop the aiokafka consumer and this service's tasks (what the thread's own shutdown
        does, `ServiceThread._shutdown_thread`), once."""
        if not self._started.is_set() or self._stopped.is_set():
            return
        self._stopped.set()
        await self.on_stop()
        await self.on_thread_stop()
        await self._default_stop_children()
        self._shutdown.set()
        await self._default_stop_futures()
        await self._default_stop_exit_stacks()
        await self.on_shutdown()

    async def on_thread_stop(self) -> None:
        """Stop the aiokafka consumer; closing it without a broker is logged, not raised (as
        for Faust's thread, `streams.consumer_fixes`)."""
        await _tolerant_stop(self)

    async def call_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call `fun` here (sync or async), as the consumer thread would have."""
        result = fun(*args, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    async def cast_thread(self, fun: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> None:
        """Run `fun` in the background, as a cast to the thread would have."""
        result = fun(*args, **kw)
        if inspect.isawaitable(result):
            self.add_future(asyncio.ensure_future(result))


def _new_in_loop_consumer_thread(self: Any) -> InLoopConsumerThread:
    return InLoopConsumerThread(self, loop=self.loop, beacon=self.beacon)


def use_in_loop_consumer(enabled: bool) -> None:
    """Make the Faust apps created from now on run their aiokafka consumer on the app's loop
    (`enabled`) or in Faust's consumer thread (process-wide: one app per worker process)."""
    chosen = _new_in_loop_consumer_thread if enabled else _THREADED
    faust_aiokafka.Consumer._new_consumer_thread = chosen  # type: ignore[method-assign]
