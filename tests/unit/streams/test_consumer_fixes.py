"""Faust consumer fixes: acked offsets committed before a revocation drops them; a Kafka
consumer that fails to close (broker gone) still lets Faust's thread shut down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from types import SimpleNamespace

import pytest

from streams.consumer_fixes import (
    bounded_stop_wait,
    committing_revoke,
    install_consumer_fixes,
    tolerant_thread_stop,
)


class _Consumer:
    """Stands in for Faust's consumer: records the order of commit and revocation."""

    def __init__(self, stopping: bool = False, commit_error: Exception | None = None) -> None:
        self.app = SimpleNamespace(should_stop=stopping)
        self.commit_error = commit_error
        self.calls: list[str] = []

    async def commit(self) -> bool:
        self.calls.append("commit")
        if self.commit_error is not None:
            raise self.commit_error
        return True

    async def on_partitions_revoked(self, revoked: set[str]) -> None:
        self.calls.append(f"revoke {sorted(revoked)}")  # Faust forgets the acked offsets here


@pytest.mark.timeout(10)
def test_acked_offsets_are_committed_before_the_revocation() -> None:
    consumer = _Consumer()
    asyncio.run(committing_revoke(_Consumer.on_partitions_revoked)(consumer, {"t-0"}))
    # twice: a first call may only wait for the timer's commit already under way
    assert consumer.calls == ["commit", "commit", "revoke ['t-0']"]


@pytest.mark.timeout(10)
def test_a_hanging_commit_gives_up_and_the_revocation_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("streams.consumer_fixes.REVOKE_COMMIT_TIMEOUT_S", 0.05)
    consumer = _Consumer()

    async def hang() -> bool:
        consumer.calls.append("commit")
        await asyncio.sleep(60)  # a coordinator that never answers
        return True

    consumer.commit = hang  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="streams.consumer_fixes"):
        asyncio.run(committing_revoke(_Consumer.on_partitions_revoked)(consumer, {"t-0"}))
    assert consumer.calls == ["commit", "revoke ['t-0']"]
    assert "commit before giving up partitions failed" in caplog.text


@pytest.mark.timeout(10)
def test_no_commit_while_the_app_stops() -> None:
    consumer = _Consumer(stopping=True)  # Faust's stop commits on its own
    asyncio.run(committing_revoke(_Consumer.on_partitions_revoked)(consumer, {"t-0"}))
    assert consumer.calls == ["revoke ['t-0']"]


@pytest.mark.timeout(10)
def test_a_failed_commit_is_logged_and_the_revocation_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = _Consumer(commit_error=RuntimeError("coordinator gone"))
    with caplog.at_level(logging.WARNING, logger="streams.consumer_fixes"):
        asyncio.run(committing_revoke(_Consumer.on_partitions_revoked)(consumer, {"t-1"}))
    assert consumer.calls == ["commit", "revoke ['t-1']"]
    assert "commit before giving up partitions failed" in caplog.text


class _App:
    """Stands in for Faust's app: its wait for the streams hangs like a handler retrying a
    write to a Redis that is down."""

    def __init__(self, stopping: bool, hang_s: float) -> None:
        self.should_stop = stopping
        self.hang_s = hang_s
        self.waited = False

    async def _consumer_wait_empty(self, consumer: object, logger: object) -> None:
        deadline = time.monotonic() + self.hang_s
        while time.monotonic() < deadline:  # like Faust's wait_empty: deaf to cancellation
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.01)
        self.waited = True


@pytest.mark.timeout(10)
def test_the_wait_for_streams_is_bounded_at_shutdown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("streams.consumer_fixes.STOP_GRACE_S", 0.05)
    app = _App(stopping=True, hang_s=1.0)
    wait = bounded_stop_wait(_App._consumer_wait_empty)

    async def stop() -> float:
        t0 = time.monotonic()
        await wait(app, None, None)  # the unwrapped wait takes 1 s and ignores cancellation
        return time.monotonic() - t0

    with caplog.at_level(logging.WARNING, logger="streams.consumer_fixes"):
        took = asyncio.run(stop())
    assert took < 0.5  # (asyncio.run then waits for the deaf wait to end by itself)
    assert "records still in flight after 0 s; not waiting for them" in caplog.text


@pytest.mark.timeout(10)
def test_a_rebalance_still_waits_for_the_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streams.consumer_fixes.STOP_GRACE_S", 0.01)
    app = _App(stopping=False, hang_s=0.2)  # the next owner needs what is in flight acked
    asyncio.run(bounded_stop_wait(_App._consumer_wait_empty)(app, None, None))
    assert app.waited


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
    with caplog.at_level(logging.WARNING, logger="streams.consumer_fixes"):
        asyncio.run(stop(thread))  # the unwrapped method raises here
    assert thread.closed
    assert [r.getMessage() for r in caplog.records] == [
        f"Kafka consumer closed without the broker ({type(error).__name__}); records not "
        "committed are delivered again"
    ]


@pytest.mark.timeout(10)
def test_install_patches_faust_once() -> None:
    from faust.app.base import App
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    def patched() -> list[object]:
        return [
            App._consumer_wait_empty,
            Consumer.on_partitions_revoked,
            AIOKafkaConsumerThread.on_thread_stop,
        ]

    install_consumer_fixes()
    first = patched()
    install_consumer_fixes()
    assert patched() == first
    assert all(getattr(f, "_slatestream_patched", False) for f in first)
