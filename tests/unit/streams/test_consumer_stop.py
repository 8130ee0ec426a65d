"""A Kafka consumer that fails to close (broker gone) still lets Faust's thread shut down."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streams.consumer_stop import install_clean_consumer_stop, tolerant_thread_stop


class _Thread:
    """Stands in for Faust's consumer thread: closing its consumer raises like aiokafka's
    Fetcher.close does with the broker unreachable."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.closed = False

    async def on_thread_stop(self) -> None:
        self.closed = True
        raise self.error


@pytest.mark.timeout(10)
@pytest.mark.parametrize("error", [asyncio.CancelledError(), ConnectionError("refused")])
def test_close_error_is_logged_not_raised(
    error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    thread = _Thread(error)
    stop = tolerant_thread_stop(_Thread.on_thread_stop)
    with caplog.at_level(logging.WARNING, logger="streams.consumer_stop"):
        asyncio.run(stop(thread))  # the unwrapped method raises here
    assert thread.closed
    assert [r.getMessage() for r in caplog.records] == [
        f"Kafka consumer closed without the broker ({type(error).__name__}); records not "
        "committed are delivered again"
    ]


@pytest.mark.timeout(10)
def test_install_patches_faust_consumer_thread_once() -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    install_clean_consumer_stop()
    patched = AIOKafkaConsumerThread.on_thread_stop
    install_clean_consumer_stop()
    assert AIOKafkaConsumerThread.on_thread_stop is patched
    assert getattr(patched, "_slatestream_clean_stop", False)
